"""Benchmark block-sparse rendering: dense against pruned models, float32 and int8 weights, in the same run.

For each config (full size, random weights, float32): the model as it is (dense) and pruned at once to each
`--sparsity` (`sparsity.prune`: that fraction of the 16 x 1 blocks of every prunable matrix zero, the pattern
of random weights' smallest norms: random), rendered by the compiled loop at `--batch` streams with `--threads`
threads, with the weights stored as float32 and as int8 (`render --weights int8`). Reported per variant:
samples/s per stream and the real-time factor at 16 kHz (best of `--repeats` interleaved rounds of about
`--wall` seconds each: the ratios hold on a machine whose load changes), the ratio to the dense float32 model
in the same run, the same per second of this process's CPU time (what a core would do alone; with more than one
thread it counts the helpers' waiting too), the bytes of weights (with int8 scales and block indices) the loop reads per sample, in all and by
part (`stepper.stored_bytes`: the frame tiers' matrices, the sample-level MLP's, the input tables' rows), and those bytes times the rate: the weight bandwidth the variant achieved. Prints
JSON. Usage: .venv/bin/python tools/bench_sparse.py [--configs samplernn-3tier,beatles] [--sparsity 0.9,0.95]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

from soundalike import models, sparsity
from soundalike.config import load_config
from soundalike.sampling import Sampler

ROOT = Path(__file__).resolve().parents[1]
RATE = 16000


def timer(model, batch: int, threads: int, weights: str, wall: float):
    """(a function timing one run of about `wall` seconds -> samples/s per stream, bytes read per sample)."""
    sampler = Sampler(model, batch, 1.0, seed=0, threads=threads, weights=weights, backend="c")
    hop = sampler.stepper.hop
    start = time.perf_counter()
    sampler.generate(hop * 4)  # warm-up
    n = hop * 4
    while time.perf_counter() - start < 0.2 * wall:
        sampler.generate(n)
        n *= 2
    n = max(hop, int(wall * 2 * n / (time.perf_counter() - start)) // hop * hop)

    def run() -> tuple[float, float]:
        t, c = time.perf_counter(), time.process_time()
        sampler.generate(n)
        return n / (time.perf_counter() - t), n / (time.process_time() - c)
    return run, sampler.stepper.stored_bytes()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--configs", default="samplernn-3tier,beatles")
    p.add_argument("--sparsity", default="0.9,0.95")
    p.add_argument("--weights", default="full,int8")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--wall", type=float, default=2.0)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    result: dict = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                    "load_before": os.getloadavg(), "batch": args.batch, "threads": args.threads, "configs": {}}
    fractions = [float(s) for s in args.sparsity.split(",")]
    for name in args.configs.split(","):
        cfg = load_config(ROOT / "configs" / f"{name}.yaml")
        timers, bytes_per_sample = {}, {}
        for fraction in [0.0, *fractions]:
            torch.manual_seed(0)
            model = models.from_config(cfg).float().eval()
            if fraction:
                sparsity.prune(model, fraction)
            for weights in args.weights.split(","):
                key = f"{'dense' if not fraction else f'sparse_{round(fraction * 100)}'}_{weights}"
                timers[key], bytes_per_sample[key] = timer(model, args.batch, args.threads, weights, args.wall)
            del model
        best: dict[str, float] = {}
        best_cpu: dict[str, float] = {}
        for _ in range(args.repeats):
            for key, run in timers.items():
                rate, cpu_rate = run()
                best[key], best_cpu[key] = max(best.get(key, 0.0), rate), max(best_cpu.get(key, 0.0), cpu_rate)
        first = f"dense_{args.weights.split(',')[0]}"
        dense, dense_cpu = best[first], best_cpu[first]
        result["configs"][name] = {key: {
            "samples_per_s": round(rate), "realtime": round(rate / RATE, 3), "vs_dense": round(rate / dense, 2),
            "samples_per_cpu_s": round(best_cpu[key]), "vs_dense_cpu": round(best_cpu[key] / dense_cpu, 2),
            "weight_mb_per_sample": round(sum(bytes_per_sample[key].values()) / 1e6, 3),
            "of_which_mb": {part: round(b / 1e6, 3) for part, b in bytes_per_sample[key].items()},
            "weight_gb_per_s": round(sum(bytes_per_sample[key].values()) * rate / 1e9, 1)}
            for key, rate in best.items()}
        print(f"{name}: done", file=sys.stderr)
    result["load_after"] = os.getloadavg()
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
