"""What each output head costs: training throughput and rendering speed at batch 1 of the demo-size models
with the 256-way softmax (mu-law 256), the coarse/fine pair and the logistic mixture (16-bit), measured in one
run and given as ratios to the softmax (random weights and data; the machine is noisy, so ratios, not times).

    python tools/bench_heads.py [--configs demo wavenet-demo] [--threads 2] [--seconds 4]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from soundalike import models
from soundalike.config import load_config
from soundalike.sampling import Sampler

ROOT = Path(__file__).resolve().parents[1]
HEADS = {"softmax": ["data.quantization=mulaw", "data.q_levels=256", "model.output=softmax"],
         "coarse_fine": ["data.quantization=linear", "data.q_levels=65536", "model.output=coarse_fine"],
         "logistic_mixture": ["data.quantization=linear", "data.q_levels=65536", "model.output=logistic_mixture"]}


def best_of(fn, repeats: int) -> float:
    fn()  # warm-up (the compiled library, allocations)
    return min(_timed(fn) for _ in range(repeats))


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def measure(config: str, head: str, threads: int, seconds: float, repeats: int) -> dict:
    cfg = load_config(ROOT / "configs" / f"{config}.yaml", HEADS[head])
    torch.manual_seed(0)
    model = models.from_config(cfg)
    B, T = 8, 512 if cfg.model.family == "samplernn" else 256
    x = torch.randint(0, cfg.data.q_levels, (B, model.lookback + T))
    opt = torch.optim.Adam(model.parameters(), 1e-3)

    def train_step():
        nll, _ = model(x, nll=True)
        opt.zero_grad(set_to_none=True)
        nll.mean().backward()
        opt.step()

    t_train = best_of(train_step, repeats)
    model.eval()
    n = int(seconds * 16000)

    def render():
        Sampler(model, 1, 1.0, seed=0, threads=threads).generate(n)

    t_render = best_of(render, repeats)
    return {"config": config, "head": head, "params": models.count_parameters(model),
            "train_samples_per_s": round(B * T / t_train), "render_realtime_x": round(n / 16000 / t_render, 2)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", nargs="+", default=["demo", "wavenet-demo"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seconds", type=float, default=4.0, help="audio rendered per timing, batch 1")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for config in args.configs:
        base = None
        for head in HEADS:
            row = measure(config, head, args.threads, args.seconds, args.repeats)
            base = base or row
            row["train_vs_softmax"] = round(row["train_samples_per_s"] / base["train_samples_per_s"], 2)
            row["render_vs_softmax"] = round(row["render_realtime_x"] / base["render_realtime_x"], 2)
            rows.append(row)
    print(json.dumps({"threads": args.threads, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
