"""`soundalike evaluate`: NLL in bits per sample of a checkpoint on a split of its dataset (the SampleRNN
paper's metric), beside the entropy of the split's marginal distribution of levels (a no-model baseline).
Training's validation uses `evaluate_nll` from here, so both report the same number."""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
import torch
import torch.distributed as dist

from .checkpoint import build_model, load_checkpoint, quantizer_of
from .data import AudioDataset, eval_batches
from .dataset import Manifest
from .device import pick_device
from .errors import UserError
from .sampling.engine import WEIGHTS, with_compact_weights
from .sparsity import zero_blocks

LOG2 = math.log(2)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ckpt", required=True, help="checkpoint file (runs/<name>/checkpoints/best.pt) or export folder")
    p.add_argument("--split", default="test", choices=["train", "valid", "test"])
    p.add_argument("--data", help="dataset folder; default: the one the model was trained on")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: CUDA if available)")
    p.add_argument("--weights", choices=WEIGHTS, default="full",
                   help="bf16 / int8: the weight matrices rounded as `render --weights` stores them, to see the "
                        "cost")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")


@torch.no_grad()
def evaluate_nll(model, dataset: AudioDataset, batch_size: int, seq_len: int, device: torch.device,
                 rank: int = 0, world: int = 1) -> dict:
    """NLL of every sample of `dataset` (sharded over `world` ranks, summed): {'bits': bits/sample, 'bits16':
    bits/sample at 16-bit resolution (`Quantizer.log2_width16`), 'samples': n}."""
    model.eval()
    lookback = model.lookback
    total_nats, total_width, total_n = 0.0, 0.0, 0.0
    log2_width = torch.as_tensor(dataset.quantizer.log2_width16(), device=device)
    state = None
    levels = bool(getattr(model, "level_input", False))  # told each window's level, as in training
    for batch in eval_batches(dataset, batch_size, seq_len, lookback, rank, world, with_levels=levels):
        x, reset, mask = batch.x.to(device), batch.reset.to(device), batch.mask.to(device)
        if state is not None and state_batch(state) != x.shape[0]:
            state = None  # the last group may hold fewer streams
        extra = {"level": batch.level.to(device)} if levels else {}
        nll, state = model(x, state, reset, nll=True, **extra)
        total_nats += float((nll * mask).sum())
        total_width += float((log2_width[x[:, lookback:]] * mask).sum())
        total_n += float(mask.sum())
    if world > 1 and dist.is_available() and dist.is_initialized():
        t = torch.tensor([total_nats, total_width, total_n], dtype=torch.float64, device=device)
        dist.all_reduce(t)
        total_nats, total_width, total_n = t.tolist()
    model.train()
    n = max(total_n, 1)
    return {"bits": total_nats / n / LOG2, "bits16": (total_nats / LOG2 + total_width) / n, "samples": int(total_n)}


def state_batch(state) -> int:
    """The number of streams of a model's recurrent state (nested tuples of (layers, B, dim) tensors)."""
    first = state[0]
    while not isinstance(first, torch.Tensor):
        first = first[0]
    return first.shape[1]


def marginal_entropy_bits(levels: np.ndarray, q_levels: int, log2_width: np.ndarray | None = None) -> float:
    """Entropy in bits of the marginal distribution of quantized values (a no-model baseline); with the
    levels' `log2_width` (`Quantizer.log2_width16`), in bits at 16-bit resolution."""
    counts = np.bincount(np.asarray(levels).ravel(), minlength=q_levels).astype(np.float64)
    p = counts / counts.sum()
    used = p > 0
    bits = float(-(p[used] * np.log2(p[used])).sum())
    return bits if log2_width is None else bits + float((p[used] * log2_width[used]).sum())


def evaluate_checkpoint(ckpt_path: str, split: str, data: str | None = None, batch_size: int = 64,
                        device: str | None = "cpu", weights: str = "full") -> dict:
    """{'bits': NLL bits/sample, 'marginal_entropy_bits': ..., 'samples': n, 'split': ...}."""
    if batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {batch_size}")
    dev = pick_device(device)
    ckpt = load_checkpoint(ckpt_path)
    cfg = ckpt["config"]
    quantizer = quantizer_of(ckpt)
    root = data or cfg["data"]["path"]
    rate = Manifest.load(root).sample_rate
    if rate != int(ckpt["sample_rate"]):
        raise UserError(f"{root}: sampled at {rate} Hz, but the model was trained at {ckpt['sample_rate']} Hz; "
                        f"its NLL there would mean nothing (slice the audio again at --sample-rate "
                        f"{ckpt['sample_rate']})")
    dataset = AudioDataset(root, quantizer, split)
    model = build_model(ckpt).to(dev)
    zero = zero_blocks(model)
    if weights != "full":
        model = with_compact_weights(model, weights)
    result = evaluate_nll(model, dataset, batch_size, cfg["train"]["seq_len"], dev)
    q = dataset.quantizer
    return {"checkpoint": str(ckpt_path), "split": split, "step": ckpt.get("step"), "bits": result["bits"],
            "bits16": result["bits16"], "marginal_entropy_bits": marginal_entropy_bits(dataset.data, q.levels),
            "marginal_entropy_bits16": marginal_entropy_bits(dataset.data, q.levels, q.log2_width16()),
            "samples": result["samples"], "weights": weights, "zero_blocks": zero}


def run(args: argparse.Namespace) -> int:
    r = evaluate_checkpoint(args.ckpt, args.split, args.data, args.batch_size, args.device, args.weights)
    if args.json:
        print(json.dumps(r))
    else:
        sparse = f"; {100 * r['zero_blocks']:.1f} % of the 16x1 blocks zero" if r["zero_blocks"] else ""
        print(f"{r['split']}: {r['bits']:.4f} bits/sample ({r['bits16']:.4f} at 16-bit resolution) over "
              f"{r['samples']:,} samples (marginal entropy {r['marginal_entropy_bits']:.4f} bits, "
              f"{r['marginal_entropy_bits16']:.4f} at 16-bit; checkpoint step {r['step']}"
              f"{'' if r['weights'] == 'full' else '; ' + r['weights'] + ' weights'}"
              f"{sparse})")
    return 0
