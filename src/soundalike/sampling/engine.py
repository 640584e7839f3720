"""The sampling engine: streams of samples from any model family that provides a `Stepper`.

The engine owns what every family shares: the history buffer, the pre-drawn noise of the randomness
contract (`reference.NoiseStream`), per-stream temperatures, priming, and a state that resumes a stream
exactly. A family's stepper owns its recurrent state and draws `hop` samples per `advance` call, however it
likes; the family's record (`soundalike.models.Family`) says how to build it.
"""

from __future__ import annotations

import contextlib
import copy
import os
from typing import Protocol

import numpy as np
import torch

from .. import loudness
from ..models import family_of
from ..models.heads import Controls, Head, Heard, controls
from .reference import NoiseStream

# A stepper's weight storage. full: the compute dtype. bf16: weight matrices rounded to bfloat16. int8: each
# output row of a weight matrix as 8-bit integers times one float32 scale (`quantize_int8`). What each family
# does with that is documented beside its stepper; `with_compact_weights` is the model it computes, by the
# family's compact-weights rule (`Family.unrounded`, `Family.plain_kwargs`).
WEIGHTS = ("full", "bf16", "int8")
CHUNK = 4096  # samples generated between history shifts (and noise transfers to the device)
NOISE_BYTES = 1 << 28  # cap on a span's noise (B * span * noise width float32)


class Stepper(Protocol):
    """A model's step-wise generation for B streams at once.

    Samples are integer levels in [0, q_levels). The engine keeps the history `seq` (B, L) int64 on
    `device`; `advance` reads the `context` samples before `pos` and writes the next `hop` samples in place.
    """

    q_levels: int
    head: Head  # the output head, in the stepper's dtype on its device (its draw is the torch backends')
    hop: int  # samples drawn per advance() call
    context: int  # history samples advance() reads, and prime() wants before the primed samples
    device: torch.device
    dtype: torch.dtype  # of the logits
    backend: str  # "c": compiled CPU loops
    threads: int  # of the compiled loops

    def reset(self, batch: int) -> None:
        """Start `batch` streams from the model's initial state (history: `context` samples of silence)."""

    def prime(self, levels: torch.Tensor) -> None:
        """Teacher-force levels (B, context + k * hop) on `device`, from the initial state, to set the state."""

    def advance(self, seq: torch.Tensor, pos: int, noise: torch.Tensor, controls: Controls,
                logits: torch.Tensor | None = None) -> None:
        """Write seq[:, pos:pos + hop]. noise (B, hop, head.noise_width) float32 and the controls (B,) on
        `device`; sample t is head.draw(params_t, z_t, noise[:, t], controls); logits (B, hop, head.n_params)
        receives the head's parameters used (the logits, for a softmax head) when given."""

    def state(self) -> dict[str, torch.Tensor]:
        """The recurrent state between two advance() calls, as CPU tensors."""

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        """Continue from a `state()`."""


def stepper_placement(model: torch.nn.Module, device, dtype: torch.dtype | None, backend: str,
                      backends: tuple[str, ...], weights: str) -> tuple[torch.device, torch.dtype]:
    """Check a stepper's `backend` and `weights` options -> its device and dtype (default: the model's)."""
    if backend not in backends:
        raise ValueError(f"backend must be one of {backends}, got {backend!r}")
    if weights not in WEIGHTS:
        raise ValueError(f"weights must be one of {WEIGHTS}, got {weights!r}")
    param = next(model.parameters())
    return (torch.device(device) if device is not None else param.device), (dtype or param.dtype)


def weight(t: torch.Tensor, device, dtype) -> torch.Tensor:
    """A parameter for a stepper, detached and contiguous, in `dtype` on `device`: read-only, since it may
    share memory with the model's own parameter."""
    return t.detach().to(device=device, dtype=dtype).contiguous()


