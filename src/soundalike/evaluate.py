"""`soundalike evaluate`: NLL in bits per sample of a checkpoint on a split of its dataset (the SampleRNN
paper's metric), beside the entropy of the split's marginal distribution of levels (a no-model baseline)."""

from __future__ import annotations

import argparse
import json

import torch

from .checkpoint import build_model, load_checkpoint, quantizer_of
from .data import AudioDataset
from .sampling.engine import WEIGHTS, with_compact_weights
from .train import evaluate_nll, marginal_entropy_bits


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ckpt", required=True, help="checkpoint file (runs/<name>/checkpoints/best.pt)")
    p.add_argument("--split", default="test", choices=["train", "valid", "test"])
    p.add_argument("--data", help="dataset folder; default: the one the model was trained on")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--weights", choices=WEIGHTS, default="full",
                   help="bf16 / int8: the weight matrices rounded as `render --weights` stores them, to see the "
                        "cost")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def evaluate_checkpoint(ckpt_path: str, split: str, data: str | None = None, batch_size: int = 64,
                        device: str = "cpu", weights: str = "full") -> dict:
    """{'bits': NLL bits/sample, 'marginal_entropy_bits': ..., 'samples': n, 'split': ...}."""
    ckpt = load_checkpoint(ckpt_path)
    model = build_model(ckpt).to(device)
    if weights != "full":
        model = with_compact_weights(model, weights)
    cfg = ckpt["config"]
    dataset = AudioDataset(data or cfg["data"]["path"], quantizer_of(ckpt), split)
    result = evaluate_nll(model, dataset, batch_size, cfg["train"]["seq_len"], torch.device(device))
    return {"checkpoint": str(ckpt_path), "split": split, "step": ckpt.get("step"), "bits": result["bits"],
            "marginal_entropy_bits": marginal_entropy_bits(dataset.data, dataset.quantizer.levels),
            "samples": result["samples"], "weights": weights}


def run(args: argparse.Namespace) -> int:
    r = evaluate_checkpoint(args.ckpt, args.split, args.data, args.batch_size, args.device, args.weights)
    if args.json:
        print(json.dumps(r))
    else:
        print(f"{r['split']}: {r['bits']:.4f} bits/sample over {r['samples']:,} samples "
              f"(marginal entropy {r['marginal_entropy_bits']:.4f} bits; checkpoint step {r['step']}"
              f"{'' if r['weights'] == 'full' else '; ' + r['weights'] + ' weights'})")
    return 0
