"""Benchmark `soundalike slice` on one long file: peak memory (must stay well under 1 GB) and time, as JSON.

python tools/bench_slice.py [--hours 2] [--keep DIR]
Writes a 44.1 kHz stereo 16-bit WAV of the given length in blocks (a tone with a little noise), then slices
it to 16 kHz, 8 s chunks in a subprocess; peak RSS is that subprocess's.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

RATE = 44100
BLOCK = 1 << 20


def write_long_file(path: Path, seconds: float) -> None:
    """A stereo tone with slow level changes and a little noise, written block by block."""
    rng = np.random.default_rng(0)
    total = int(seconds * RATE)
    with sf.SoundFile(path, "w", RATE, 2, subtype="PCM_16") as f:
        for start in range(0, total, BLOCK):
            t = np.arange(start, min(start + BLOCK, total)) / RATE
            level = 0.3 + 0.2 * np.sin(2 * np.pi * t / 60)
            left = level * np.sin(2 * np.pi * 220 * t) + 0.01 * rng.standard_normal(len(t))
            f.write(np.stack([left, 0.8 * left], axis=1).astype(np.float32))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=2.0)
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temp folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        raw = work / "raw"
        raw.mkdir(parents=True, exist_ok=True)
        src = raw / "long.wav"
        t0 = time.perf_counter()
        write_long_file(src, args.hours * 3600)
        generate_s = time.perf_counter() - t0

        cmd = [sys.executable, "-m", "soundalike.cli", "slice", str(raw), "--out", str(work / "dataset"),
               "--sample-rate", "16000", "--chunk-seconds", "8", "--overlap-seconds", "1"]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        if proc.returncode:
            sys.exit(f"slice failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
        rss_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # kilobytes on Linux
        manifest = json.loads((work / "dataset" / "manifest.json").read_text())
        print(json.dumps({
            "audio_hours": args.hours,
            "input": f"{RATE} Hz stereo PCM_16 WAV, {src.stat().st_size / 2**30:.2f} GiB",
            "generate_s": round(generate_s, 1),
            "slice_s": round(seconds, 1),
            "realtime_factor": round(args.hours * 3600 / seconds, 1),
            "peak_rss_mb": round(rss_kb / 1024, 1),
            "chunks": manifest["summary"]["chunks"],
        }, indent=2))


if __name__ == "__main__":
    main()
