"""A training run's folder and the renders beside it (layout in docs/CONTRACTS.md): every path of a run is
named here, so training, rendering, evaluation and the gallery agree on it.

    runs/<name>/config.yaml, metrics.jsonl, train.log, tensorboard/, gallery.html, gallery/
    runs/<name>/checkpoints/{latest,best,step-NNNNNNNN}.pt
    runs/<name>/snapshots/step-NNNNNNNN.pt        (the weights of each preview step, without training state)
    runs/<name>/favourites.json                   (steps `soundalike keep` marked: never pruned)
    runs/<name>/samples/step-NNNNNNNN/sample-NN.{wav,json}
    renders/<name>/<YYYYmmdd-HHMMSS>/            (renders/ beside runs/)
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError

CONFIG = "config.yaml"
METRICS = "metrics.jsonl"
LOG = "train.log"
CHECKPOINTS = "checkpoints"
SNAPSHOTS = "snapshots"
FAVOURITES = "favourites.json"
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
    def snapshots(self) -> Path:
        return self.path / SNAPSHOTS

    @property
    def favourites(self) -> Path:
        return self.path / FAVOURITES

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

    def snapshot(self, step: int) -> Path:
        """snapshots/step-NNNNNNNN.pt: the weights the preview clips of `step` were rendered from."""
        return self.snapshots / f"{numbered(step)}.pt"

    def numbered_checkpoints(self) -> list[Path]:
        """The step-NNNNNNNN.pt checkpoints, oldest first (only names training writes)."""
        return sorted(p for p in self.checkpoints.glob("step-*.pt") if NUMBERED.fullmatch(p.name))

    def numbered_snapshots(self) -> list[Path]:
        """The step-NNNNNNNN.pt snapshots, oldest first (only names training writes)."""
        return sorted(p for p in self.snapshots.glob("step-*.pt") if NUMBERED.fullmatch(p.name))

    def favourite_steps(self) -> set[int]:
        """Steps marked with `soundalike keep`; an unreadable or hand-broken file marks none."""
        try:
            steps = json.loads(self.favourites.read_text(encoding="utf-8")).get("steps", [])
        except (OSError, ValueError, AttributeError):
            return set()
        return {s for s in steps if isinstance(s, int) and not isinstance(s, bool)} if isinstance(steps, list) \
            else set()

    def prune(self, files: list[Path], keep: int) -> None:
        """Delete all but the newest `keep` (0: all) of `files` (numbered, oldest first); favourite steps are
        spared and not counted."""
        favourites = self.favourite_steps()
        prunable = [p for p in files if step_of(p) not in favourites]
        for old in prunable[:-keep] if keep else []:
            old.unlink(missing_ok=True)

    def looks_like_a_run(self) -> bool:
        return any(p.exists() for p in (self.config, self.metrics, self.checkpoints))

    @classmethod
    def of_checkpoint(cls, ckpt: Path) -> RunFolder | None:
        """The run a checkpoint file lies in (runs/<name>/checkpoints/x.pt), or None."""
        ckpt = Path(ckpt).resolve()
        return cls(ckpt.parent.parent) if ckpt.parent.name in (CHECKPOINTS, SNAPSHOTS) else None


def numbered(step: int) -> str:
    """The checkpoint tag of a numbered checkpoint."""
    return f"step-{step:08d}"


def step_of(path: Path) -> int | None:
    """The step of a numbered checkpoint or snapshot file, else None."""
    m = NUMBERED.fullmatch(Path(path).name)
    return int(m.group(1)) if m else None


def newest_best(runs: str | Path) -> Path:
    """best.pt of the run under `runs` whose best.pt is newest (what render and radio use by default)."""
    found = sorted(Path(runs).glob(f"*/{CHECKPOINTS}/best.pt"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise UserError(f"no trained run found ({runs}/*/{CHECKPOINTS}/best.pt): train one with "
                        "`python train.py --config configs/demo.yaml`, or pass --ckpt FILE")
    print(f"using the most recent run: {found[-1]}", file=sys.stderr)
    return found[-1]


def weights_of(run: RunFolder, step: int) -> Path | None:
    """The file holding the weights of `step`: its preview snapshot, else its numbered checkpoint, else None."""
    return next((p for p in (run.snapshot(step), run.checkpoint(numbered(step))) if p.is_file()), None)


def hour_command(run: RunFolder, step: int, seconds: float = 3600) -> str | None:
    """The command rendering `seconds` from the weights of `step` with the seed, temperature and number of its
    preview clips (samples/step-N/sample-NN.json), at the model's own level as the clips are (no level hold): on
    the CPU its tracks begin with those clips. None when the weights of that step are gone."""
    ckpt = weights_of(run, step)
    if ckpt is None:
        return None
    meta = []
    for path in sorted(run.samples_at(step).glob("sample-*.json")):
        try:
            m = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(m, dict):
            meta.append(m)
    cmd = ["soundalike", "render", "--ckpt", str(ckpt), "--seconds", f"{seconds:g}"]
    seeds = {m.get("seed") for m in meta}
    temps = {m.get("temperature") for m in meta}
    if meta and len(seeds) == 1 and len(temps) == 1 and None not in seeds | temps:
        cmd += ["--count", str(len(meta)), "--seed", str(seeds.pop()), "--temperature", f"{temps.pop():g}"]
    return shlex.join(cmd + ["--hold-level", "off"])


def renders_for(ckpt: Path) -> Path:
    """Where renders of `ckpt` go by default: renders/<run>/ for a run's checkpoint, else renders/<stem>/."""
    run = RunFolder.of_checkpoint(ckpt)
    return run.renders if run is not None else Path(RENDERS).resolve() / Path(ckpt).stem
