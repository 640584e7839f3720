"""Loudness conditioning (`model.level_input`, experimental): a model told the level of its training windows,
asked for one in renders.

Without it the level of a render is whatever the sampled process settles at, and that differs from checkpoint
to checkpoint of one run by 8 dB (docs/MEASUREMENTS.md). With it, each training window is told the RMS level of
the coming second of its chunk (SPAN_SECONDS from the window's first target, in blocks of BLOCK samples; dBFS
of the chunk's audio at the dataset's gain, de-emphasized: the level a listener measures in the written WAV),
and the model adds a learned linear function of that number where its input enters (SampleRNN: the top tier's
input projection; WaveNet: every gated unit's pre-activation). The level of the coming second, not of the
whole chunk: a chunk's level is already in the model's recurrent state after its first window, so a model told
only that learns to ignore it (measured: renders asked for levels 10 dB apart came out the same). The coming
second is little more news (the last one is in the state too; `train.level_augment` makes every chunk's gain
news), and measured on the demo corpus neither made renders follow the level asked (docs/MEASUREMENTS.md,
"Loudness conditioning"): experimental. What the input tells is one number per window (at most a few bits per
`train.seq_len` samples), so the validation NLL, conditioned on it, is comparable to a plain model's to about
0.01 bits. The weights of that function start at zero, so a model given the input computes what it computed
without it until training finds a use for it (and `--init-from` a model without it starts from that model's
function).

A render asks for one level for all its streams (`render --level`, default the training data's own level, kept
in the model as `level_default`). A constant input is a constant added to some biases, so it is folded into
them (`at_level`): every sampler, the reference generators and the compiled loop alike, runs a plain model and
never sees the input.

The number the model reads is `feature` = (dB - the data's level) / STEP_DB, with levels clamped to
[FLOOR_DB, 0] (silence is -inf dB): centred and in steps of a few dB, so that Adam, whose steps are a fixed size
per weight, moves what the input does as fast as the rest of the model (read as dB / 20, about -0.7 +- 0.1 on
the demo corpus, the input was learned 5 dB for 10 asked at 12 CPU-minutes).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import numpy as np
import torch

FLOOR_DB = -80.0
SPAN_SECONDS = 1.0  # a training window is told the level of this much audio from its first target on
BLOCK = 64  # samples: the resolution of that span (`block_energies`)
STEP_DB = 6.0  # the model reads levels in these steps from its data's level (`feature`)


def energy_db(energy: np.ndarray | float, samples: np.ndarray | float) -> np.ndarray:
    """Energy (sum of squares) over a number of samples -> RMS level in dBFS, elementwise, FLOOR_DB for silence
    or no samples."""
    with np.errstate(divide="ignore", invalid="ignore"):
        db = 10.0 * np.log10(np.asarray(energy, dtype=np.float64) / np.asarray(samples, dtype=np.float64))
    return np.maximum(np.nan_to_num(db, nan=FLOOR_DB, neginf=FLOOR_DB), FLOOR_DB)


def rms_db(audio: np.ndarray) -> float:
    """RMS level of audio in dBFS, FLOOR_DB for silence or nothing."""
    return float(energy_db(np.sum(np.square(audio, dtype=np.float64)), audio.size))


def block_energies(audio: np.ndarray) -> np.ndarray:
    """Audio (n,) -> the cumulative energy at every BLOCK boundary, (ceil(n / BLOCK) + 1,) float64 from 0: the
    energy of blocks [a, b) is c[b] - c[a] (the last block may be short)."""
    n = audio.shape[0]
    padded = np.zeros(-(-n // BLOCK) * BLOCK)
    padded[:n] = np.square(audio, dtype=np.float64)
    return np.concatenate([[0.0], np.cumsum(padded.reshape(-1, BLOCK).sum(axis=1))])


def span_db(cum: np.ndarray, first: np.ndarray, length: np.ndarray, pos: np.ndarray, span: int) -> np.ndarray:
    """The level in dB of audio from sample `pos` of a chunk over `span` samples, in whole blocks: from the
    block holding `pos` to the one holding `pos + span - 1` or the chunk's end, whichever is first (at least the
    chunk's last block when `pos` is past its end). `cum` holds every chunk's `block_energies` one after the
    other, chunk k's from `first[k]`; `length` (samples), `pos` per stream."""
    blocks = -(-length // BLOCK)
    a = np.minimum(pos // BLOCK, blocks - 1)
    b = np.clip(-(-(pos + span) // BLOCK), a + 1, blocks)
    samples = np.minimum(b * BLOCK, length) - a * BLOCK
    return energy_db(cum[first + b] - cum[first + a], samples).astype(np.float32)


def feature(level_db: torch.Tensor | float, reference_db: torch.Tensor | float) -> torch.Tensor:
    """Levels in dB (any shape) -> the number the model reads: (dB - reference) / STEP_DB, levels clamped to
    [FLOOR_DB, 0]; the reference is the model's `level_default`, its training data's level."""
    level = torch.as_tensor(level_db, dtype=torch.float32).clamp(FLOOR_DB, 0.0)
    return (level - torch.as_tensor(reference_db, dtype=torch.float32, device=level.device)) / STEP_DB


def add_input(model: torch.nn.Module, width: int, enabled: bool) -> None:
    """Give `model` its level input when `enabled` (`level_proj`, a zero-initialized Linear(1, width), and the
    `level_default` buffer); `model.level_input` says whether it has one."""
    model.level_input = enabled
    model.level_proj = torch.nn.Linear(1, width, bias=False) if enabled else None
    if enabled:
        torch.nn.init.zeros_(model.level_proj.weight)
        model.register_buffer("level_default", torch.tensor(-20.0))  # the training data's level, set by training


def conditioning(model: torch.nn.Module, level: torch.Tensor | None, batch: int) -> torch.Tensor | None:
    """What `model`'s level input adds for levels (B,) in dB (None: its `level_default`): (batch, width); None
    when it has no level input."""
    if model.level_proj is None:
        return None
    if level is None:
        level = model.level_default.expand(batch)
    w = model.level_proj.weight
    return model.level_proj(feature(level, model.level_default).to(device=w.device, dtype=w.dtype)[:, None])


def drop_input(model: torch.nn.Module) -> None:
    """Remove `model`'s level input once a family's `fold_level` has folded it into biases."""
    model.level_proj, model.level_input = None, False
    del model.level_default
    model.kwargs = {**model.kwargs, "level_input": False}


def ask(model: torch.nn.Module, level_db: float | None, checkpoint: object) -> tuple[torch.nn.Module, float | None]:
    """(the model to sample, the level it was asked for) for `--level` (None: the data's) of render and radio:
    a model with a level input is folded at that level; asking one without it for a level is a UserError."""
    if getattr(model, "level_input", False):
        level = round(float(model.level_default), 2) if level_db is None else level_db
        return at_level(model, level), level
    if level_db is not None:
        from .errors import UserError

        raise UserError(f"--level: {checkpoint} was trained without a level input (model.level_input: true trains "
                        "one)")
    return model, None


def check_level(level_db: float, what: str = "--level") -> None:
    from .errors import UserError

    if not math.isfinite(level_db) or not FLOOR_DB <= level_db <= 0:
        raise UserError(f"{what}: expected a level in dBFS from {FLOOR_DB:g} to 0, got {level_db:g}")


def at_level(model: torch.nn.Module, level_db: float | None = None) -> torch.nn.Module:
    """`model` itself when it has no level input; else a copy asked for `level_db` (default: its
    `level_default`, the training data's level) with that input folded into its biases, a plain model
    (`level_input` false) that every sampler runs. `model` is left as it is."""
    model = getattr(model, "_orig_mod", model)  # torch.compile
    model = getattr(model, "module", model)  # DistributedDataParallel
    if not getattr(model, "level_input", False):
        return model
    db = float(model.level_default) if level_db is None else float(level_db)
    folded = copy.deepcopy(model)
    with torch.no_grad():
        folded.fold_level(feature(db, model.level_default).item())
    return folded


# --- holding a render at a level ---------------------------------------------------------------------------
#
# `render --hold-level` (`LevelHold`): left alone, a render settles at a level of its own, several dB under the
# data's on the demo corpus; a temperature steered to correct it reaches the level as hiss (measured: +5 to
# +12 dB of noise floor above 2 kHz). The hold instead tilts the softmax toward louder or quieter levels:
# p'(q) ~ p(q) exp(s * min(y_q^2, HOLD_CAP)), y_q the amplitude level q stands for in the model's own terms (the
# emphasized signal, when the data is emphasized), one strength s per stream, its logit bias (`heads.pick`).
# On an emphasized model a negative strength (too loud) tilts the heard amplitude instead, (y_q + a x)^2, x the
# last sample as heard, a the pre-emphasis coefficient (the sampler's heard tilt, `heads`, updated every
# sample): a loud low-frequency sound has little emphasized amplitude, so the emphasized tilt could not pull a
# track out of one (measured: a 47 Hz hum held for 12 s at a strength of -130), while the heard one damps it.
# Uncapped (HEARD_CAP): toward silence there is no full scale to push to, and capped at HOLD_CAP the tilt was
# flat over the whole band a hum's next sample lies in (|y_q + a x| > 0.32 for x near its 0.6 peak), so it
# damped hums later (measured: 19 s of hum in 400 s of held renders capped, 13 uncapped, 15 free). A positive
# strength keeps to the emphasized amplitude: toward a louder heard amplitude, the cheapest way is a
# low-frequency drift (measured: DC up to 0.05 and clipping).
# The strength is a PI controller's output, updated every HOLD_BLOCK_S from the level written (the de-emphasized
# audio's energy E averaged over about HOLD_TAU_S), both parts within +-HOLD_MAX: s = integral + HOLD_GAIN * e,
# e = L - dB(E) the error in dB against the level L asked, and the integral growing HOLD_RATE per second by
# 10 / ln 10 * (1 - E / P), P the energy of L: the same error near the level, but linear in the energy, so it
# settles where the mean energy, the level of the whole render, is L. Both errors are clipped to +-HOLD_ERROR_DB,
# so the cold start's silence does not wind the integral up. The first version, an integral of the dB error
# alone, settled the mean of the level in dB at L; a render's level in 2 s windows swings (on the Wesnoth
# soundtrack by 8 dB, the recordings' own by 6.6), and the mean energy of a swinging level lies over its mean
# dB: held renders came out 2.7 dB over the level asked there, 0.5-1.7 dB on the demo corpus. The cap keeps the
# tilt from pushing samples to full scale (measured without it: flat tops, DC). Figures: docs/MEASUREMENTS.md,
# "Holding the level".

HOLD_BLOCK_S = 0.064  # seconds between updates of the tilt
HOLD_TAU_S = 1.0  # the level the hold reads: the energy averaged over about this long (exponentially)
HOLD_RATE = 2.0  # the integral's growth per second per dB of (the energy's) error
HOLD_GAIN = 1.0  # the proportional part: strength per dB of error
HOLD_ERROR_DB = 10.0  # the errors the controller acts on are clipped to this either way
HOLD_MAX = 150.0  # bound on the strength either way
HOLD_CAP = 0.1  # the tilt grows with a level's squared amplitude up to this
HEARD_CAP = math.inf  # the heard tilt's cap: none


class LevelHold:
    """Closed-loop level control of B streams by a logit bias and, on an emphasized model, the heard tilt
    (above): `start` it on a sampler, `update` with each block of audio written, then set `controls` for the
    samples that follow (`generate` does both). The level read starts at the level asked, so the hold
    acts on what the streams do, not on the silence they start from."""

    def __init__(self, level_db: float, batch: int, sample_rate: int, amplitudes: np.ndarray, decay: float = 0.0):
        self.level_db, self.rate = float(level_db), int(sample_rate)
        self.block = max(1, round(HOLD_BLOCK_S * self.rate))
        self.target = 10.0 ** (self.level_db / 10.0)  # the mean square asked
        self.energy = np.full(batch, self.target)  # mean square, averaged
        self.integral = np.zeros(batch)  # the controller's integral part
        self.strength = np.zeros(batch)  # integral + proportional part: the tilt applied
        self.pending = np.zeros((batch, 0))  # audio written since the last whole block
        self.amplitudes = np.asarray(amplitudes, dtype=np.float64)  # (levels,) the model's own (emphasized)
        self.shape = np.minimum(np.square(self.amplitudes), HOLD_CAP)  # (levels,)
        self.decay = float(decay)  # the pre-emphasis coefficient: 0, no heard tilt

    def due(self) -> int:
        """Samples still to write before the tilt is next updated."""
        return self.block - self.pending.shape[1]

    def update(self, audio: np.ndarray) -> bool:
        """Audio (B, n) just written, n at most `due()`; once a whole block is written, the tilt is updated from
        it (True). The blocks count from the stream's start, so where a caller cuts its calls does not matter."""
        assert audio.shape[1] <= self.due(), "more audio than the hold's block has room for"
        self.pending = np.concatenate([self.pending, audio], axis=1)
        if self.due():
            return False
        a = math.exp(-self.block / self.rate / HOLD_TAU_S)
        self.energy = a * self.energy + (1 - a) * np.mean(np.square(self.pending, dtype=np.float64), axis=1)
        error = np.clip(self.level_db - energy_db(self.energy, 1.0), -HOLD_ERROR_DB, HOLD_ERROR_DB)
        linear = np.clip(10 / math.log(10) * (1 - self.energy / self.target), -HOLD_ERROR_DB, HOLD_ERROR_DB)
        self.integral = np.clip(self.integral + HOLD_RATE * linear * self.block / self.rate, -HOLD_MAX, HOLD_MAX)
        self.strength = np.clip(self.integral + HOLD_GAIN * error, -HOLD_MAX, HOLD_MAX)
        self.pending = self.pending[:, :0]
        return True

    def bias(self) -> torch.Tensor:
        """(B, levels) float32: the logit bias of the current strengths (an emphasized model's: the positive
        ones')."""
        s = np.maximum(self.strength, 0) if self.decay else self.strength
        return torch.from_numpy((s[:, None] * self.shape[None, :]).astype(np.float32))

    def controls(self) -> dict[str, torch.Tensor]:
        """The `Sampler.set_controls` arguments of the current strengths."""
        if not self.decay:
            return {"bias": self.bias()}
        return {"bias": self.bias(), "pull": torch.from_numpy(np.minimum(self.strength, 0).astype(np.float32))}

    def start(self, sampler, echo: np.ndarray) -> None:
        """Tilt `sampler`'s streams from now on; `echo` (B,): each stream's last sample as heard (the audio's,
        before clipping; 0 after silence), where an emphasized model's heard tilt starts."""
        if self.decay:
            sampler.set_heard(self.amplitudes, self.decay, HEARD_CAP, echo)
        sampler.set_controls(**self.controls())

    def take_tilt(self, other: LevelHold) -> None:
        """Go on from `other`'s tilt (its integral part, as the strength to start from), reading a level of
        one's own: a radio stream restarted in place of `other`'s."""
        self.integral = other.integral.copy()
        self.strength = other.integral.copy()

    def state(self) -> dict[str, torch.Tensor]:
        return {name: torch.from_numpy(getattr(self, name).copy())
                for name in ("energy", "integral", "strength", "pending")}

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        def read(name: str) -> np.ndarray:
            return state[name].double().numpy().copy()

        self.energy, self.strength = read("energy"), read("strength")
        # absent in states saved before them: the integral was the strength, the blocks counted from the resume
        self.integral = read("integral") if "integral" in state else self.strength.copy()
        self.pending = read("pending") if "pending" in state else self.pending[:, :0]


def generate(sampler, hold: LevelHold | None, n: int, to_audio: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """The next n samples of a `sampling.Sampler`'s streams through `to_audio` (levels (B, k) -> the audio
    written, (B, k)), concatenated; with a `hold`, cut at its blocks, its tilt updated after each."""
    if hold is None:
        return to_audio(sampler.generate(n).numpy())
    parts = []
    while n > 0:
        k = min(n, hold.due())
        audio = to_audio(sampler.generate(k).numpy())
        if hold.update(audio):
            sampler.set_controls(**hold.controls())
        parts.append(audio)
        n -= k
    return np.concatenate(parts, axis=-1)


def parse_hold(text: str | None) -> float | str | None:
    """--hold-level's value: "auto" when not given (the default: the training data's level where the model
    allows it, else none), None for "off", "data" (the training data's level) or a level in dBFS."""
    from .errors import UserError

    if text is None:
        return "auto"
    if text == "off":
        return None
    if text == "data":
        return text
    try:
        level = float(text)
    except ValueError:
        raise UserError(f"--hold-level: expected a level in dBFS, got {text!r}") from None
    check_level(level, "--hold-level")
    return level


def hold_target(asked: float | str | None, ckpt: dict, model: torch.nn.Module, path: object) -> float | None:
    """The level in dBFS streams are held at (None: no hold) for `parse_hold`'s value, checked against the
    model: a softmax head, and for "data" a checkpoint that records its data's level (`data_level_db`). "auto"
    (the default) is "data" for a softmax model whose checkpoint records the level, and no hold otherwise."""
    from .errors import UserError

    if asked == "auto":
        known = isinstance(ckpt.get("data_level_db"), (int, float))
        asked = "data" if known and model.head.kind == "softmax" else None
    if asked is None:
        return None
    if model.head.kind != "softmax":
        raise UserError(f"--hold-level: {path} has a {model.head.kind} head; the level hold tilts a softmax "
                        "(model.output: softmax)")
    if asked != "data":
        return float(asked)
    if not isinstance(ckpt.get("data_level_db"), (int, float)):
        raise UserError(f"--hold-level: {path} does not record its training data's level (trained before it did); "
                        "give the level: --hold-level DB")
    return round(float(ckpt["data_level_db"]), 2)


def make_hold(level_db: float | None, batch: int, sample_rate: int, quantizer) -> LevelHold | None:
    """The `LevelHold` of `batch` streams whose levels `quantizer` reads (None for no hold)."""
    if level_db is None:
        return None
    return LevelHold(level_db, batch, sample_rate, quantizer.dequantize(np.arange(quantizer.levels)),
                     quantizer.pre_emphasis)
