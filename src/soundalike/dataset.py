"""The sliced dataset folder and its `manifest.json` (format in docs/CONTRACTS.md): read and checked once here.

`soundalike slice` writes it; the loader, `stats`, the gallery and render's priming read it through `Manifest`.
The normalization rule lives here too: one gain for the whole dataset (`normalization_gain`), which brings its
peak to PEAK_TARGET, capped at MAX_GAIN so a near-silent dataset is not blown up into noise.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError

FORMAT = 1
MANIFEST = "manifest.json"
SPLITS = ("train", "valid", "test")
PEAK_TARGET = 0.98
MAX_GAIN = 100.0
SLICE_HINT = "run `soundalike slice` to create the dataset"


def normalization_gain(peak: float) -> float:
    """The gain that brings audio peaking at `peak` to the level the models are trained at."""
    return min(PEAK_TARGET / peak, MAX_GAIN) if peak > 0 else MAX_GAIN


@dataclass(frozen=True)
class Chunk:
    """One chunk file of the dataset."""

    file: str  # relative to the dataset folder, as the manifest records it
    path: Path  # the file, checked to lie inside the dataset folder
    source: str  # sha256 of the recording it was cut from
    offset: float  # seconds into that recording
    samples: int
    split: str


class Manifest:
    """A dataset folder's manifest, validated: every chunk path resolves inside the folder."""

    def __init__(self, root: Path, raw: bytes, data: dict):
        self.root, self.raw, self.data = root, raw, data
        path = root / MANIFEST
        try:
            self.sample_rate = int(data["params"]["sample_rate"])
            self.gain = float(data["gain"])
            entries = data["chunks"]
            if not isinstance(entries, list):
                raise TypeError("chunks is not a list")
            self.chunks = [self._chunk(i, c) for i, c in enumerate(entries)]
        except (ValueError, KeyError, TypeError) as e:
            raise UserError(f"{path} is not a valid dataset manifest ({e!r}); {SLICE_HINT}") from None
        if self.sample_rate < 1 or not self.gain > 0:
            raise UserError(f"{path}: sample_rate and gain must be positive; {SLICE_HINT}")

    @classmethod
    def load(cls, root: str | Path) -> Manifest:
        """Read and check `root/manifest.json`; a missing or invalid one is a UserError naming it."""
        root = Path(root)
        path = root / MANIFEST
        if root.is_file():
            raise UserError(f"{root}: is a file; a dataset is a folder written by `soundalike slice`")
        if not root.is_dir():
            raise UserError(f"dataset folder {root} does not exist; {SLICE_HINT}")
        if not path.is_file():
            raise UserError(f"{path} is missing, so {root} is not a sliced dataset; {SLICE_HINT}")
        raw = path.read_bytes()
        try:
            data = json.loads(raw)
        except ValueError as e:
            raise UserError(f"{path} is not valid JSON ({e}); {SLICE_HINT}") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise UserError(f"{path}: not a soundalike dataset manifest (format {FORMAT}); {SLICE_HINT}")
        return cls(root, raw, data)

    @classmethod
    def find(cls, root: str | Path) -> Manifest | None:
        """The manifest of `root` if it holds a valid one, else None (a folder slicing may not reuse)."""
        try:
            return cls.load(root)
        except UserError:
            return None

    def split(self, name: str) -> list[Chunk]:
        """The chunks of split `name`, in manifest order."""
        if name not in SPLITS:
            raise UserError(f"unknown dataset split {name!r}; use one of {', '.join(SPLITS)}")
        return [c for c in self.chunks if c.split == name]

    @property
    def summary(self) -> dict:
        return self.data.get("summary", {}) if isinstance(self.data.get("summary"), dict) else {}

    def _chunk(self, i: int, entry: dict) -> Chunk:
        file = entry["file"]
        if not isinstance(file, str):
            raise TypeError(f"chunks[{i}].file is not a string")
        path = inside(self.root, file, f"{self.root / MANIFEST}: chunks[{i}].file")
        split = entry["split"]
        if split not in SPLITS:
            raise ValueError(f"chunks[{i}].split is {split!r}, not one of {', '.join(SPLITS)}")
        samples = int(entry["samples"])
        if samples < 0:
            raise ValueError(f"chunks[{i}].samples is negative")
        return Chunk(file, path, str(entry["source"]), float(entry["offset"]), samples, split)


def inside(root: Path, relative: str, what: str) -> Path:
    """`root / relative`, refused (UserError naming `what`) unless it resolves inside `root`.

    Paths read from a file someone else may have written must not reach the rest of the disk: no absolute
    paths, no `..` out of the folder, no symbolic link pointing out of it.
    """
    if Path(relative).is_absolute():
        raise UserError(f"{what}: {relative!r} is an absolute path; it must lie inside {root}")
    base = root.resolve()
    full = (base / relative).resolve()
    if full != base and base not in full.parents:
        raise UserError(f"{what}: {relative!r} points outside {root}")
    return root / relative
