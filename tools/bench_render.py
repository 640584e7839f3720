"""Benchmark sampling: the fast engine against the reference generator, in the same run, on random weights.

For each config (full size, random weights) and batch size: samples/s per stream and in all, and the
real-time factor at 16 kHz, of the fast engine (best of `--repeats` timed runs of about `--wall` seconds,
per thread count) and of the reference generator (one short run of `--ref-samples` samples). Prints JSON.
Usage: .venv/bin/python tools/bench_render.py [--configs demo,beatles,samplernn-3tier] [--batches 1,16]
       [--threads 1,2] [--device cpu|cuda] [--no-reference]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

from soundalike import models
from soundalike.config import load_config
from soundalike.sampling import Sampler, reference_generate
from soundalike.sampling.engine import torch_threads

ROOT = Path(__file__).resolve().parents[1]
RATE = 16000


def fast_rate(model, batch: int, threads: int, device: str, wall: float, repeats: int, dtype,
              weights: str = "full") -> float:
    """Best samples/s per stream of the fast engine over `repeats` runs of about `wall` seconds."""
    sampler = Sampler(model, batch, 1.0, seed=0, device=device, dtype=dtype, threads=threads, weights=weights,
                      device_noise=device != "cpu")
    hop = sampler.stepper.hop
    start = time.perf_counter()
    sampler.generate(hop * 4)  # warm-up (and the kernel's compilation, if not cached)
    n = hop * 4
    while time.perf_counter() - start < 0.2 * wall:  # size the timed runs
        sampler.generate(n)
        n *= 2
    per_sample = (time.perf_counter() - start) / (2 * n)
    n = max(hop, int(wall / per_sample) // hop * hop)
    best = 0.0
    for _ in range(repeats):
        if device != "cpu":
            torch.cuda.synchronize()
        t = time.perf_counter()
        sampler.generate(n)  # returns CPU tensors: synchronized
        best = max(best, n / (time.perf_counter() - t))
    return best


def reference_rate(model, batch: int, n: int, threads: int) -> float:
    """Samples/s per stream of the reference generator: the faster of two runs (the first warms up)."""
    with torch_threads(threads):
        best = 0.0
        for _ in range(2):
            t = time.perf_counter()
            reference_generate(model, n, batch=batch, seed=0)
            best = max(best, n / (time.perf_counter() - t))
        return best


def entry(per_stream: float, batch: int) -> dict:
    return {"samples_per_s_per_stream": round(per_stream, 1), "samples_per_s_all": round(per_stream * batch, 1),
            "realtime_x_per_stream": round(per_stream / RATE, 3),
            "realtime_x_all": round(per_stream * batch / RATE, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="demo,beatles,samplernn-3tier")
    parser.add_argument("--batches", default="1,16")
    parser.add_argument("--threads", default="1,2", help="CPU thread counts to time the fast engine with")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--wall", type=float, default=2.0, help="seconds per timed fast run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ref-samples", type=int, default=0,
                        help="samples per reference run (default: two top frames)")
    parser.add_argument("--no-reference", action="store_true")
    parser.add_argument("--bf16-weights", action="store_true", help="also time weights rounded to bfloat16")
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype)
    threads = [int(t) for t in args.threads.split(",")] if args.device == "cpu" else [0]
    result = {"device": args.device if args.device == "cpu" else torch.cuda.get_device_name(),
              "cpu": platform.processor() or platform.machine(), "cores": torch.get_num_threads(),
              "torch": torch.__version__, "dtype": args.dtype, "rate_hz": RATE, "configs": {}}
    for name in args.configs.split(","):
        cfg = load_config(ROOT / "configs" / f"{name}.yaml")
        torch.manual_seed(0)
        model = models.from_config(cfg).eval()
        out = result["configs"][name] = {"params": sum(p.numel() for p in model.parameters())}
        for batch in [int(b) for b in args.batches.split(",")]:
            row = out[f"batch_{batch}"] = {}
            model.to(args.device)
            fast = {}
            for th in threads:
                fast[th] = fast_rate(model, batch, th or None, args.device, args.wall, args.repeats, dtype)
                row[f"fast_threads_{th}" if args.device == "cpu" else "fast"] = entry(fast[th], batch)
            best = max(fast.values())
            if args.bf16_weights:
                bf16 = fast_rate(model, batch, threads[0] or None, args.device, args.wall, args.repeats, dtype, "bf16")
                row["fast_bf16_weights"] = entry(bf16, batch)
            if not args.no_reference:
                model.cpu()
                n = args.ref_samples or 2 * model.lookback
                ref = max(reference_rate(model, batch, n, th) for th in threads)  # at its best thread count
                row["reference"] = {**entry(ref, batch), "samples_timed": n}
                row["speedup_vs_reference"] = round(best / ref, 1)
            print(f"{name} batch {batch}: {best:.0f} samples/s per stream, {best * batch / RATE:.2f}x real time "
                  f"in all" + (f", {row['speedup_vs_reference']}x reference" if not args.no_reference else ""),
                  flush=True, file=sys.stderr)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
