"""The plain reference generators: one Python step per sample through a family's step-wise interface (each
family registers its own, `Family.reference`). Slow but obviously right; the fast engine is tested against them. Randomness contract (shared by every
engine so that they produce the same samples for a seed): a `torch.Generator` seeded with `seed` on the CPU
draws, for each block of `noise_block` samples, uniform noise of shape (B, noise_block, q_levels); the sample
is argmax(float32(logits) / temperature + gumbel(noise)) (the Gumbel-max trick), first index on ties.

On a GPU, drawing that noise on the CPU caps the throughput of large batches (256 uniforms per sample);
`NoiseStream(..., device="cuda")` draws it with a generator on the device instead: the same rule and
blocks, a different (equally valid, reproducible) stream of numbers for a seed.
"""

from __future__ import annotations

import torch

NOISE_BLOCK = 1024


def gumbel(u: torch.Tensor) -> torch.Tensor:
    """Uniform (0, 1) noise -> standard Gumbel noise."""
    tiny = torch.finfo(u.dtype).tiny
    return -torch.log((-torch.log(u.clamp_min(tiny))).clamp_min(tiny))


class NoiseStream:
    """Pre-drawn Gumbel noise in blocks, consumed sample by sample, identical for every engine."""

    def __init__(self, batch: int, q_levels: int, seed: int, block: int = NOISE_BLOCK,
                 device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.gen = torch.Generator(self.device).manual_seed(seed)
        self.batch, self.q_levels, self.block = batch, q_levels, block
        self.buf: torch.Tensor | None = None
        self.pos = block

    def block_noise(self) -> torch.Tensor:
        """The next whole block (B, block, q_levels)."""
        shape = (self.batch, self.block, self.q_levels)
        return gumbel(torch.rand(shape, generator=self.gen, device=self.device))

    def _refill(self) -> None:
        self.buf_gen_state = self.gen.get_state()  # resuming redraws the current block from here
        self.buf, self.pos = self.block_noise(), 0

    def next(self) -> torch.Tensor:
        """Noise for one sample (B, q_levels)."""
        if self.pos == self.block:
            self._refill()
        self.pos += 1
        return self.buf[:, self.pos - 1]

    def take(self, n: int) -> torch.Tensor:
        """Noise for the next `n` samples (B, n, q_levels): the same as `n` calls of `next`."""
        parts = []
        while n:
            if self.pos == self.block:
                self._refill()
            k = min(n, self.block - self.pos)
            parts.append(self.buf[:, self.pos:self.pos + k])
            self.pos, n = self.pos + k, n - k
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)

    def state(self) -> dict:
        """Where the stream is: enough to continue it exactly with `load_state`."""
        gen = self.buf_gen_state if self.pos < self.block else self.gen.get_state()
        return {"gen": gen.clone(), "pos": self.pos}

    def load_state(self, state: dict) -> None:
        self.gen.set_state(state["gen"])
        self.buf, self.pos = None, self.block
        if state["pos"] < self.block:
            self._refill()
            self.pos = state["pos"]


class StreamSlice(NoiseStream):
    """The noise of streams `rows` of a batch of `batch` streams: each block is drawn whole, as a NoiseStream of
    that batch draws it, and only these rows are kept. Streams [a, b) of a batch then get exactly the samples
    they get in the whole batch (a render split between processes, `render.Part`)."""

    def __init__(self, batch: int, rows: slice, q_levels: int, seed: int, block: int = NOISE_BLOCK,
                 device: torch.device | str = "cpu"):
        super().__init__(batch, q_levels, seed, block, device)
        self.rows = rows

    def block_noise(self) -> torch.Tensor:
        """The next whole block of these rows (len(rows), block, q_levels)."""
        u = torch.rand((self.batch, self.block, self.q_levels), generator=self.gen, device=self.device)
        return gumbel(u[self.rows])


def generate(model: torch.nn.Module, n_samples: int, batch: int = 1, temperature: float | torch.Tensor = 1.0,
             seed: int = 0, prime: torch.Tensor | None = None) -> torch.Tensor:
    """Generate (B, n_samples) levels from silence (after `prime` (T,) or (B, T) levels, teacher-forced) with
    the plain generator of `model`'s family."""
    from ..models import family_of

    return family_of(model).reference(model, n_samples, batch, temperature, seed, prime)
