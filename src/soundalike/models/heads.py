"""Output heads: the distribution over the next sample's level that every model family ends in, and the
input embedding of levels that goes with it.

A family computes features `z` (..., dim) per sample (after its last activation) and its own projection of
them, `params` (..., head.n_params); the head turns those into a loss and into samples:

- ``softmax``: one categorical over all `levels` (the SampleRNN paper's 256-way softmax).
- ``coarse_fine``: 16-bit output as WaveRNN does it: a level is a coarse byte (level // 256) and a fine byte
  (level % 256); `params` are the coarse logits, and the fine logits come from ``fine(relu(z + E[coarse]))``,
  so the fine byte is predicted given the coarse one (teacher-forced in training, the drawn one in sampling).
- ``logistic_mixture``: a discretized mixture of `mixtures` logistics over the level grid (PixelCNN++, the
  WaveNet vocoders): `params` = (mixture logits, means, log scales), each (..., K); the level grid is
  `Quantizer.grid` (linear in the level for both quantization kinds), and each level owns the interval of
  width 2 / levels around its grid value, the outermost ones reaching to infinity.

Sampling rule (the randomness contract of `sampling.reference`, per head): each sample reads `noise_width`
pre-drawn numbers. A categorical is drawn by Gumbel-max, argmax(float32(logits) / temperature + gumbel),
first index on ties, among the levels whose tempered probability is at least `min_p` times the most likely
one's (min-p sampling: `log_floor` = log(min_p), -inf when off). A softmax head's draw may add a per-stream
`bias` (B, levels) to the tempered logits first (an exponential tilt of the distribution: `loudness.LevelHold`
steers a render's level with it), and a *heard tilt* `pull * min((amp[q] + decay * echo)^2, cap)`, where `echo`
is the stream's last sample as heard (the de-emphasized value, unclipped) and `amp` the levels' amplitudes, so
that amp[q] + decay * echo is what level q would sound as; each draw updates echo to amp[q] + decay * echo (all in
float32, in this order, unfused); the floor then applies to the tilted distribution. The mixture draws its
component that way (noise[:K] Gumbel), then a logistic sample mu + exp(log_s) * temperature * logit(u'), where
u = noise[K] is uniform and u' = tail + (1 - 2 tail) u keeps the part of the logistic whose density is at least
min_p times its peak (tail = (1 - sqrt(1 - min_p)) / 2: the density relative to the peak is 4 u (1 - u)),
computed in float64; the level is the nearest grid point, clipped to [0, levels).

Inputs: a level is embedded as one row of a table of `levels` rows, or, above BYTE_INPUT_LEVELS levels, as the
sum of a row for its coarse byte and a row for its fine byte (`input_digits`): 16-bit tables of 65,536 rows per
context position would not fit in a cache (or in memory, folded).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError

HEADS = ("softmax", "coarse_fine", "logistic_mixture")
BYTE = 256
BYTE_INPUT_LEVELS = 4096  # above this many levels, inputs are embedded per byte
LOG_SCALE_MIN = -16.0  # of the logistics: far below a 16-bit step (2 / 65536 = 3e-5, log -10.4)
TINY_MASS = 1e-5  # below this, a bin's probability is its density at the centre times its width


@dataclass
class HeadConfig:
    """The fields every family's `model` section has for its head (a base of each family's config)."""

    output: str = "softmax"  # softmax | coarse_fine | logistic_mixture
    mixtures: int = 10  # logistics of the logistic_mixture head


def check(output: str, mixtures: int, levels: int) -> None:
    """Raise a `UserError` naming the key when the head cannot model `levels` (data.q_levels)."""
    if output not in HEADS:
        raise UserError(f"model.output: expected one of {', '.join(HEADS)}, got {output!r}")
    if output == "coarse_fine" and (levels <= BYTE or levels % BYTE):
        raise UserError(f"model.output: coarse_fine needs data.q_levels a multiple of 256 above 256 (65536 for "
                        f"16-bit), got {levels}")
    if output == "logistic_mixture" and mixtures < 1:
        raise UserError(f"model.mixtures: must be positive, got {mixtures}")


def input_digits(levels: int) -> tuple[int, int]:
    """(digits, radix) of the input embedding: a level is `digits` numbers below `radix`, each with its rows."""
    return (1, levels) if levels <= BYTE_INPUT_LEVELS else (2, BYTE)


def split_digits(levels: torch.Tensor, n_levels: int) -> torch.Tensor:
    """Levels (...) -> their input digits (..., digits), most significant first, for `input_digits`."""
    digits, radix = input_digits(n_levels)
    if digits == 1:
        return levels[..., None]
    return torch.stack([levels // radix, levels % radix], dim=-1)


class Controls(NamedTuple):
    """Per-stream sampling controls, float32 on the model's device: (B,) each but where said."""

    temperature: torch.Tensor
    log_floor: torch.Tensor  # log(min_p); -inf: no floor
    tail: torch.Tensor  # (1 - sqrt(1 - min_p)) / 2: the logistic's cut tail mass on each side
    bias: torch.Tensor  # (B, levels) added to a softmax head's tempered logits; (B, 0): none
    pull: torch.Tensor  # the heard tilt's strength (module docstring); (0,): no heard tilt
    echo: torch.Tensor  # each stream's last sample as heard, updated by the draws (state, not a control); (0,)
    amp: torch.Tensor  # (levels,): the amplitude of each level; (0,)
    decay: torch.Tensor  # (1,): the echo's decay (the pre-emphasis coefficient)
    cap: torch.Tensor  # (1,): the heard tilt's cap on a squared amplitude


