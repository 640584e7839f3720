"""Training throughput: audio samples per second of a full training step (forward, backward, Adam).

Fast path (folded sample-level input, bf16 autocast where the hardware has bf16) against the plain reference
path (embedding + convolution, fp32) in the same run, for the demo, samplernn-3tier and beatles configs at
batch 16 and TBPTT 1024 on the CPU, with random weights and data. On CUDA it also measures beatles at full
size (batch 128) with bf16 and reports model FLOPs utilization. Prints one JSON object.

    python tools/bench_train.py [--steps 5] [--configs demo samplernn-3tier beatles] [--threads 2]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from soundalike import models
from soundalike.config import load_config
from soundalike.train import bf16_supported

ROOT = Path(__file__).resolve().parents[1]

# The best-known PyTorch port's training speed on this 2-core machine (samples/s, batch 16, TBPTT 1024).
PORT = {"samplernn-3tier": 2700, "samplernn-3tier@dim256": 13800}
H100_BF16_PEAK = 989e12  # dense bf16 FLOP/s of an H100 SXM


def step_fn(model, x, folded: bool, amp: bool, device: torch.device):
    opt = torch.optim.Adam(model.parameters(), 1e-3, fused=device.type == "cuda")
    ctx = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if amp else contextlib.nullcontext

    def step():
        with ctx():
            nll, _ = model(x, folded=folded, nll=True)
        loss = nll.float().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def timed(step, steps: int, device: torch.device) -> float:
    """Best seconds per step over `steps` runs after one warm-up (the machine is noisy)."""
    step()
    best = float("inf")
    for _ in range(steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return best


def flops_per_step(step) -> int:
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


def bench(name: str, overrides: list[str], batch: int, seq_len: int, steps: int, device: torch.device,
          reference: bool = True) -> dict:
    cfg = load_config(ROOT / "configs" / f"{name.split('@')[0]}.yaml", overrides)
    torch.manual_seed(0)
    model = models.from_config(cfg).to(device)
    x = torch.randint(0, cfg.data.q_levels, (batch, model.lookback + seq_len), device=device)
    amp = bf16_supported(device)
    fast = step_fn(model, x, folded=True, amp=amp, device=device)
    row = {"config": name, "device": device.type, "batch": batch, "seq_len": seq_len, "bf16": amp,
           "params": sum(p.numel() for p in model.parameters())}
    t_fast = timed(fast, steps, device)
    row["samples_per_s"] = round(batch * seq_len / t_fast)
    if reference:
        t_ref = timed(step_fn(model, x, folded=False, amp=False, device=device), steps, device)
        row["reference_samples_per_s"] = round(batch * seq_len / t_ref)
        row["speedup_vs_reference"] = round(t_ref / t_fast, 2)
    if name in PORT:
        row["port_samples_per_s"] = PORT[name]
        row["speedup_vs_port"] = round(row["samples_per_s"] / PORT[name], 2)
    if device.type == "cuda":
        flops = flops_per_step(fast)
        row["model_tflops_per_s"] = round(flops / t_fast / 1e12, 1)
        row["mfu_vs_h100_bf16_peak"] = round(flops / t_fast / H100_BF16_PEAK, 3)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--configs", nargs="+", default=["demo", "samplernn-3tier", "samplernn-3tier@dim256",
                                                      "beatles"])
    p.add_argument("--threads", type=int, default=os.cpu_count())
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    cpu = torch.device("cpu")
    for name in args.configs:
        overrides = ["model.dim=256"] if name.endswith("@dim256") else []
        rows.append(bench(name, overrides, 16, 1024, args.steps, cpu))
        print(json.dumps(rows[-1]), file=sys.stderr)
    if torch.cuda.is_available():
        gpu = torch.device("cuda")
        torch.backends.cuda.matmul.allow_tf32 = True
        rows.append(bench("beatles", [], 128, 1024, args.steps, gpu, reference=False))
    print(json.dumps({"threads": args.threads, "torch": torch.__version__, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
