"""Linear and mu-law quantization of audio in [-1, 1] to integer levels (2 to 65536).

Both use a mid-tread grid, so digital silence (0.0) maps to level `levels // 2` and back to exactly 0.0.
Level q stands for the value (q - levels // 2) * 2 / levels (linear), or the mu-law expansion of that value
(mu = levels - 1). Values outside [-1, 1] are clipped. quantize(dequantize(q)) == q for every level.

`pre_emphasis` (a, 0: off) records that the levels stand for pre-emphasized audio: the data and a prime are
filtered by `emphasis.Emphasis(a)` before `quantize`, and `emphasis.decode` undoes it after `dequantize`.
quantize and dequantize themselves are memoryless, sample by sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .emphasis import check_coefficient
from .errors import UserError

KINDS = ("linear", "mulaw")


@dataclass(frozen=True)
class Quantizer:
    kind: str = "mulaw"
    levels: int = 256
    pre_emphasis: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise UserError(f"quantization: unknown kind {self.kind!r}; use one of {', '.join(KINDS)}")
        if not 2 <= self.levels <= 65536:
            raise UserError(f"quantization: levels must be between 2 and 65536, got {self.levels}")
        check_coefficient(self.pre_emphasis, "quantization: pre_emphasis")

    @property
    def silence(self) -> int:
        """The level of digital silence."""
        return self.levels // 2

    @property
    def dtype(self) -> np.dtype:
        """The smallest unsigned dtype that holds every level (for caches on disk)."""
        return np.dtype(np.uint8 if self.levels <= 256 else np.uint16)

    @property
    def _step(self) -> float:
        return 2.0 / self.levels

    @property
    def _mu(self) -> float:
        return float(self.levels - 1)

    def _compress(self, x: np.ndarray) -> np.ndarray:
        if self.kind == "linear":
            return x
        return np.sign(x) * np.log1p(self._mu * np.abs(x)) / np.log1p(self._mu)

    def _expand(self, y: np.ndarray) -> np.ndarray:
        if self.kind == "linear":
            return y
        return np.sign(y) * np.expm1(np.abs(y) * np.log1p(self._mu)) / self._mu

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """Audio floats (any shape) -> levels as int64, same shape."""
        y = self._compress(np.clip(np.asarray(x, dtype=np.float64), -1.0, 1.0))
        q = np.rint(y / self._step) + self.silence
        return np.clip(q, 0, self.levels - 1).astype(np.int64)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        """Levels (any integer array) -> audio floats in [-1, 1] as float32, same shape."""
        return self._expand(self.grid(q)).astype(np.float32)

    def grid(self, q: np.ndarray) -> np.ndarray:
        """Levels -> their position on the uniform grid in [-1, 1] (the compressed value for mu-law).

        This is what a model should be fed: it is linear in the level index for both kinds.
        """
        return (np.asarray(q, dtype=np.float64) - self.silence) * self._step

    def log2_width16(self) -> np.ndarray:
        """log2 of each level's bin width in 16-bit steps (1 / 32768 of full scale) (levels,) float64: what a
        model over these levels is charged, as if uniform inside its bin, to compare its NLL with a model over
        16-bit levels. A bin spans half a grid step either side of its level, expanded for mu-law."""
        g = self.grid(np.arange(self.levels))
        half = self._step / 2
        return np.log2((self._expand(g + half) - self._expand(g - half)) * 32768.0)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "levels": self.levels, "pre_emphasis": float(self.pre_emphasis)}
