"""Choosing the torch device from a `--device` flag, with one-line errors for the ones this machine lacks."""

from __future__ import annotations

import torch

from .errors import UserError


def pick_device(name: str | None, flag: str = "--device") -> torch.device:
    """`name` (cpu, cuda, cuda:N) as a device; None: CUDA where available, else the CPU."""
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"{flag}: unknown device {name!r}; use cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"{flag} {name}: only cpu and cuda are supported")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"{flag} {name}: CUDA is not available on this machine")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise UserError(f"{flag} {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device
