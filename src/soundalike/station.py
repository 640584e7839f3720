"""One endless stream of music from a checkpoint, kept alive: what `soundalike radio` broadcasts.

The stream is the render's sampler (`sampling.Sampler`, batch 1) called block by block, decoded to audio as
render decodes it (`emphasis.decode`). A model left at one temperature for hours drifts into a drone, a
loop, silence or noise; the station's keep-alive (`KeepAlive`) is two things:

- The temperature is a slow random walk inside a range (`--temperature LO:HI`): a Gaussian step every block,
  reflected at the ends, of a size that spreads the walk over the whole range in about `drift_s` seconds
  (default 5 minutes). It changes the texture slowly, never at a jump.
- A watchdog: every `check_s` (20 s) of audio the last `window_s` (60 s) are judged by `soundalike stats`
  (stats.clip_stats). When the verdict is `stuck`, `silent` or `noise`, the model starts again from a few
  seconds of a random chunk of the training data (`--data`, default the checkpoint's own dataset), with a
  new seed, and the new stream is crossfaded over the old one (equal power, `fade_s`, 1 s). Without the
  data, it starts again from silence. The next judgement waits for a whole window of the new stream.
  Dead air does not wait for the window: `dead_air_s` (5 s) of audio that never reaches SILENCE_DB (-60 dBFS,
  stats' silence) restarts the stream at once. (An hour of the Wesnoth model: a model that falls silent does
  so within a second, and the window alone left up to 80 s of dead air on air; docs/MEASUREMENTS.md.)

With `hold_level` (`radio --hold-level`) every stream is held at that RMS level as render holds its tracks
(`loudness.LevelHold`; a restarted stream gets a hold of its own that starts from the old one's tilt, the one
that held this model at the level, and reads its own level from the start, not the dead air it replaces).

Stream k (k = 0 at the start, +1 at each restart) draws with seed `seed + k`, so a station is reproducible
from its seed and the data.
"""

from __future__ import annotations

import math
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import checkpoint as ckpt_io
from . import loudness
from .audio import read_audio
from .emphasis import DeemphasisState, decode, encode, last_output
from .errors import UserError
from .stats import SILENCE_DB, clip_stats, dataset_chunks, dataset_gain

BAD = ("stuck", "silent", "noise")  # verdicts that restart the stream


@dataclass(frozen=True)
class KeepAlive:
    """The keep-alive's settings; `enabled=False` is a plain render at temperature `low`."""

    low: float
    high: float
    enabled: bool = True
    drift_s: float = 300.0
    window_s: float = 60.0
    check_s: float = 20.0
    fade_s: float = 1.0
    prime_s: float = 2.0
    dead_air_s: float = 5.0


