"""Benchmark sampling: the fast engine against the plain generators, in the same run, on random weights.

For each config (full size, random weights; SampleRNN or WaveNet) and batch size: samples/s per stream and
in all, and the real-time factor at 16 kHz, of
  fast_threads_N  the sampling engine (compiled loop on the CPU), N threads,
  reference_threads_N  the plain reference generator of the model family, one sample per call
                  (`sampling.reference_generate`: SampleRNN tier by tier; WaveNet through its own plain queues),
  naive_threads_N WaveNet only: the full causal forward pass over the receptive field for every sample.
With `--weights bf16,int8`, also (at the most threads)
  fast_<w>_weights      the engine storing the weight matrices as bfloat16 / int8 (`render --weights`),
  reference_<w>_weights the reference generator on the model that computes (`engine.with_compact_weights`:
                  weight norm folded, matrices rounded), i.e. the plain path on the very same model.
Speed-ups compare the fastest fast run with the fastest run of each plain generator. Every timed run lasts
about `--wall` seconds; the result is the best of `--repeats` rounds that interleave them all, so that the
ratios hold on a machine whose load changes. Prints JSON.
Usage: .venv/bin/python tools/bench_render.py [--configs demo,beatles,samplernn-3tier,wavenet-demo,wavenet]
       [--batches 1,16] [--threads 1,2] [--device cpu|cuda] [--no-reference] [--weights bf16,int8]
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import time
from pathlib import Path

import torch

from soundalike import models
from soundalike.config import load_config
from soundalike.models.wavenet.stepper import naive_generate
from soundalike.sampling import Sampler, reference_generate
from soundalike.sampling.engine import WEIGHTS, torch_threads, with_compact_weights

ROOT = Path(__file__).resolve().parents[1]
RATE = 16000


def fast_timer(model, batch: int, threads: int | None, device: str, wall: float, dtype, weights: str = "full",
               backend: str = "auto"):
    """A function that times one run of the sampling engine of about `wall` seconds -> samples/s per stream."""
    sampler = Sampler(model, batch, 1.0, seed=0, device=device, dtype=dtype, threads=threads, weights=weights,
                      device_noise=device != "cpu", backend=backend)
    hop = sampler.stepper.hop
    start = time.perf_counter()
    sampler.generate(hop * 4)  # warm-up (and the kernel's compilation, if not cached)
    n = hop * 4
    while time.perf_counter() - start < 0.2 * wall:  # size the timed runs
        sampler.generate(n)
        n *= 2
    n = max(hop, int(wall * 2 * n / (time.perf_counter() - start)) // hop * hop)

    def run() -> float:
        t = time.perf_counter()
        sampler.generate(n)  # returns CPU tensors: synchronized
        return n / (time.perf_counter() - t)
    return run


def plain_timer(generate, model, batch: int, threads: int | None, wall: float):
    """A function that times one run of a plain generator of about `wall` seconds -> samples/s per stream.

    The time of a 1-sample run (set-up such as WaveNet's queues from the receptive field, paid once per
    stream) is subtracted."""
    def timed(n: int) -> float:
        with torch_threads(threads):
            t = time.perf_counter()
            generate(model, n, batch=batch, seed=0)
            return time.perf_counter() - t

    one = timed(1)
    n = 2
    while timed(n) - one < 0.5 * wall and n < 1 << 20:  # size the timed runs
        n *= 2
    n *= 2

    def run() -> float:
        return (n - 1) / max(timed(n) - one, 1e-9)
    return run


def read_bandwidth(threads: int | None, mb: int = 512) -> float:
    """GB/s of a plain streaming read (torch.sum over `mb` MB of float32): what bounds batch-1 speed of models
    whose weights do not fit in the caches."""
    x = torch.ones(mb * (1 << 20) // 4)
    times = []
    with torch_threads(threads):
        for _ in range(7):
            t = time.perf_counter()
            x.sum()
            times.append(time.perf_counter() - t)
    return round(x.numel() * 4 / sorted(times)[3] / 1e9, 1)  # the median: bursts of a shared machine aside


def weight_mb_per_sample(model) -> float | None:
    """MB of float32 weights a batch-1 SampleRNN reads per sample: each frame tier's once per its frame, the
    sample-level head's every sample (all of it; the zero-skipping head reads about half). None for WaveNet."""
    if not hasattr(model, "tier_frames"):
        return None
    tiers = sum(sum(p.numel() for p in t.parameters()) / n for t, n in zip(model.tiers, model.tier_frames))
    head = model.mlp.hidden.weight.numel() + model.mlp.output.weight.numel()
    return round(4 * (tiers + head) / 1e6, 2)