class Heard(NamedTuple):
    """What the heard tilt needs besides its strength: the levels' amplitudes (levels,), the echo's decay and the
    cap of the squared amplitude (floats), and where each stream's echo starts (B,)."""

    amp: torch.Tensor
    decay: float
    cap: float
    echo: torch.Tensor


def controls(temperature: torch.Tensor, min_p: torch.Tensor, bias: torch.Tensor | None = None,
             pull: torch.Tensor | None = None, heard: Heard | None = None) -> Controls:
    """Controls from temperatures and min-p floors (B,) float32, min_p in [0, 1], an optional logit bias
    (B, levels) and an optional heard tilt: strengths `pull` (B,) and `heard` (None: none). The controls hold
    `heard.echo` itself when it is float32 and contiguous, so that the draws update it in place."""
    mp = min_p.double()
    log_floor = torch.where(mp > 0, mp.clamp_min(1e-300).log(), torch.full_like(mp, -math.inf))
    tail = (1 - torch.sqrt(1 - mp)) / 2
    dev = temperature.device
    if bias is None:
        bias = torch.zeros((len(temperature), 0), device=dev)
    none = torch.zeros(0, device=dev)
    if pull is None:
        pull, echo, amp, decay, cap = none, none, none, 0.0, 0.0
    else:
        assert heard is not None, "a heard tilt's strength without what it needs"
        echo = heard.echo if heard.echo.dtype == torch.float32 else heard.echo.float()
        pull, amp, decay, cap = pull.float().contiguous(), heard.amp.float().contiguous(), heard.decay, heard.cap
    decay_cap = torch.tensor([decay, cap], dtype=torch.float32, device=dev)
    return Controls(temperature.float(), log_floor.float(), tail.float(), bias.float().contiguous(), pull,
                    echo.contiguous(), amp, decay_cap[:1], decay_cap[1:])


def heard_tilt(c: Controls) -> torch.Tensor:
    """The heard tilt's logit terms (B, levels), in the documented order."""
    d = c.amp + c.decay * c.echo[:, None]
    return c.pull[:, None] * torch.minimum(d * d, c.cap)


def pick(logits: torch.Tensor, c: Controls, gumbel: torch.Tensor) -> torch.Tensor:
    """Gumbel-max draw with temperature, logit bias, heard tilt and min-p floor: logits (B, n), gumbel (B, n) ->
    (B,) int64. The echo is not updated here (`Head.draw` does)."""
    v = logits.float() / c.temperature[:, None]
    if c.bias.shape[-1]:
        v = v + c.bias
    if c.pull.shape[-1]:
        v = v + heard_tilt(c)
    keep = v >= v.amax(dim=-1, keepdim=True) + c.log_floor[:, None]
    return torch.where(keep, v + gumbel, -math.inf).argmax(dim=-1)