class Station:
    """Blocks of audio from a checkpoint, without end: `next_block()` -> (n,) float32 at `rate`."""

    def __init__(self, ckpt: str | Path, keep_alive: KeepAlive, seed: int = 0, min_p: float | None = None,
                 data: str | Path | None = None, block_seconds: float = 0.5, threads: int = 0,
                 weights: str = "full", device: torch.device | str = "cpu", level: float | None = None,
                 hold_level: float | str | None = None):
        loaded = ckpt_io.load_checkpoint(ckpt)
        self.checkpoint = str(ckpt)
        self.quantizer, self.rate = ckpt_io.quantizer_of(loaded), int(loaded["sample_rate"])
        self.device = torch.device(device)
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True  # as render: logits differ in the last bits only
        self.model = ckpt_io.build_model(loaded).to(self.device)
        # dBFS asked of a model with a level input (default: its data's level; None without one), as render
        self.model, self.level = loudness.ask(self.model, level, ckpt)
        self.hold_level = loudness.hold_target(hold_level, loaded, self.model, ckpt)  # dBFS held; None: no hold
        self.family, self.model_kwargs = loaded["family"], dict(loaded["model_kwargs"])
        self.step = loaded.get("step")
        self.keep, self.seed = keep_alive, seed
        self.min_p = ckpt_io.default_min_p(loaded) if min_p is None else min_p  # None: the model's own, as render
        self.threads, self.weights = threads, weights
        self.block = max(1, round(block_seconds * self.rate))
        self.rng = np.random.default_rng(seed)
        self.temperature = (keep_alive.low + keep_alive.high) / 2 if keep_alive.enabled else keep_alive.low
        self.chunks, self.gain, self.data = self._data(data if data is not None else _config_data(loaded))
        self.stream = 0
        self.generated = 0  # samples returned
        self.gen_seconds = 0.0  # wall time spent generating
        self.events: deque[dict] = deque(maxlen=50)
        self.verdicts: dict[str, int] = {}
        self.history: deque[np.ndarray] = deque()  # the last window_s of audio, for the watchdog
        self.history_frames = 0
        self.since_restart = 0  # samples of the current stream
        self.since_check = 0
        self.quiet_run = 0  # samples since the stream last reached SILENCE_DB
        self.dead_air_restarts = 0
        self._restart: tuple | None = None  # (sampler, de-emphasis state, hold) of the stream that fades in next
        self.sampler, self.deemphasis, self.hold = self._new_stream(prime=False)

    # --- where a restart comes from ---------------------------------------------------------------------

    def _data(self, data: str | Path | None) -> tuple[list[Path], float, str | None]:
        if data is None or not Path(data).is_dir():
            return [], 1.0, None
        chunks = dataset_chunks(data, "train")
        if not chunks:
            raise UserError(f"--data {data}: no chunk files of the train split")
        return chunks, dataset_gain(data), str(data)

    def _prime_levels(self) -> tuple[np.ndarray, str]:
        """prime_s of a random training chunk at the level the model learnt, as levels."""
        path = self.chunks[self.rng.integers(len(self.chunks))]
        audio, _ = read_audio(path, self.rate)
        n = min(len(audio), round(self.keep.prime_s * self.rate))
        start = int(self.rng.integers(0, len(audio) - n + 1))
        audio = np.clip(audio[start:start + n] * self.gain, -1.0, 1.0)
        return encode(audio, self.quantizer), path.name

    def _new_stream(self, prime: bool) -> tuple:
        from .sampling import Sampler

        sampler = Sampler(self.model, 1, self.temperature, self.seed + self.stream, threads=self.threads,
                          weights=self.weights, min_p=self.min_p, device=self.device,
                          device_noise=self.device.type == "cuda")
        state: DeemphasisState | None = None
        if prime and self.chunks:
            levels, name = self._prime_levels()
            sampler.prime(levels)
            _, state = decode(levels[None], self.quantizer, None)  # de-emphasis continues from the prime
            self._event(f"restarted from {self.keep.prime_s:g} s of {name}, seed {self.seed + self.stream}")
        elif prime:
            self._event(f"restarted from silence, seed {self.seed + self.stream}")
        hold = loudness.make_hold(self.hold_level, 1, self.rate, self.quantizer)
        if hold is not None:
            if prime:  # a restart goes on from the tilt that holds this model at the level,
                hold.take_tilt(self.hold)  # but reads its own level (not the dead air it replaces)
            hold.start(sampler, last_output(state, self.quantizer.pre_emphasis, 1))
        return sampler, state, hold

    def _event(self, what: str) -> None:
        self.events.append({"at_s": round(self.generated / self.rate, 1), "what": what})

    # --- the stream -------------------------------------------------------------------------------------

    @property
    def realtime_factor(self) -> float:
        """Seconds of audio generated per second of generating, so far."""
        return self.generated / self.rate / self.gen_seconds if self.gen_seconds else math.nan

    def _levels(self, sampler, state, hold, n: int) -> tuple[np.ndarray, DeemphasisState | None]:
        def to_audio(levels: np.ndarray) -> np.ndarray:  # (1, k)
            nonlocal state
            audio, state = decode(levels, self.quantizer, state)
            return audio

        audio = loudness.generate(sampler, hold, n, to_audio)
        return audio[0], state

    def next_block(self) -> np.ndarray:
        """The next block of audio (block samples; with a restart's crossfade in it)."""
        started = time.perf_counter()
        if self._restart is not None:
            audio = self._crossfade()
        else:
            audio, self.deemphasis = self._levels(self.sampler, self.deemphasis, self.hold, self.block)
        self.generated += len(audio)
        if self.keep.enabled:
            self._walk(len(audio))
            self._watch(audio)
        self.gen_seconds += time.perf_counter() - started
        return audio

    def _crossfade(self) -> np.ndarray:
        """The old stream fades out while the new one, restarted, fades in (equal power)."""
        new, new_state, new_hold = self._restart
        self._restart = None
        fade = min(self.block, max(1, round(self.keep.fade_s * self.rate)))
        old, _ = self._levels(self.sampler, self.deemphasis, self.hold, fade)
        audio, new_state = self._levels(new, new_state, new_hold, self.block)
        x = np.linspace(0.0, math.pi / 2, fade, dtype=np.float32)
        audio[:fade] = old[:fade] * np.cos(x) + audio[:fade] * np.sin(x)
        self.sampler, self.deemphasis, self.hold = new, new_state, new_hold
        return np.clip(audio, -1.0, 1.0)

    def _walk(self, n: int) -> None:
        """The temperature's random walk, reflected into [low, high]."""
        lo, hi = self.keep.low, self.keep.high
        if hi <= lo:
            return
        t = self.temperature + (hi - lo) * math.sqrt(n / self.rate / self.keep.drift_s) * self.rng.standard_normal()
        span = 2 * (hi - lo)
        t = (t - lo) % span
        self.temperature = lo + (span - t if t > hi - lo else t)
        self.sampler.set_controls(temperature=self.temperature)

    def _watch(self, audio: np.ndarray) -> None:
        """Judge the last window every check_s, and restart the stream on a bad verdict or on dead air."""
        window = round(self.keep.window_s * self.rate)
        self.history.append(audio)
        self.history_frames += len(audio)
        while self.history_frames - len(self.history[0]) >= window:
            self.history_frames -= len(self.history.popleft())
        self.since_restart += len(audio)
        self.since_check += len(audio)
        loud = np.flatnonzero(np.abs(audio) >= 10.0 ** (SILENCE_DB / 20.0))
        self.quiet_run = self.quiet_run + len(audio) if len(loud) == 0 else len(audio) - 1 - int(loud[-1])
        if self.quiet_run >= self.keep.dead_air_s * self.rate:
            self.dead_air_restarts += 1
            return self._restart_stream(f"{self.quiet_run / self.rate:.1f} s of dead air (below {SILENCE_DB:g} dBFS)")
        if self.since_restart < window or self.since_check < self.keep.check_s * self.rate:
            return
        self.since_check = 0
        s = clip_stats(np.concatenate(self.history)[-window:], self.rate)
        self.verdicts[s["verdict"]] = self.verdicts.get(s["verdict"], 0) + 1
        if s["verdict"] in BAD:
            self._restart_stream(f"the last {self.keep.window_s:g} s: {s['verdict']} ({s['why']})")

    def _restart_stream(self, why: str) -> None:
        """Start stream k + 1 from the data; it fades in over the next block."""
        self._event(why)
        self.stream += 1
        self._restart = self._new_stream(prime=True)
        self.since_restart = self.since_check = self.quiet_run = 0

    def describe(self) -> dict:
        """What is playing, for the page and /status."""
        return {"checkpoint": self.checkpoint, "family": self.family, "step": self.step, "sample_rate": self.rate,
                "seed": self.seed, "stream": self.stream, "temperature": round(self.temperature, 4),
                "min_p": self.min_p, "level": self.level, "hold_level": self.hold_level,
                "keep_alive": {"enabled": self.keep.enabled, "temperature_range": [self.keep.low, self.keep.high],
                               "restart_from": self.data, "verdicts": self.verdicts,
                               "dead_air_restarts": self.dead_air_restarts,
                               "events": list(self.events)[-10:]}}


