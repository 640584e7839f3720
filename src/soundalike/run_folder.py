"""A training run's folder and the renders beside it (layout in docs/CONTRACTS.md): every path of a run is
named here, so training, rendering, evaluation and the gallery agree on it.

    runs/<name>/config.yaml, metrics.jsonl, train.log, tensorboard/, gallery.html, gallery/
    runs/<name>/checkpoints/{latest,best,step-NNNNNNNN}.pt
    runs/<name>/samples/step-NNNNNNNN/sample-NN.{wav,json}
    renders/<name>/<YYYYmmdd-HHMMSS>/            (renders/ beside runs/)
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError

CONFIG = "config.yaml"
METRICS = "metrics.jsonl"
LOG = "train.log"
CHECKPOINTS = "checkpoints"
SAMPLES = "samples"
TENSORBOARD = "tensorboard"
PAGE = "gallery.html"
PAGE_CACHE = "gallery"  # the page's pictures and statistics, rebuilt from the audio when stale
RENDERS = "renders"
NUMBERED = re.compile(r"step-(\d{8})\.pt")  # the numbered checkpoints training writes (and alone prunes)


@dataclass(frozen=True)
class RunFolder:
    """runs/<name>/: the paths of one training run."""

    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def config(self) -> Path:
        return self.path / CONFIG

    @property
    def metrics(self) -> Path:
        return self.path / METRICS

    @property
    def log(self) -> Path:
        return self.path / LOG

    @property
    def tensorboard(self) -> Path:
        return self.path / TENSORBOARD

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    @property
    def page(self) -> Path:
        return self.path / PAGE

    @property
    def page_cache(self) -> Path:
        return self.path / PAGE_CACHE

    @property
    def samples(self) -> Path:
        return self.path / SAMPLES

    @property
    def renders(self) -> Path:
        """renders/<name>/, beside the runs folder."""
        return self.path.parent.parent / RENDERS / self.name

    def checkpoint(self, tag: str) -> Path:
        """checkpoints/<tag>.pt; tag is latest, best or `numbered(step)`."""
        return self.checkpoints / f"{tag}.pt"

    def samples_at(self, step: int) -> Path:
        return self.samples / f"step-{step:08d}"

    def numbered_checkpoints(self) -> list[Path]:
        """The step-NNNNNNNN.pt checkpoints, oldest first (only names training writes)."""
        return sorted(p for p in self.checkpoints.glob("step-*.pt") if NUMBERED.fullmatch(p.name))

    def looks_like_a_run(self) -> bool:
        return any(p.exists() for p in (self.config, self.metrics, self.checkpoints))

    @classmethod
    def of_checkpoint(cls, ckpt: Path) -> RunFolder | None:
        """The run a checkpoint file lies in (runs/<name>/checkpoints/x.pt), or None."""
        ckpt = Path(ckpt).resolve()
        return cls(ckpt.parent.parent) if ckpt.parent.name == CHECKPOINTS else None


def numbered(step: int) -> str:
    """The checkpoint tag of a numbered checkpoint."""
    return f"step-{step:08d}"


def newest_best(runs: str | Path) -> Path:
    """best.pt of the run under `runs` whose best.pt is newest (what render and radio use by default)."""
    found = sorted(Path(runs).glob(f"*/{CHECKPOINTS}/best.pt"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise UserError(f"no trained run found ({runs}/*/{CHECKPOINTS}/best.pt): train one with "
                        "`python train.py --config configs/demo.yaml`, or pass --ckpt FILE")
    print(f"using the most recent run: {found[-1]}", file=sys.stderr)
    return found[-1]


def renders_for(ckpt: Path) -> Path:
    """Where renders of `ckpt` go by default: renders/<run>/ for a run's checkpoint, else renders/<stem>/."""
    run = RunFolder.of_checkpoint(ckpt)
    return run.renders if run is not None else Path(RENDERS).resolve() / Path(ckpt).stem
