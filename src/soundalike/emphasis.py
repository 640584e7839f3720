"""Pre-emphasis (`data.pre_emphasis`): the filter y[n] = x[n] - a*x[n-1] applied to audio before it is
quantized, and its inverse, de-emphasis x[n] = y[n] + a*x[n-1], wherever levels become audio again.

Music has most of its energy in the lows; emphasized, its spectrum is flatter, and the quantization and
sampling noise that de-emphasis then shapes falls under the music's own spectrum (LPCNet uses a = 0.85).

Both filters stream: they take (..., n) blocks with an explicit state that carries the history across blocks,
and the result does not depend on where a signal is cut into blocks, bit for bit. A stream that starts with
`state=None` begins after silence (x[-1] = 0), as the loader's context before a chunk's start does.
De-emphasis is a recursion; it runs on sub-blocks of `span` samples aligned to the stream's start, each with
the closed form x[j] = a^j * cumsum(a^-k * y[k]) + a^(j+1) * x[before the sub-block], so the loop is over
sub-blocks, not samples. Its state is the last output of the last whole sub-block (`carry`) and the inputs
after it (`pending`, fewer than `span`), so a block boundary inside a sub-block changes nothing.

Headroom: the emphasized signal can exceed the peak of the audio (by up to 1 + a, for a sample swinging from
one extreme to the other), and `Quantizer.quantize` clips it at +-1. It is clipped, not scaled down by 1 + a
to make that impossible: on the corpora measured (docs/MEASUREMENTS.md, "Pre-emphasis") no sample of the data
left [-1, 1], while the scale lowers the SNR of every sample; a clipped sample is an error e that
de-emphasis spreads as e * a^k, a short click at worst. Building a dataset cache says how many samples it
clipped (`data.AudioDataset`), and tools/emphasis_headroom.py measures a dataset beforehand.
`decode` clips its output to [-1, 1]: levels from a model can de-emphasize to any value up to 1 / (1 - a).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from .errors import UserError

if TYPE_CHECKING:
    from .quantize import Quantizer

MAX_SPAN = 4096
# a^-span stays below 2^60 so the cumulative sums keep float64 far from overflow and underflow.
_SPAN_RANGE = 60 * math.log(2)


class DeemphasisState(NamedTuple):
    carry: np.ndarray  # (...,) float64: the output at the end of the last whole sub-block
    pending: np.ndarray  # (..., r) float64, r < span: the inputs since then


def check_coefficient(a: float, key: str = "pre_emphasis") -> None:
    """A coefficient the filters accept: finite, 0 <= a < 1 (1 would make de-emphasis unstable)."""
    if isinstance(a, bool) or not isinstance(a, (int, float)) or not (math.isfinite(a) and 0 <= a < 1):
        raise UserError(f"{key}: must be at least 0 (0: off) and below 1, got {a!r}")


class Emphasis:
    """The pre-emphasis filter of coefficient `a` and its inverse, for blocks of shape (..., n)."""

    def __init__(self, a: float) -> None:
        check_coefficient(a)
        self.a = float(a)
        self.span = 1 if a == 0 else max(1, min(MAX_SPAN, int(_SPAN_RANGE / -math.log(a))))
        k = np.arange(self.span + 1, dtype=np.float64)
        self._up = self.a ** k  # a^0 .. a^span
        self._down = 1.0 / self._up[:-1]  # a^0 .. a^-(span-1)

    @property
    def off(self) -> bool:
        return self.a == 0.0

    def emphasize(self, x: np.ndarray, state: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(..., n) audio -> ((..., n) float64 emphasized, new state: (...,) the last input sample)."""
        x = np.asarray(x, dtype=np.float64)
        prev = np.zeros(x.shape[:-1]) if state is None else np.asarray(state, dtype=np.float64)
        if x.shape[-1] == 0:
            return x.copy(), prev
        if self.off:
            return x.copy(), x[..., -1].copy()
        before = np.concatenate([prev[..., None], x[..., :-1]], axis=-1)  # x[n - 1]
        return x - self.a * before, x[..., -1].copy()

    def deemphasize(self, y: np.ndarray, state: DeemphasisState | None = None
                    ) -> tuple[np.ndarray, DeemphasisState]:
        """(..., n) emphasized audio -> ((..., n) float64 audio, new state)."""
        y = np.asarray(y, dtype=np.float64)
        if state is None:
            state = DeemphasisState(np.zeros(y.shape[:-1]), np.zeros((*y.shape[:-1], 0)))
        if self.off:
            return y.copy(), state
        L, r = self.span, state.pending.shape[-1]
        todo = np.concatenate([state.pending, y], axis=-1)  # (..., r + n), from a sub-block's start
        n_all = todo.shape[-1]
        m = -(-n_all // L)  # sub-blocks, the last one possibly partial
        blocks = np.zeros((*todo.shape[:-1], m * L))
        blocks[..., :n_all] = todo
        blocks = blocks.reshape(*todo.shape[:-1], m, L)
        # Each sub-block's response from zero state; then the carries, one sub-block after the other.
        x = np.cumsum(blocks * self._down, axis=-1) * self._up[:-1]  # (..., m, L)
        carry = state.carry
        for i in range(m):
            x[..., i, :] += self._up[1:] * carry[..., None]
            carry = x[..., i, -1]
        x = x.reshape(*todo.shape[:-1], m * L)
        whole = n_all // L * L
        carry = x[..., whole - 1].copy() if whole else state.carry
        return x[..., r:n_all], DeemphasisState(carry, todo[..., whole:].copy())


def last_output(state: DeemphasisState | None, a: float, batch: int) -> np.ndarray:
    """The last sample (batch,) float64 that de-emphasis with `state` put out, unclipped (0 for None: silence)."""
    if state is None:
        return np.zeros(batch)
    if not state.pending.shape[-1]:
        return np.broadcast_to(state.carry, (batch,)).astype(np.float64)
    # the inputs since the last whole sub-block, again from its carry: their outputs, the last one among them
    x, _ = Emphasis(a).deemphasize(state.pending, DeemphasisState(state.carry, state.pending[..., :0]))
    return np.broadcast_to(x[..., -1], (batch,)).astype(np.float64)


def encode(audio: np.ndarray, quantizer: Quantizer) -> np.ndarray:
    """Audio (..., n) from silence -> the levels a model of `quantizer` reads: pre-emphasized and quantized (the
    inverse of decode, but for the levels' rounding). A prime, a station's restart, a data baseline."""
    return quantizer.quantize(Emphasis(quantizer.pre_emphasis).emphasize(audio)[0])


def decode(levels: np.ndarray, quantizer: Quantizer, state: DeemphasisState | None = None
           ) -> tuple[np.ndarray, DeemphasisState | None]:
    """Levels (..., n) -> the audio they stand for, (..., n) float32 in [-1, 1], and the de-emphasis state that
    continues the streams. Everything that turns levels into audio goes through here."""
    audio = quantizer.dequantize(levels)
    if quantizer.pre_emphasis == 0:
        return audio, state
    x, state = Emphasis(quantizer.pre_emphasis).deemphasize(audio, state)
    return np.clip(x, -1.0, 1.0).astype(np.float32), state
