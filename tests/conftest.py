"""Shared fixtures: a tiny sliced dataset made with the real slicer from generated audio."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from soundalike.slicing import make_params, slice_dataset

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


def plucks(seconds: float, rate: int, seed: int) -> np.ndarray:
    """A few seconds of decaying harmonic notes: structured audio a tiny model can learn."""
    rng = np.random.default_rng(seed)
    out = np.zeros(int(seconds * rate), np.float32)
    note = int(0.25 * rate)
    t = np.arange(note) / rate
    for start in range(0, len(out) - note, note):
        f = 110 * 2 ** (rng.integers(0, 12) / 12)
        tone = sum(np.sin(2 * np.pi * f * h * t) / h for h in (1, 2, 3))
        out[start:start + note] += 0.3 * tone * np.exp(-8 * t)
    return out


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """A dataset of 1-second chunks at 8 kHz (about 40 s of audio), sliced by `soundalike slice`."""
    root = tmp_path_factory.mktemp("tiny")
    raw = root / "raw"
    raw.mkdir()
    for i in range(4):
        sf.write(raw / f"song{i}.wav", plucks(10.0, 8000, i), 8000)
    out = root / "dataset"
    params = make_params(sample_rate=8000, chunk_seconds=1.0, overlap_seconds=0.0, split="0.7,0.15,0.15",
                         region_seconds=2.0)
    slice_dataset([raw], out, params, progress=False)
    return out


@pytest.fixture(autouse=True)
def _deterministic_threads():
    """Two threads, as on CI; results must not depend on a test's neighbours."""
    torch.set_num_threads(2)
    yield
