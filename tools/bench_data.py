"""Benchmark the training data path: TBPTTLoader against the plain per-stream loop, on ~10 minutes of audio.

Builds a throwaway dataset (16 kHz, 8 s chunks of noise) in a temporary folder and prints one JSON object.
Usage: .venv/bin/python tools/bench_data.py [--seconds 600] [--batches 300]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from soundalike.data import AudioDataset, ReferenceTBPTTLoader, TBPTTLoader
from soundalike.quantize import Quantizer

SR = 16000
CHUNK = 8 * SR


def write_dataset(root: Path, seconds: float) -> None:
    """Noise chunks and a manifest.json in the layout of docs/CONTRACTS.md, all in the train split."""
    rng = np.random.default_rng(0)
    total = int(seconds * SR)
    chunks = []
    for i, start in enumerate(range(0, total, CHUNK)):
        n = min(CHUNK, total - start)
        rel = f"chunks/train/00000000-{i:06d}.wav"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        sf.write(root / rel, rng.integers(-8000, 8000, n).astype(np.int16), SR, subtype="PCM_16")
        chunks.append({"file": rel, "source": "0" * 64, "offset": start / SR, "samples": n, "split": "train"})
    manifest = {"format": 1, "tool_version": "0.1.0", "params": {"sample_rate": SR}, "gain": 1.5,
                "sources": [], "skipped": [], "chunks": chunks, "summary": {}}
    (root / "manifest.json").write_text(json.dumps(manifest))


def rate(loader, batches: int) -> dict:
    """Batches/s and target samples/s of `batches` calls to next(loader), after one warm-up batch."""
    batch = next(loader)
    start = time.perf_counter()
    for _ in range(batches):
        batch = next(loader)
    seconds = time.perf_counter() - start
    targets = batch.x.shape[0] * (batch.x.shape[1] - loader.lookback)
    return {"batches_per_s": round(batches / seconds, 1), "samples_per_s": round(batches * targets / seconds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600.0, help="audio in the dataset")
    parser.add_argument("--batches", type=int, default=300, help="batches timed per loader")
    args = parser.parse_args()
    torch.set_num_threads(1)
    B, T, L = 128, 1024, 64
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_dataset(root, args.seconds)
        start = time.perf_counter()
        ds = AudioDataset(root, Quantizer("mulaw", 256), "train")
        build_s = time.perf_counter() - start
        start = time.perf_counter()
        AudioDataset(root, Quantizer("mulaw", 256), "train")
        open_s = time.perf_counter() - start

        fast = rate(TBPTTLoader(ds, B, T, L, seed=0), args.batches)
        reference = rate(ReferenceTBPTTLoader(ds, B, T, L, seed=0), max(args.batches // 10, 10))
        fast_it, ref_it = TBPTTLoader(ds, B, T, L, seed=1), ReferenceTBPTTLoader(ds, B, T, L, seed=1)
        same = all(torch.equal(a.x, b.x) and torch.equal(a.reset, b.reset)
                   for a, b in ((next(fast_it), next(ref_it)) for _ in range(50)))
        print(json.dumps({
            "dataset": {"seconds": len(ds) / SR, "chunks": len(ds.lengths), "cache_build_s": round(build_s, 3),
                        "cache_open_s": round(open_s, 4)},
            "batch": {"B": B, "T": T, "lookback": L},
            "tbptt_loader": fast,
            "reference_loop": reference,
            "speedup": round(fast["batches_per_s"] / reference["batches_per_s"], 1),
            "identical_batches": same,
        }, indent=2))


if __name__ == "__main__":
    main()
