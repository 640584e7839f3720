"""How much slower sampling is without the compiled library: its loop against the fallbacks, batch 1.

For each config (full size, random weights): samples/s of the sampling engine with the compiled library
(backend c) and with the fallback it uses when the library cannot be built (SampleRNN: numpy for the samples
and torch ops for the tiers; WaveNet: torch ops), one thread each, the best of `--repeats` interleaved runs of
about `--wall` seconds. The ratio is the figure quoted by the warning in `sampling/kernel.py`. Prints JSON.
Usage: .venv/bin/python tools/bench_fallback.py [--configs demo,wavenet-demo] [--wall 3] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from bench_render import fast_timer  # the sibling tool's timer (a script's folder is on sys.path)

from soundalike import models
from soundalike.config import load_config

ROOT = Path(__file__).resolve().parents[1]
FALLBACK = {"samplernn": "numpy", "wavenet": "torch"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="demo,wavenet-demo")
    parser.add_argument("--wall", type=float, default=3.0, help="seconds per timed run")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    result = {}
    for name in args.configs.split(","):
        cfg = load_config(ROOT / "configs" / f"{name}.yaml")
        torch.manual_seed(0)
        model = models.from_config(cfg).eval()
        fallback = FALLBACK[cfg.model.family]
        timers = {b: fast_timer(model, 1, 1, "cpu", args.wall, torch.float32, backend=b) for b in ("c", fallback)}
        best = dict.fromkeys(timers, 0.0)
        for _ in range(args.repeats):  # interleaved: the machine's load hits both alike
            for key, run in timers.items():
                best[key] = max(best[key], run())
        result[name] = {"compiled_samples_per_s": round(best["c"], 1),
                        f"{fallback}_samples_per_s": round(best[fallback], 1),
                        "slowdown": round(best["c"] / best[fallback], 1)}
        print(f"{name}: compiled {best['c']:.0f}, {fallback} {best[fallback]:.0f} samples/s: "
              f"{best['c'] / best[fallback]:.1f}x slower", flush=True)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
