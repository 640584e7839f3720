"""Benchmark WaveNet generation: the fast stepper against the plain queue path and the naive re-run, on random weights.

For each WaveNet config (full size, random weights) and batch size: samples/s per stream and in all, and the
real-time factor at 16 kHz, of
  fast_c / fast_torch  the sampling engine's stepper (`sampling/wavenet.py`), compiled loop / torch ops,
  reference            the model's own plain Fast WaveNet queues (`WaveNet.step`), one sample per call,
  naive                the full causal forward pass over the receptive field for every sample.
Each is timed for about `--wall` seconds (best of `--repeats` for the fast engine). Prints JSON.
Usage: .venv/bin/python tools/bench_wavenet.py [--configs wavenet-demo,wavenet] [--batches 1,16] [--threads 1]
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
from soundalike.sampling import Sampler
from soundalike.sampling.engine import torch_threads
from soundalike.sampling.wavenet import naive_generate, reference_generate

ROOT = Path(__file__).resolve().parents[1]
RATE = 16000


def fast_rate(model, batch: int, backend: str, threads: int, wall: float, repeats: int) -> float:
    """Best samples/s per stream of the sampling engine over `repeats` runs of about `wall` seconds."""
    sampler = Sampler(model, batch, 1.0, seed=0, backend=backend, threads=threads)
    hop = sampler.stepper.hop
    t = time.perf_counter()
    sampler.generate(hop)  # warm-up (and the kernel's compilation, if not cached)
    per_sample = (time.perf_counter() - t) / hop
    n = max(hop, int(wall / per_sample) // hop * hop)
    best = 0.0
    for _ in range(repeats):
        t = time.perf_counter()
        sampler.generate(n)
        best = max(best, n / (time.perf_counter() - t))
    return best


def plain_rate(generate, model, batch: int, threads: int, wall: float) -> tuple[float, int]:
    """Samples/s per stream of a plain generator, on a run sized to about `wall` seconds; and its length.

    The time of a 1-sample run (the reference's queue set-up: a forward pass over the receptive field) is
    subtracted: it is paid once per stream, not per sample."""

    def timed(n: int) -> float:
        t = time.perf_counter()
        generate(model, n, batch=batch, seed=0)
        return time.perf_counter() - t

    with torch_threads(threads):
        one = timed(1)
        n = 2
        while (t := timed(n)) - one < wall and n < 1 << 20:  # double the run until it takes `wall` more
            n *= 2
        return (n - 1) / (t - one), n


def entry(per_stream: float, batch: int) -> dict:
    return {"samples_per_s_per_stream": round(per_stream, 1), "samples_per_s_all": round(per_stream * batch, 1),
            "realtime_x_per_stream": round(per_stream / RATE, 4),
            "realtime_x_all": round(per_stream * batch / RATE, 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="wavenet-demo,wavenet")
    parser.add_argument("--batches", default="1,16")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (the engine's default is 1)")
    parser.add_argument("--wall", type=float, default=2.0, help="seconds per timed run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--engines", default="fast_c,fast_torch,reference,naive")
    args = parser.parse_args()
    engines = args.engines.split(",")
    result = {"device": "cpu", "cpu": platform.processor() or platform.machine(), "threads": args.threads,
              "torch": torch.__version__, "dtype": "float32", "rate_hz": RATE, "configs": {}}
    for name in args.configs.split(","):
        cfg = load_config(ROOT / "configs" / f"{name}.yaml")
        torch.manual_seed(0)
        model = models.from_config(cfg).eval()
        out = result["configs"][name] = {"params": sum(p.numel() for p in model.parameters()),
                                         "receptive_field": model.receptive_field}
        for batch in [int(b) for b in args.batches.split(",")]:
            row = out[f"batch_{batch}"] = {}
            for engine in engines:
                if engine.startswith("fast_"):
                    rate = fast_rate(model, batch, engine[5:], args.threads, args.wall, args.repeats)
                    row[engine] = entry(rate, batch)
                else:
                    gen = reference_generate if engine == "reference" else naive_generate
                    rate, n = plain_rate(gen, model, batch, args.threads, args.wall)
                    row[engine] = {**entry(rate, batch), "samples_timed": n}
            fast = max((row[e]["samples_per_s_per_stream"] for e in row if e.startswith("fast_")), default=0)
            for base in ("reference", "naive"):
                if fast and base in row:
                    row[f"fast_vs_{base}"] = round(fast / row[base]["samples_per_s_per_stream"], 1)
            print(f"{name} batch {batch}: " + ", ".join(f"{e} {row[e]['samples_per_s_per_stream']:.0f}/s"
                                                        for e in engines), file=sys.stderr, flush=True)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
