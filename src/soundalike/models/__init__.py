"""Model families. Each model exposes `kwargs` (its constructor arguments) and `from_config`."""

from __future__ import annotations

import torch

from ..config import Config


def _families() -> dict:
    from .samplernn import SampleRNN
    from .wavenet import WaveNet

    return {"samplernn": SampleRNN, "wavenet": WaveNet}


def build(family: str, kwargs: dict) -> torch.nn.Module:
    """A model of `family` from its constructor arguments (as stored in a checkpoint)."""
    return _families()[family](**kwargs)


def from_config(cfg: Config) -> torch.nn.Module:
    return _families()[cfg.model.family].from_config(cfg.model, cfg.data)
