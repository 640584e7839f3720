"""The `model` section of a SampleRNN (`family: samplernn`): its fields are `SampleRNN`'s constructor arguments
(`output` and `mixtures`, the output head's, come from `heads.HeadConfig`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ...errors import UserError
from ..heads import HeadConfig


@dataclass
class SampleRNNConfig(HeadConfig):
    family: ClassVar[str] = "samplernn"
    # Frame-tier upsampling ratios, bottom tier first. The bottom tier's frame is frame_sizes[0] samples (also
    # the sample-level MLP's context); each tier above is frame_sizes[k] times longer. [16, 4] is a 3-tier
    # model with frames of 16 and 64 samples; the paper's 3-tier (frames 8 and 2) is [2, 4].
    frame_sizes: list[int] = field(default_factory=lambda: [16, 4])
    dim: int = 1024
    n_rnn: int = 1
    rnn_type: str = "gru"  # gru | lstm
    emb_size: int = 256
    skip_connections: bool = False  # every RNN layer's output feeds the tier's output projection
    weight_norm: bool = True
    learn_h0: bool = True  # learned initial state; zeros otherwise
    # Loudness conditioning (`soundalike.loudness`): trained on each window's level, asked one by `render --level`.
    level_input: bool = False

    def validate(self, seq_len: int) -> None:
        """Checks that types alone cannot express; `seq_len` is train.seq_len (whole top frames)."""
        if self.rnn_type not in ("gru", "lstm"):
            raise UserError(f"model.rnn_type: expected gru or lstm, got {self.rnn_type!r}")
        if not self.frame_sizes or any(f < 1 for f in self.frame_sizes):
            raise UserError(f"model.frame_sizes: expected a non-empty list of positive integers, got "
                            f"{self.frame_sizes}")
        for key in ("dim", "n_rnn", "emb_size"):
            if getattr(self, key) < 1:
                raise UserError(f"model.{key}: must be positive")
        top = top_frame_size(self.frame_sizes)
        if seq_len < top or seq_len % top:
            raise UserError(f"train.seq_len: must be a multiple of the top frame size {top}, got {seq_len}")


def top_frame_size(frame_sizes: list[int]) -> int:
    """Samples per frame of the top tier: the product of the ratios."""
    n = 1
    for f in frame_sizes:
        n *= f
    return n
