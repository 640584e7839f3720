"""The `model` section of a WaveNet (`family: wavenet`): its fields are `WaveNet`'s constructor arguments
(`output` and `mixtures`, the output head's, come from `heads.HeadConfig`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ...errors import UserError
from ..heads import HeadConfig


@dataclass
class WaveNetConfig(HeadConfig):
    family: ClassVar[str] = "wavenet"
    # n_stacks stacks of n_layers dilated causal convolutions with dilations 1, 2, 4, ..., 2**(n_layers - 1);
    # receptive field 1 + (kernel_size - 1) * n_stacks * (2**n_layers - 1).
    n_stacks: int = 4
    n_layers: int = 10  # per stack
    residual_channels: int = 64
    dilation_channels: int = 64  # of each gated unit (the convolution makes twice as many: filter and gate)
    skip_channels: int = 64
    out_channels: int = 256  # hidden width of the output head between the skip sum and the softmax
    kernel_size: int = 2
    # Loudness conditioning (`soundalike.loudness`): trained on each window's level, asked one by `render --level`.
    level_input: bool = False

    def validate(self, seq_len: int) -> None:
        """Checks that types alone cannot express; `seq_len` is train.seq_len (any positive length)."""
        for key in ("n_stacks", "n_layers", "residual_channels", "dilation_channels", "skip_channels",
                    "out_channels"):
            if getattr(self, key) < 1:
                raise UserError(f"model.{key}: must be positive")
        if self.kernel_size < 2:
            raise UserError(f"model.kernel_size: must be at least 2, got {self.kernel_size}")
        if seq_len < 1:
            raise UserError("train.seq_len: must be positive")