class Head(nn.Module):
    """An output distribution over `levels` levels given `dim` features (module docstring)."""

    def __init__(self, kind: str, dim: int, levels: int, mixtures: int = 10):
        super().__init__()
        self.kind, self.levels, self.mixtures = kind, levels, mixtures
        if kind == "softmax":
            self.n_params, self.noise_width, self.uniform = levels, levels, 0
        elif kind == "coarse_fine":
            n_coarse = levels // BYTE
            self.n_params, self.noise_width, self.uniform = n_coarse, n_coarse + BYTE, 0
            self.coarse_embedding = nn.Embedding(n_coarse, dim)
            self.fine = nn.Linear(dim, BYTE)
        elif kind == "logistic_mixture":
            self.n_params, self.noise_width, self.uniform = 3 * mixtures, mixtures + 1, 1
        else:
            raise ValueError(f"unknown head {kind!r}")

    def fine_logits(self, z: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        """coarse_fine: features (..., dim) and the coarse byte (...) -> fine logits (..., 256)."""
        return self.fine(F.relu(z + self.coarse_embedding(coarse)))

    def nll(self, params: torch.Tensor, z: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """params (..., n_params), features z (..., dim), target levels (...) -> NLL in nats (...), float32."""
        if self.kind == "softmax":
            return F.cross_entropy(params.float().movedim(-1, 1), target, reduction="none")
        if self.kind == "coarse_fine":
            coarse, fine = target // BYTE, target % BYTE
            fine_logits = self.fine_logits(z, coarse)
            return (F.cross_entropy(params.float().movedim(-1, 1), coarse, reduction="none")
                    + F.cross_entropy(fine_logits.float().movedim(-1, 1), fine, reduction="none"))
        return self._mixture_nll(params.float(), target)

    def _mixture_nll(self, params: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        K, Q = self.mixtures, self.levels
        logit_pi, mu, log_s = params[..., :K], params[..., K:2 * K], params[..., 2 * K:].clamp_min(LOG_SCALE_MIN)
        half = 1.0 / Q  # half a bin on the grid [-1, 1)
        x = ((target - Q // 2).to(params.dtype) * (2.0 / Q))[..., None]
        centred = x - mu
        inv_s = torch.exp(-log_s)
        plus = inv_s * (centred + half)
        minus = inv_s * (centred - half)
        log_cdf_plus = plus - F.softplus(plus)  # log sigmoid(plus): the lowest level's mass
        log_sf_minus = -F.softplus(minus)  # log (1 - sigmoid(minus)): the highest level's mass
        mass = torch.sigmoid(plus) - torch.sigmoid(minus)
        mid = inv_s * centred
        log_density = mid - log_s - 2 * F.softplus(mid) + math.log(2 * half)  # density at the centre x width
        inner = torch.where(mass > TINY_MASS, torch.log(mass.clamp_min(1e-12)), log_density)
        t = target[..., None]
        log_p = torch.where(t == 0, log_cdf_plus, torch.where(t == Q - 1, log_sf_minus, inner))
        return -torch.logsumexp(log_p + F.log_softmax(logit_pi, dim=-1), dim=-1)

    @torch.no_grad()
    def draw(self, params: torch.Tensor, z: torch.Tensor, noise: torch.Tensor, c: Controls) -> torch.Tensor:
        """One sample per stream by the module's rule: params (B, n_params), z (B, dim), noise (B, noise_width)
        -> levels (B,) int64."""
        if self.kind == "softmax":
            level = pick(params, c, noise)
            if c.pull.shape[-1]:
                c.echo.copy_(c.amp[level] + c.decay * c.echo)
            return level
        assert not c.bias.shape[-1] and not c.pull.shape[-1], "logit tilts are for softmax heads only"
        if self.kind == "coarse_fine":
            n = self.n_params
            coarse = pick(params, c, noise[:, :n])
            fine = pick(self.fine_logits(z, coarse), c, noise[:, n:])
            return coarse * BYTE + fine
        K, Q = self.mixtures, self.levels
        k = pick(params[:, :K], c, noise[:, :K])[:, None]
        mu = params[:, K:2 * K].gather(1, k)[:, 0].double()
        log_s = params[:, 2 * K:].gather(1, k)[:, 0].double().clamp_min(LOG_SCALE_MIN)
        tail = c.tail.double()
        u = tail + (1 - 2 * tail) * noise[:, K].double()
        x = mu + torch.exp(log_s) * c.temperature.double() * (torch.log(u) - torch.log1p(-u))
        return (torch.round(x * (Q / 2)) + Q // 2).clamp(0, Q - 1).long()
