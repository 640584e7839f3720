"""Checkpoints: one file holds the weights, the model's constructor arguments, the quantizer, the sample rate
and the resolved config, so a checkpoint alone rebuilds the model and renders; training state rides along.

Only tensors, dicts, lists, strings and numbers: a checkpoint loads with `torch.load(..., weights_only=True)`.
Format 3: the config's `model` section holds its family and that family's own fields, the output head's among
them (`output`, `mixtures`). A checkpoint of an older format is converted when it is loaded (`CONVERTERS`). A
key added since then with a default is filled in with what its absence meant (`_fill_added`).

An export folder (`soundalike export`) holds the same content without the training state: the tensors in
`model.safetensors`, everything else in `config.json`. `load_checkpoint` reads either and returns the same
structure, so every command that takes a checkpoint takes an export folder.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pickle
from pathlib import Path
from typing import Any

import torch

from .atomic import atomic_path
from .errors import UserError
from .quantize import Quantizer

FORMAT = 3
# What only resuming a training run needs; a preview snapshot and an export leave it out. Every other key of a
# checkpoint (those added later included) is part of the model's description and travels with it.
# "trained_model": the weights training goes on with, when the checkpoint's "model" is their average (train.ema)
TRAINING_STATE = ("optimizer", "scheduler", "loader", "tbptt_state", "torch_rng", "cuda_rng", "validation_pending",
                  "trained_model", "average_updates")
EXPORT_CONFIG = "config.json"  # an export folder's description; names its weights file
EXPORT_MARK = "soundalike_export"  # the key of config.json that makes a folder an export (its layout version)
TENSOR_REF = "$tensor"  # {"$tensor": name}: a tensor outside the state dict, stored in the weights file


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


def model_payload(model: torch.nn.Module, quantizer: Quantizer, sample_rate: int, config: dict,
                  data_level_db: float | None = None) -> dict:
    """The part of a checkpoint that rebuilds and runs the model (and the level of its training data, in dBFS
    as written: what `render --hold-level` holds by default)."""
    extra = {} if data_level_db is None else {"data_level_db": round(float(data_level_db), 3)}
    return {
        "family": config["model"]["family"],
        "model_kwargs": dict(model.kwargs),
        "model": model.state_dict(),
        "quantizer": quantizer.to_dict(),
        "sample_rate": int(sample_rate),
        "config": config,
        **extra,
    }


def without_training_state(ckpt: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's model and its description, without what only resuming training needs."""
    return {k: v for k, v in ckpt.items() if k not in TRAINING_STATE}


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint file or an export folder, with a one-line error for a missing or unreadable one."""
    path = Path(path)
    if path.is_dir():
        ckpt = load_export(path, map_location)
    elif path.is_file():
        ckpt = load_data(path, "checkpoint", map_location)
    else:
        raise UserError(f"{path}: checkpoint not found")
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
    from .models import FAMILIES

    if "level_input" in FAMILIES[ckpt["family"]].config_keys():  # a family with loudness conditioning
        for section in (ckpt.get("model_kwargs"), config.get("model") if isinstance(config, dict) else None):
            if isinstance(section, dict):
                section.setdefault("level_input", False)  # off
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


def split_tensors(ckpt: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A checkpoint without training state -> (tensors, JSON-ready description), the two files of an export.

    The state dict's tensors keep their names; a tensor anywhere else (a key added later) is stored as
    `extra:<key path>` and replaced by {"$tensor": name}. Non-finite numbers become null (JSON has none).
    """
    tensors = {k: v.detach().cpu().contiguous() for k, v in ckpt["model"].items()}

    def plain(value: Any, where: str) -> Any:
        if isinstance(value, torch.Tensor):
            tensors[f"extra:{where}"] = value.detach().cpu().contiguous()
            return {TENSOR_REF: f"extra:{where}"}
        if isinstance(value, dict):
            return {str(k): plain(v, f"{where}.{k}") for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v, f"{where}.{i}") for i, v in enumerate(value)]
        if isinstance(value, float) and not math.isfinite(value):
            return None
        return value

    described = {k: plain(v, k) for k, v in without_training_state(ckpt).items() if k != "model"}
    return tensors, described


def load_export(folder: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """An export folder as a checkpoint dict. Reads JSON and safetensors only (neither can run code), and
    only files inside the folder."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from .dataset import inside

    config = folder / EXPORT_CONFIG
    try:
        described = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        raise UserError(f"{folder}: not a soundalike checkpoint or export folder (no readable "
                        f"{EXPORT_CONFIG})") from None
    if not isinstance(described, dict) or EXPORT_MARK not in described or \
            not isinstance(described.get("weights"), str):
        raise UserError(f"{config}: not a soundalike export (no {EXPORT_MARK!r} and 'weights' keys)")
    weights = inside(folder, described.pop("weights"), f"{config}: weights")
    described.pop(EXPORT_MARK)
    try:
        tensors = load_file(weights, device=str(map_location))
    except (OSError, SafetensorError) as e:
        raise UserError(f"{weights}: not a readable safetensors file ({e})") from None

    def restore(value: Any) -> Any:
        if isinstance(value, dict) and set(value) == {TENSOR_REF}:
            if value[TENSOR_REF] not in tensors:
                raise UserError(f"{config}: names tensor {value[TENSOR_REF]!r}, which {weights.name} lacks")
            return tensors[value[TENSOR_REF]]
        if isinstance(value, dict):
            return {k: restore(v) for k, v in value.items()}
        if isinstance(value, list):
            return [restore(v) for v in value]
        return value

    ckpt = restore(described)
    ckpt["model"] = {k: v for k, v in tensors.items() if not k.startswith("extra:")}
    return ckpt


def files_of(path: str | Path) -> list[Path]:
    """The files a checkpoint is read from: itself, or an export folder's description and weights."""
    from .dataset import inside

    path = Path(path)
    if not path.is_dir():
        return [path]
    try:
        weights = json.loads((path / EXPORT_CONFIG).read_text(encoding="utf-8"))["weights"]
        return [path / EXPORT_CONFIG, inside(path, str(weights), "weights")]
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError, UserError):
        return [path / EXPORT_CONFIG]  # load_checkpoint says what is wrong


def build_model(ckpt: dict[str, Any]) -> torch.nn.Module:
    """Rebuild the model of a checkpoint with its weights, in eval mode on the CPU."""
    from .models import build

    model = build(ckpt["family"], ckpt["model_kwargs"])
    model.load_state_dict(ckpt["model"])
    return model.eval()


def default_min_p(ckpt: dict[str, Any]) -> float:
    """The min-p floor a model renders with unless told otherwise: its config's `train.sample_min_p` (what its
    preview clips used; 0, no floor, for checkpoints made before the option existed)."""
    train = ckpt.get("config", {}).get("train", {})
    return float(train.get("sample_min_p", 0.0)) if isinstance(train, dict) else 0.0


def quantizer_of(ckpt: dict[str, Any]) -> Quantizer:
    return Quantizer(**ckpt["quantizer"])
