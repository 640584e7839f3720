"""The plain SampleRNN generator: one Python step per sample through the model's step-wise interface
(`tier_step`, `sample_outputs`). Slow but obviously right; the stepper is tested against it."""

from __future__ import annotations

import torch

from ...sampling.engine import stream_controls
from ...sampling.reference import NoiseStream
from .model import SampleRNN


@torch.no_grad()
def generate(model: SampleRNN, n_samples: int, batch: int = 1, temperature: float | torch.Tensor = 1.0,
             seed: int = 0, prime: torch.Tensor | None = None, min_p: float | torch.Tensor = 0.0,
             bias: torch.Tensor | None = None, pull=None, heard=None) -> torch.Tensor:
    """Generate (B, n_samples) levels from silence, following the randomness contract of `sampling.reference`.

    `prime` (T,) or (B, T) levels are fed first, teacher-forced (no noise drawn for them), after silence
    that pads them to whole top frames; generation continues right after their last sample.
    """
    model.eval()
    device = next(model.parameters()).device
    c = stream_controls(temperature, min_p, batch, device, bias, pull, heard)
    silence = model.q_levels // 2
    lookback, fs = model.lookback, model.frame_sizes[0]
    forced = 0
    if prime is not None:
        prime = torch.as_tensor(prime, dtype=torch.long).to(device)
        prime = prime.expand(batch, -1) if prime.dim() == 1 else prime
        forced = -prime.shape[1] % lookback + prime.shape[1]
    seq = torch.full((batch, lookback + forced + n_samples), silence, dtype=torch.long, device=device)
    if prime is not None:
        seq[:, lookback + forced - prime.shape[1]:lookback + forced] = prime
    states = model.initial_state(batch)
    conds: list = [None] * len(model.tiers)
    noise = NoiseStream(batch, model.head.noise_width, seed, uniform=model.head.uniform)
    for t in range(forced + n_samples):
        pos = lookback + t
        for k in reversed(range(len(model.tiers))):
            n = model.tier_frames[k]
            if t % n:
                continue
            upper = None
            if k + 1 < len(model.tiers):
                upper = conds[k + 1][:, (t // n) % model.frame_sizes[k + 1]]
            conds[k], states[k] = model.tier_step(k, seq[:, pos - n:pos], upper, states[k])
        if t < forced:
            continue
        params, z = model.sample_outputs(seq[:, pos - fs:pos], conds[0][:, t % fs])
        seq[:, pos] = model.head.draw(params, z, noise.next().to(device), c)
    return seq[:, lookback + forced:]
