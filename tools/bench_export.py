"""Sizes of a model's files: the training checkpoint (with Adam's moments), a preview snapshot (the weights
without training state) and an export folder (`soundalike export`), for a config's model with random weights.

    python tools/bench_export.py [--config configs/beatles.yaml] [--work /tmp/bench-export]
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch
import torch.nn.functional as F

from soundalike import checkpoint as ckpt_io
from soundalike.config import load_config
from soundalike.export import export
from soundalike.models import count_parameters, from_config
from soundalike.quantize import Quantizer

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=str(ROOT / "configs" / "beatles.yaml"))
    p.add_argument("--work", default="/tmp/bench-export")
    args = p.parse_args()
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    cfg = load_config(args.config)
    torch.manual_seed(0)
    model = from_config(cfg)
    # One optimizer step on a short window, so the checkpoint holds Adam's moments as training's does.
    opt = torch.optim.Adam([q for q in model.parameters() if q.requires_grad])
    x = torch.randint(0, cfg.data.q_levels, (1, 2 * model.lookback))
    logits, _ = model(x)
    F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, model.lookback:].reshape(-1)).backward()
    opt.step()
    payload = ckpt_io.model_payload(model, Quantizer(cfg.data.quantization, cfg.data.q_levels), 16000,
                                    cfg.to_dict())
    payload.update(optimizer=opt.state_dict(), step=1, elapsed_s=0.0, best_val_bits=float("inf"),
                   torch_rng=torch.get_rng_state(), cuda_rng=None, tbptt_state=None, validation_pending=False)
    training, snapshot = work / "latest.pt", work / "snapshot.pt"
    ckpt_io.save_checkpoint(training, payload)
    ckpt_io.save_checkpoint(snapshot, ckpt_io.without_training_state(payload))
    out = export(training, work / "export", clips=0, evaluate=False)
    sizes = {"parameters": count_parameters(model), "training_checkpoint": training.stat().st_size,
             "snapshot": snapshot.stat().st_size,
             **{f"export/{f.name}": f.stat().st_size for f in sorted(out.iterdir())}}
    print(json.dumps(sizes, indent=2))
    mb = {k: v / 1e6 for k, v in sizes.items() if k != "parameters"}
    print(f"{cfg.name}: {sizes['parameters']:,} parameters; training checkpoint {mb['training_checkpoint']:.1f} MB, "
          f"snapshot {mb['snapshot']:.1f} MB, export {sum(v for k, v in mb.items() if k.startswith('export/')):.1f} MB "
          f"(model.safetensors {mb['export/model.safetensors']:.1f} MB)")


if __name__ == "__main__":
    main()
