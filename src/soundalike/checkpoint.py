"""Checkpoints: one file holds the weights, the model's constructor arguments, the quantizer, the sample rate
and the resolved config, so a checkpoint alone rebuilds the model and renders; training state rides along.

Only tensors, dicts, lists, strings and numbers: a checkpoint loads with `torch.load(..., weights_only=True)`.
Format 3: the config's `model` section holds its family and that family's own fields, the output head's among
them (`output`, `mixtures`). A checkpoint of an older format is converted when it is loaded (`CONVERTERS`). A
key added since then with a default is filled in with what its absence meant (`_fill_added`).
"""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path
from typing import Any

import torch

from .atomic import atomic_path
from .errors import UserError
from .quantize import Quantizer

FORMAT = 3


def _from_format_1(ckpt: dict[str, Any]) -> dict[str, Any]:
    """Format 1 held every field of every family in config['model']: keep the checkpoint's family's own."""
    from .models import FAMILIES

    model = ckpt["config"]["model"]
    own = FAMILIES[ckpt["family"]].config_keys()
    ckpt["config"]["model"] = {"family": model["family"], **{k: model[k] for k in own if k in model}}
    return ckpt


def _from_format_2(ckpt: dict[str, Any]) -> dict[str, Any]:
    """Format 2 predates the output heads: its models end in a softmax, which the head fields' defaults
    (`models.heads.HeadConfig`) name."""
    from .models.heads import HeadConfig

    for key, value in dataclasses.asdict(HeadConfig()).items():
        ckpt["config"]["model"].setdefault(key, value)
        ckpt["model_kwargs"].setdefault(key, value)
    return ckpt


CONVERTERS = {1: _from_format_1, 2: _from_format_2}  # format N -> format N + 1


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write `payload` (see `model_payload`) atomically: a kill leaves the old file or the new one."""
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save({"format": FORMAT, **payload}, tmp)


def model_payload(model: torch.nn.Module, quantizer: Quantizer, sample_rate: int, config: dict) -> dict:
    """The part of a checkpoint that rebuilds and runs the model."""
    return {
        "family": config["model"]["family"],
        "model_kwargs": dict(model.kwargs),
        "model": model.state_dict(),
        "quantizer": quantizer.to_dict(),
        "sample_rate": int(sample_rate),
        "config": config,
    }


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint file, with a one-line error for a missing or unreadable one."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: checkpoint not found")
    ckpt = load_data(path, "checkpoint", map_location)
    if not isinstance(ckpt, dict) or ckpt.get("format") not in (*CONVERTERS, FORMAT) or "model_kwargs" not in ckpt:
        raise UserError(f"{path}: not a soundalike checkpoint (formats {min(CONVERTERS)} to {FORMAT})")
    from .models import FAMILIES

    if ckpt.get("family") not in FAMILIES:
        raise UserError(f"{path}: unknown model family {ckpt.get('family')!r} (known: {', '.join(FAMILIES)})")
    while ckpt["format"] != FORMAT:
        ckpt = CONVERTERS[ckpt["format"]](ckpt)
        ckpt["format"] += 1
    return _fill_added(ckpt)


def _fill_added(ckpt: dict[str, Any]) -> dict[str, Any]:
    """Keys added to format 2 with a default: a checkpoint without them was written before they existed."""
    config = ckpt.get("config")
    for section in (ckpt.get("quantizer"), config.get("data") if isinstance(config, dict) else None):
        if isinstance(section, dict):
            section.setdefault("pre_emphasis", 0.0)  # off
    return ckpt


def load_data(path: Path, what: str, map_location: str | torch.device = "cpu") -> Any:
    """torch.load with weights_only=True: tensors and plain values only, so a file from someone else cannot
    run code here. Anything else (a pickled object, a damaged file) is a UserError naming the file."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        # torch's message suggests weights_only=False, which is exactly what must not be done with such a file.
        detail = next((ln.strip() for ln in str(e).splitlines() if "GLOBAL" in ln), "")
        if detail:
            raise UserError(f"{path}: refused to load this {what}: it holds objects other than tensors and "
                            f"plain values, which could run code ({detail})") from None
        raise UserError(f"{path}: not a readable soundalike {what} (damaged or not a torch file)") from None
    except Exception as e:  # noqa: BLE001 (a truncated or foreign file: torch raises many kinds)
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise UserError(f"{path}: not a readable soundalike {what} ({type(e).__name__}: {first})") from None


def build_model(ckpt: dict[str, Any]) -> torch.nn.Module:
    """Rebuild the model of a checkpoint with its weights, in eval mode on the CPU."""
    from .models import build

    model = build(ckpt["family"], ckpt["model_kwargs"])
    model.load_state_dict(ckpt["model"])
    return model.eval()


def quantizer_of(ckpt: dict[str, Any]) -> Quantizer:
    return Quantizer(**ckpt["quantizer"])
