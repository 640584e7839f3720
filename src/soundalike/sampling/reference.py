"""The plain reference generators: one Python step per sample through a family's step-wise interface (each
family registers its own, `Family.reference`). Slow but obviously right; the fast engine is tested against them. Randomness contract (shared by every
engine so that they produce the same samples for a seed): a `torch.Generator` seeded with `seed` on the CPU
draws, for each block of `noise_block` samples, uniform noise of shape (B, noise_block, width), the width and
the rule that turns it into a sample being the model's output head's (`models.heads`): for a softmax head the
width is q_levels and the sample is argmax(float32(logits) / temperature + gumbel(noise)) (the Gumbel-max
trick), first index on ties. The noise is handed out as Gumbel noise, except for the head's last `uniform`
columns, which stay uniform (at least 2**-24).

On a GPU, drawing that noise on the CPU caps the throughput of large batches (256 uniforms per sample for a softmax over 256 levels);
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

    def __init__(self, batch: int, width: int, seed: int, block: int = NOISE_BLOCK,
                 device: torch.device | str = "cpu", uniform: int = 0):
        self.device = torch.device(device)
        self.gen = torch.Generator(self.device).manual_seed(seed)
        self.batch, self.width, self.block, self.uniform = batch, width, block, uniform
        self.buf: torch.Tensor | None = None
        self.pos = block

    def block_noise(self) -> torch.Tensor:
        """The next whole block (B, block, width)."""
        return self.transform(self.uniforms())

    def uniforms(self) -> torch.Tensor:
        """The next block's uniform numbers for the whole batch (batch, block, width)."""
        return torch.rand((self.batch, self.block, self.width), generator=self.gen, device=self.device)

    def transform(self, u: torch.Tensor) -> torch.Tensor:
        """Uniform numbers (..., width) -> the noise handed out: Gumbel, the last `uniform` columns uniform."""
        if not self.uniform:
            return gumbel(u)
        k = self.width - self.uniform
        return torch.cat([gumbel(u[..., :k]), u[..., k:].clamp_min(2.0 ** -24)], dim=-1)

    def _refill(self) -> None:
        self.buf_gen_state = self.gen.get_state()  # resuming redraws the current block from here
        self.buf, self.pos = self.block_noise(), 0

    def next(self) -> torch.Tensor:
        """Noise for one sample (B, width)."""
        if self.pos == self.block:
            self._refill()
        self.pos += 1
        return self.buf[:, self.pos - 1]

    def take(self, n: int) -> torch.Tensor:
        """Noise for the next `n` samples (B, n, width): the same as `n` calls of `next`."""
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

    def __init__(self, batch: int, rows: slice, width: int, seed: int, block: int = NOISE_BLOCK,
                 device: torch.device | str = "cpu", uniform: int = 0):
        super().__init__(batch, width, seed, block, device, uniform)
        self.rows = rows

    def block_noise(self) -> torch.Tensor:
        """The next whole block of these rows (len(rows), block, width)."""
        return self.transform(self.uniforms()[self.rows])


def generate(model: torch.nn.Module, n_samples: int, batch: int = 1, temperature: float | torch.Tensor = 1.0,
             seed: int = 0, prime: torch.Tensor | None = None, min_p: float | torch.Tensor = 0.0,
             bias: torch.Tensor | None = None, pull=None, heard=None) -> torch.Tensor:
    """Generate (B, n_samples) levels from silence (after `prime` (T,) or (B, T) levels, teacher-forced) with
    the plain generator of `model`'s family; `min_p` the floor, `bias` (levels,) or (B, levels) the logit
    bias and `pull` (one or (B,)) with `heard` (`heads.Heard`) the heard tilt of `models.heads` (0 and None:
    none)."""
    from ..loudness import at_level
    from ..models import family_of

    model = at_level(model)  # a level input at the model's `level_default`, as `engine.make_stepper` folds it
    tilt = {} if pull is None else {"pull": pull, "heard": heard}  # a family without a heard tilt needs no such keys
    return family_of(model).reference(model, n_samples, batch, temperature, seed, prime, min_p, bias=bias, **tilt)
