"""Benchmark the gallery page of a run with many clips: build time cold and cached, page size, as JSON.

python tools/bench_gallery.py [--clips 500] [--seconds 2] [--keep DIR]
Makes a run folder with `--clips` sample clips (two per checkpoint, newest first on the page), its metrics
and a small sliced dataset (the real slicer), then builds the page twice: cold (every spectrogram,
waveform and statistic computed) and again with nothing changed (pictures and statistics from the cache,
which is what training and render.py do after each new checkpoint or render).
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from soundalike.gallery import build_gallery
from soundalike.run_folder import PAGE_CACHE
from soundalike.slicing import make_params, slice_dataset

RATE = 16000


def tones(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Decaying notes of random pitch, an eighth of a second each, with a little noise."""
    n = RATE // 8
    t = np.arange(n) / RATE
    notes = [np.exp(-10 * t) * np.sin(2 * np.pi * 110 * 2 ** (rng.integers(0, 24) / 12) * t)
             for _ in range(int(seconds * 8))]
    return (0.3 * np.concatenate(notes) + 0.003 * rng.standard_normal(len(notes) * n)).astype(np.float32)


def make_run(root: Path, clips: int, seconds: float) -> Path:
    rng = np.random.default_rng(0)
    raw = root / "data" / "raw"
    raw.mkdir(parents=True)
    for i in range(3):
        sf.write(raw / f"song{i}.wav", tones(20.0, rng), RATE)
    params = make_params(sample_rate=RATE, chunk_seconds=2.0, overlap_seconds=0.0, split="0.7,0.15,0.15",
                         region_seconds=4.0)
    slice_dataset([raw], root / "data" / "dataset", params, progress=False)
    run = root / "runs" / "bench"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(f"data:\n  path: {root / 'data' / 'dataset'}\n")
    steps = range(1000, 1000 * (clips // 2 + 1), 1000)
    (run / "metrics.jsonl").write_text("".join(
        json.dumps({"step": s, "elapsed_s": 3.0 * s, "train_bits": 8 - 5 * s / steps[-1],
                    "val_bits": 8.2 - 5 * s / steps[-1]}) + "\n" for s in steps))
    for s in steps:
        folder = run / "samples" / f"step-{s:08d}"
        folder.mkdir(parents=True)
        for i in range(2):
            sf.write(folder / f"sample-{i:02d}.wav", tones(seconds, rng), RATE, subtype="PCM_16")
            (folder / f"sample-{i:02d}.json").write_text(json.dumps(
                {"step": s, "temperature": 1.0, "seed": i, "seconds": seconds, "checkpoint": "latest.pt"}))
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=2.0, help="length of every clip")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temp folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        run = make_run(root, args.clips, args.seconds)
        t0 = time.perf_counter()
        page = build_gallery(run)
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        build_gallery(run)
        cached = time.perf_counter() - t0
        text = page.read_text(encoding="utf-8")
        images = re.findall(r"<img [^>]*>", text)
        pictures = list((run / PAGE_CACHE).rglob("*.png"))
        print(json.dumps({
            "clips": len(list(run.glob("samples/*/*.wav"))), "clip_seconds": args.seconds,
            "build_cold_s": round(cold, 2), "build_cached_s": round(cached, 2),
            "speedup_cached": round(cold / cached, 1),
            "page_kb": round(len(text.encode()) / 1024, 1), "images": len(images),
            "lazy_images": sum('loading="lazy"' in i for i in images),
            "audio_elements": text.count("<audio"),
            "audio_preload_none": len(re.findall(r'<audio[^>]*preload="none"', text)),
            "picture_kb_mean": round(np.mean([p.stat().st_size for p in pictures]) / 1024, 1) if pictures else 0,
        }, indent=2))


if __name__ == "__main__":
    main()