def _config_data(ckpt: dict) -> str | None:
    """The dataset the checkpoint was trained on, as its config names it."""
    config = ckpt.get("config")
    data = config.get("data") if isinstance(config, dict) else None
    path = data.get("path") if isinstance(data, dict) else None
    return path if isinstance(path, str) else None


def offline(station: Station, seconds: float, out: Path, part_seconds: float = 60.0) -> dict:
    """Generate `seconds` as fast as the machine allows into FLAC parts of `part_seconds` in `out`; Ctrl-C or
    SIGTERM stops early with the parts so far whole. Returns what happened, every keep-alive event included."""
    from .archive import Archive, numbered

    archive = Archive(out, station.rate, part_seconds, name=numbered)
    target, trace, started = round(seconds * station.rate), [], time.perf_counter()
    station.events = deque()  # all of them, for the report
    interrupted = False
    try:
        with torch.inference_mode():
            while station.generated < target:
                before, seen = station.generated, len(station.events)
                archive.write(station.next_block()[:target - before])
                trace.append(round(station.temperature, 4))
                for e in list(station.events)[seen:]:
                    print(f"{e['at_s']:.0f} s: {e['what']}", file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        archive.close()
    written = min(station.generated, target)
    return {"seconds": written / station.rate, "interrupted": interrupted,
            "wall_s": round(time.perf_counter() - started, 1), "realtime_factor": round(station.realtime_factor, 2),
            "restarts": station.stream, "events": list(station.events), "temperature_per_block": trace,
            **station.describe()}
