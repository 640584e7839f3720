"""Benchmark batch-1 rendering on cores that are busy with other work (say, a training run), as JSON.

python tools/bench_busy.py [--configs demo,samplernn-3tier] [--wall 3] [--repeats 3]
For each config (full size, random weights) and each load (0 busy processes, then one per core, each a
pure-Python spin loop): samples/s of the compiled loop with 1 thread and with one per core, timed in
interleaved rounds, and their ratio. The thread team must not lose to a single thread when a helper's core
is taken: its members claim parts of each product, so the caller does the parts of a helper that is not
running instead of waiting for it. Before that change (2026-11-29, 2 cores, 2 busy processes) 2 threads
made 0.15x (demo) and 0.66x (`samplernn-3tier`) the samples/s of 1 thread, and `render.py` on the demo
model beside a training run 0.21x real time with 2 threads against 1.46x with 1; after it, 0.96x and 1.14x,
and 2.10x real time beside the training run. With idle cores 2 threads make 1.37x / 1.89x either way.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
from pathlib import Path

import torch
from bench_render import fast_timer  # the sibling tool's timer (a script's folder is on sys.path)

from soundalike import models
from soundalike.config import load_config
from soundalike.sampling.engine import cpu_threads

ROOT = Path(__file__).resolve().parents[1]


def spin() -> None:
    while True:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="demo,samplernn-3tier")
    parser.add_argument("--wall", type=float, default=3.0, help="seconds per timed run")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cores = cpu_threads(0)
    result = {"cores": cores, "torch": torch.__version__, "configs": {}}
    for name in args.configs.split(","):
        cfg = load_config(ROOT / "configs" / f"{name}.yaml")
        torch.manual_seed(0)
        model = models.from_config(cfg).eval()
        out = result["configs"][name] = {}
        for busy in (0, cores):
            procs = [mp.Process(target=spin, daemon=True) for _ in range(busy)]
            for p in procs:
                p.start()
            try:
                timers = {threads: fast_timer(model, 1, threads, "cpu", args.wall, torch.float32)
                          for threads in sorted({1, cores})}
                best = dict.fromkeys(timers, 0.0)
                for _ in range(args.repeats):
                    for threads, run in timers.items():
                        best[threads] = max(best[threads], run())
            finally:
                for p in procs:
                    p.terminate()
                    p.join()
            row = out[f"busy_processes_{busy}"] = {f"threads_{t}": round(v, 1) for t, v in best.items()}
            row[f"threads_{cores}_vs_1"] = round(best[cores] / best[1], 2)
            print(f"{name}, {busy} busy processes: {row}", file=sys.stderr, flush=True)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
