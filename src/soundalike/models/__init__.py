"""Model families, one folder each (`config.py`, `model.py`, `stepper.py`, the `Family` record in
`__init__.py`), registered here: adding a family is a folder and its name in FAMILY_NAMES."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

import torch

from . import heads
from .family import Family, ModelConfig

if TYPE_CHECKING:
    from ..config import Config

FAMILY_NAMES = ("samplernn", "wavenet")  # the first is the default of a `model` section without `family`
FAMILIES: dict[str, Family] = {name: importlib.import_module(f".{name}", __name__).FAMILY for name in FAMILY_NAMES}
assert all(f.name == name for name, f in FAMILIES.items()), "a family's folder must carry its config's name"

__all__ = ["FAMILIES", "Family", "ModelConfig", "build", "count_parameters", "family_of", "from_config", "heads"]


def family_of(model: torch.nn.Module) -> Family:
    """The family of a model (also one wrapped by torch.compile or DistributedDataParallel)."""
    model = getattr(model, "_orig_mod", model)
    model = getattr(model, "module", model)
    for f in FAMILIES.values():
        if type(model) is f.model:
            return f
    raise TypeError(f"{type(model).__name__} is no registered model family (soundalike.models.FAMILIES)")


def build(family: str, kwargs: dict) -> torch.nn.Module:
    """A model of `family` from its constructor arguments (as stored in a checkpoint)."""
    return FAMILIES[family].model(**kwargs)


def from_config(cfg: Config) -> torch.nn.Module:
    """The model of a config, with fresh weights."""
    return FAMILIES[cfg.model.family].build(cfg.model, cfg.data.q_levels)


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