def rates_of(best: dict, plain: str) -> list[float]:
    """The rates of the plain generator `plain` on the model as trained, at every thread count."""
    return [v for key, v in best.items() if key == plain or key.startswith(f"{plain}_threads_")]


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
    parser.add_argument("--no-reference", action="store_true")
    parser.add_argument("--weights", default="", help="also time these compact weights (comma-separated: "
                        "bf16,int8), with the most threads, and the reference on the model they compute")
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype)
    compact = [w for w in args.weights.split(",") if w]
    if set(compact) - set(WEIGHTS[1:]):
        parser.error(f"--weights: choose from {WEIGHTS[1:]}")
    threads = [int(t) for t in args.threads.split(",")] if args.device == "cpu" else [0]
    result = {"device": args.device if args.device == "cpu" else torch.cuda.get_device_name(),
              "cpu": platform.processor() or platform.machine(), "cores": torch.get_num_threads(),
              "torch": torch.__version__, "dtype": args.dtype, "rate_hz": RATE, "configs": {}}
    if args.device == "cpu":
        result["memory_read_gb_s"] = {f"threads_{th}": read_bandwidth(th or None) for th in threads}
    for name in args.configs.split(","):
        cfg = load_config(ROOT / "configs" / f"{name}.yaml")
        torch.manual_seed(0)
        model = models.from_config(cfg).eval()
        wavenet = cfg.model.family == "wavenet"
        out = result["configs"][name] = {"family": cfg.model.family,
                                         "params": sum(p.numel() for p in model.parameters()),
                                         "weight_mb_per_sample": weight_mb_per_sample(model)}
        for batch in [int(b) for b in args.batches.split(",")]:
            row = out[f"batch_{batch}"] = {}
            model.to(args.device)
            timers = {f"fast_threads_{th}" if args.device == "cpu" else "fast":
                      fast_timer(model, batch, th or None, args.device, args.wall, dtype) for th in threads}
            for w in compact:
                timers[f"fast_{w}_weights"] = fast_timer(model, batch, max(threads) or None, args.device, args.wall,
                                                         dtype, w)
            if not args.no_reference:
                ref_model = model if args.device == "cpu" else copy.deepcopy(model).cpu()
                plain = {"reference": reference_generate}
                for w in compact:
                    timers[f"reference_{w}_weights"] = plain_timer(
                        plain["reference"], with_compact_weights(ref_model, w), batch, max(threads) or None, args.wall)
                if wavenet:
                    plain["naive"] = naive_generate
                for key, gen in plain.items():
                    for th in threads:
                        timers[f"{key}_threads_{th}" if args.device == "cpu" else key] = plain_timer(
                            gen, ref_model, batch, th or None, args.wall)
            # Rounds through every timer: the machine's load changes over minutes, and so hits all alike.
            best = dict.fromkeys(timers, 0.0)
            for _ in range(args.repeats):
                for key, run in timers.items():
                    best[key] = max(best[key], run())
            for key, rate in best.items():
                row[key] = entry(rate, batch)
            fast = max(v for k, v in best.items() if k.startswith("fast_threads") or k == "fast")
            speedups = {}  # against each plain generator at its best thread count
            for k in ("reference", "naive"):
                rates = rates_of(best, k)
                if rates:
                    speedups[k] = round(fast / max(rates), 1)
            for w in compact:
                rate, references = best[f"fast_{w}_weights"], rates_of(best, "reference")
                if references:
                    speedups[f"reference_for_{w}"] = round(rate / max(references), 1)
                if f"reference_{w}_weights" in best:
                    speedups[f"reference_{w}_weights"] = round(rate / best[f"reference_{w}_weights"], 1)
            row.update({f"speedup_vs_{k}": v for k, v in speedups.items()})
            print(f"{name} batch {batch}: {fast:.0f} samples/s per stream, {fast * batch / RATE:.2f}x real time "
                  "in all" + "".join(f", {v}x {k}" for k, v in speedups.items()), flush=True, file=sys.stderr)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