def quantize_int8(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights (R, ...) -> int8 levels q of the same shape and float32 scales (R,): each output row r is
    q[r] * scale[r], scale[r] = max |w[r]| / 127 (1 for a zero row), q rounded to nearest, in float32."""
    w32 = w.detach().float().reshape(len(w), -1)
    scale = w32.abs().amax(dim=1) / 127
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = torch.round(w32 / scale[:, None]).clamp_(-127, 127).to(torch.int8)
    return q.reshape(w.shape), scale


def compact(w: torch.Tensor, weights: str) -> torch.Tensor:
    """The values a stepper computes with when it stores weight matrix `w` as `weights`, in w's dtype."""
    if weights == "bf16":
        return w.to(torch.bfloat16).to(w.dtype)
    if weights == "int8":
        q, scale = quantize_int8(w)
        return q.to(w.dtype) * scale.to(w.dtype).reshape(-1, *[1] * (w.dim() - 1))  # exact in float64
    return w


@torch.no_grad()
def with_compact_weights(model: torch.nn.Module, weights: str) -> torch.nn.Module:
    """A new model computing what `model`'s stepper computes with `weights` ("bf16" or "int8"): the same
    model with plain weight matrices (`Family.plain_kwargs`: weight norm folded), every one but the family's
    `unrounded` ones rounded by `compact` (kept in the model's dtype). Its teacher-forced NLL is what
    `--weights` costs (`soundalike evaluate --weights`). `model` is left as it is."""
    model = getattr(model, "module", model)
    family = family_of(model)
    first = next(model.parameters())
    plain = family.model(**family.plain_kwargs(dict(model.kwargs)))
    plain = plain.to(device=first.device, dtype=first.dtype).eval()
    source = dict(model.named_modules())
    for prefix, module in plain.named_modules():
        for name, p in module.named_parameters(recurse=False):
            value = getattr(source[prefix], name)  # a weight-normed module computes its folded weight
            full = f"{prefix}.{name}" if prefix else name
            if "weight" in name and p.dim() >= 2 and not full.endswith(family.unrounded):
                value = compact(value, weights)
            p.copy_(value)
        for name, b in module.named_buffers(recurse=False):
            b.copy_(getattr(source[prefix], name))  # e.g. a level input's `level_default`
    return plain


def make_stepper(model: torch.nn.Module, device=None, dtype: torch.dtype | None = None,
                 backend: str = "auto", weights: str = "full") -> Stepper:
    """The stepper of `model`'s family; weights are read (and folded) once, here. A model with a level input
    renders at its `level_default` unless it was folded at another level first (`loudness.at_level`)."""
    model = getattr(model, "_orig_mod", model)  # torch.compile
    model = loudness.at_level(getattr(model, "module", model))  # DistributedDataParallel; a level input folded
    return family_of(model).stepper(model, device=device, dtype=dtype, backend=backend, weights=weights)


def temperatures(temperature, batch: int, what: str = "temperatures") -> torch.Tensor:
    """One temperature (or another per-stream control) or one per stream -> (batch,) float32."""
    temp = torch.as_tensor(temperature, dtype=torch.float32).reshape(-1)
    assert len(temp) in (1, batch), f"expected 1 or {batch} {what}, got {len(temp)}"
    return temp.expand(batch).clone()


def stream_controls(temperature, min_p, batch: int, device=None, bias: torch.Tensor | None = None,
                    pull=None, heard: Heard | None = None) -> Controls:
    """The sampling controls of `batch` streams from one temperature and min-p floor or one per stream each, a
    logit bias (levels,) or (batch, levels) (None: none), and a heard tilt: one strength `pull` or one per
    stream, with `heard` (its echo copied: the draws update the controls' own)."""
    if bias is not None:
        bias = torch.as_tensor(bias, dtype=torch.float32).to(device).expand(batch, -1)
    if pull is not None:
        pull = temperatures(pull, batch, "strengths").to(device)
        heard = heard_on(heard, batch, device)
    return controls(temperatures(temperature, batch).to(device), temperatures(min_p, batch, "min-p floors").to(device),
                    bias, pull, heard)


def heard_on(heard: Heard, batch: int, device) -> Heard:
    """`heard` with its tensors as the controls hold them on `device`: float32, the echo (batch,), a copy."""
    echo = torch.as_tensor(heard.echo, dtype=torch.float32).reshape(-1).expand(batch).clone().to(device)
    return Heard(torch.as_tensor(heard.amp, dtype=torch.float32).to(device), float(heard.decay), float(heard.cap),
                 echo)


def stepper_head(head: Head, device, dtype: torch.dtype, weights: str) -> Head:
    """A stepper's copy of a model's output head: in `dtype` on `device`, its weight matrix rounded as
    `with_compact_weights` rounds it (the coarse embedding is a row lookup, kept exact)."""
    head = copy.deepcopy(head).to(device=device, dtype=dtype).eval()
    if head.kind == "coarse_fine" and weights != "full":
        with torch.no_grad():
            head.fine.weight.copy_(compact(head.fine.weight, weights))
    return head


def cpu_threads(n: int) -> int:
    """`n` threads, or with 0 one per core this process may run on."""
    if n > 0:
        return n
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Run with `n` intra-op threads (None: leave as is), restoring the setting after."""
    old = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n:
            torch.set_num_threads(old)


class Sampler:
    """B streams of samples from a model: `prime` optionally, then `generate(n)` as often as wanted.

    Consecutive `generate` calls continue one stream; `state_dict` / `load_state_dict` resume it exactly.
    `threads` (CPU only; 0: one per core): threads of the compiled loops, which split each matrix product by
    output rows (the same samples for any number), and of torch ops when priming or with the numpy / torch
    backends. Around the compiled loops torch itself runs one thread: its ops there (drawing the noise) are
    small, and idle OpenMP workers spin on the cores the loops' helpers need (demo: ~5% slower with two).
    With every core busy with other work, more threads are about as fast as one, never much slower: the
    caller runs the parts of a helper that is off its core instead of waiting for it (docs/MEASUREMENTS.md).
    """

    def __init__(self, model: torch.nn.Module, batch: int = 1, temperature: float | list | torch.Tensor = 1.0,
                 seed: int = 0, device=None, dtype: torch.dtype | None = None, backend: str = "auto",
                 threads: int = 0, device_noise: bool = False, weights: str = "full",
                 min_p: float | list | torch.Tensor = 0.0):
        self.stepper = make_stepper(model, device, dtype, backend, weights)
        self.threads = cpu_threads(threads) if self.stepper.device.type == "cpu" else None
        s = self.stepper
        s.threads = self.threads or 1
        # torch's own threads while generating (see above)
        self._gen_threads = 1 if self.threads and s.backend == "c" else self.threads
        self.batch, self.q_levels, self.device = batch, s.q_levels, s.device
        self.temperature = temperatures(temperature, batch).to(self.device)
        self.min_p = temperatures(min_p, batch, "min-p floors").to(self.device)
        self.bias = torch.zeros((batch, 0), device=self.device)  # none
        self.pull: torch.Tensor | None = None  # the heard tilt's strengths (None: no heard tilt)
        self.heard: Heard | None = None
        self.controls = controls(self.temperature, self.min_p)
        # device_noise: draw the noise on the model's device (see reference.NoiseStream).
        self.noise = NoiseStream(batch, s.head.noise_width, seed, device=self.device if device_noise else "cpu",
                                 uniform=s.head.uniform)
        self.silence = s.q_levels // 2
        # History buffer: `context` samples before `self.filled`, room for a span more before a shift; a
        # span's noise is drawn at once (at most NOISE_BYTES of it, for large batches).
        span = min(CHUNK, NOISE_BYTES // (4 * batch * s.head.noise_width))
        self.span = s.hop * max(1, span // s.hop)
        self.seq = torch.full((batch, s.context + self.span), self.silence, dtype=torch.long, device=self.device)
        self.filled = s.context
        self.read = s.context  # samples before `read` were already returned
        self.generated = 0  # samples returned so far, per stream
        self._noise: torch.Tensor | None = None  # noise of the current span, on the device
        self._noise_pos = 0
        self._noise_state: dict = {}
        self._logits: torch.Tensor | None = None  # logits of the samples in `seq`, when asked for
        s.reset(batch)

    def set_controls(self, temperature=None, min_p=None, bias=None, pull=None) -> None:
        """Change the temperature and/or min-p floor (one value or one per stream), the logit bias
        ((B, levels), a softmax head's only; (B, 0) for none) and/or the heard tilt's strength (one or one per
        stream; `set_heard` first) from the next sample the streams draw on (samples drawn ahead of those
        returned, at most a top frame's, keep what they were drawn with)."""
        if temperature is not None:
            self.temperature = temperatures(temperature, self.batch).to(self.device)
        if min_p is not None:
            self.min_p = temperatures(min_p, self.batch, "min-p floors").to(self.device)
        if bias is not None:
            bias = torch.as_tensor(bias, dtype=torch.float32)
            assert bias.shape in ((self.batch, 0), (self.batch, self.q_levels)), f"bias of shape {tuple(bias.shape)}"
            assert not bias.shape[1] or self.stepper.head.kind == "softmax", "a logit bias is for softmax heads"
            self.bias = bias.to(self.device)
        if pull is not None:
            assert self.heard is not None, "set_heard before a heard tilt's strength"
            self.pull = temperatures(pull, self.batch, "strengths").to(self.device)
        self.controls = controls(self.temperature, self.min_p, self.bias, self.pull, self.heard)

    def set_heard(self, amp, decay: float, cap: float, echo) -> None:
        """Turn on the heard tilt (`models.heads`; strength 0 until `set_controls(pull=...)`): the levels'
        amplitudes (levels,), the echo's decay, the cap, and each stream's echo (one or (B,)): its last sample
        as heard, e.g. a prime's last de-emphasized sample (0 after silence)."""
        assert self.stepper.head.kind == "softmax", "a heard tilt is for softmax heads"
        assert len(amp) == self.q_levels, f"{len(amp)} amplitudes for {self.q_levels} levels"
        self.heard = heard_on(Heard(amp, decay, cap, echo), self.batch, self.device)
        self.pull = torch.zeros(self.batch, device=self.device)
        self.controls = controls(self.temperature, self.min_p, self.bias, self.pull, self.heard)

    @torch.no_grad()
    def prime(self, levels: np.ndarray | torch.Tensor) -> int:
        """Run levels (T,) or (B, T) through the model; generation continues right after their last sample.

        The front is padded with silence to whole top frames (as if generation had started earlier from
        silence). Returns the number of padding samples. Only valid before the first `generate`.
        """
        assert self.generated == 0 and self.filled == self.read, "prime before generating"
        x = torch.as_tensor(np.asarray(levels), dtype=torch.long)
        with torch_threads(self.threads):
            return self._prime(x)

    def _prime(self, x: torch.Tensor) -> int:
        s = self.stepper
        x = x.expand(self.batch, -1) if x.dim() == 1 else x
        pad = -x.shape[1] % s.hop
        full = torch.full((self.batch, s.context + pad + x.shape[1]), self.silence, dtype=torch.long)
        full[:, s.context + pad:] = x
        if x.shape[1]:
            s.prime(full.to(self.device))
        self.seq[:, :s.context] = full[:, -s.context:].to(self.device)
        return pad

    def _next_noise(self) -> torch.Tensor:
        if self._noise is None or self._noise_pos == self._noise.shape[1]:
            # Noise for the whole span in one transfer: no per-sample host-device traffic.
            self._noise_state = self.noise.state()
            self._noise = self.noise.take(self.span).to(self.device)
            self._noise_pos = 0
        hop = self.stepper.hop
        out = self._noise[:, self._noise_pos:self._noise_pos + hop]
        self._noise_pos += hop
        return out

    @torch.no_grad()
    def generate(self, n: int, logits: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """The next n samples of every stream: (B, n) int64 on the CPU (and the logits used, (B, n, Q)).

        With `logits`, every call since the sampler was made must have asked for them.
        """
        with torch_threads(self._gen_threads):
            return self._generate(n, logits)

    def _generate(self, n: int, logits: bool):
        s = self.stepper
        out = torch.empty((self.batch, n), dtype=torch.long)
        lg_out = None
        if logits:
            lg_out = torch.empty((self.batch, n, s.head.n_params), dtype=s.dtype)
            if self._logits is None:
                self._logits = torch.empty((*self.seq.shape, s.head.n_params), dtype=s.dtype, device=self.device)
        done = 0
        while done < n:
            if self.read == self.filled:
                if self.filled + s.hop > self.seq.shape[1]:
                    self.seq[:, :s.context] = self.seq[:, self.filled - s.context:self.filled].clone()
                    self.filled = self.read = s.context
                lg = None if self._logits is None else self._logits[:, self.filled:self.filled + s.hop]
                s.advance(self.seq, self.filled, self._next_noise(), self.controls, lg)
                self.filled += s.hop
            k = min(n - done, self.filled - self.read)
            out[:, done:done + k] = self.seq[:, self.read:self.read + k].cpu()
            if lg_out is not None:
                lg_out[:, done:done + k] = self._logits[:, self.read:self.read + k].cpu()
            self.read += k
            done += k
        self.generated += n
        return (out, lg_out) if logits else out

    def state_dict(self) -> dict:
        """Everything needed to continue the streams exactly (CPU tensors and ints)."""
        s = self.stepper
        start = min(self.read, self.filled - s.context)
        loaded = self._noise is not None and self._noise_pos < self._noise.shape[1]
        return {
            "stepper": s.state(),
            "tail": self.seq[:, start:self.filled].cpu().clone(),  # history and samples not yet returned
            "pending": self.filled - self.read,
            # The noise stream where the span in use was drawn, and how far into the span we are.
            "noise": self._noise_state if loaded else self.noise.state(),
            "noise_pos": self._noise_pos if loaded else -1,
            "noise_device": self.noise.device.type,
            "temperature": self.temperature.cpu().clone(),
            "min_p": self.min_p.cpu().clone(),
            "bias": self.bias.cpu().clone(),
            **({} if self.heard is None else {"pull": self.pull.cpu().clone(), "heard": {
                "amp": self.heard.amp.cpu().clone(), "decay": self.heard.decay, "cap": self.heard.cap,
                "echo": self.heard.echo.cpu().clone()}}),
            "generated": self.generated,
        }

    def load_state_dict(self, state: dict) -> None:
        if state.get("noise_device", "cpu") != self.noise.device.type:
            raise ValueError(f"the state's noise was drawn on {state['noise_device']}, this sampler draws it on "
                             f"{self.noise.device.type}")
        self.stepper.load_state(state["stepper"])
        tail = state["tail"].to(self.device)
        self.seq[:, :tail.shape[1]] = tail
        self.filled = tail.shape[1]
        self.read = self.filled - state["pending"]
        self.temperature = state["temperature"].to(self.device)
        self.min_p = state.get("min_p", torch.zeros_like(state["temperature"])).to(self.device)
        self.bias = state.get("bias", torch.zeros((self.batch, 0))).to(self.device)
        self.heard = self.pull = None
        if "heard" in state:
            h = state["heard"]
            self.heard = heard_on(Heard(h["amp"], h["decay"], h["cap"], h["echo"]), self.batch, self.device)
            self.pull = state["pull"].to(self.device)
        self.controls = controls(self.temperature, self.min_p, self.bias, self.pull, self.heard)
        self.generated = state["generated"]
        self.noise.load_state(state["noise"])
        self._noise = None
        if state["noise_pos"] >= 0:
            self._next_noise()
            self._noise_pos = state["noise_pos"]


@torch.no_grad()
def generate(model: torch.nn.Module, n_samples: int, batch: int = 1, temperature: float | torch.Tensor = 1.0,
             seed: int = 0, **kwargs) -> torch.Tensor:
    """Generate (B, n_samples) levels from silence: the same samples as `reference.generate`, much faster."""
    return Sampler(model, batch, temperature, seed, **kwargs).generate(n_samples)
