"""The bundled demo corpus: a deterministic synthetic "artist", so a new user can run everything without music.

One style throughout (A natural minor / pentatonic, 90-110 BPM, one chord per bar): a Karplus-Strong plucked
melody, an FM electric-piano comping the chords, a plucky additive bass, a small drum kit (sine-sweep kick,
noise+tone snare, short hats), a short noise-impulse room reverb and mild panning. The instruments are the
same in every track; the seed varies the composition (tempo, progression, patterns, melody).
Tracks are 44.1 kHz stereo 16-bit FLAC, every fourth one WAV, so slicing exercises decoding, resampling
and downmixing. A marker file written last lets a second run skip the work.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import math
import re
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf

from .atomic import atomic_path, write_json
from .errors import UserError

SAMPLE_RATE = 44100
# Bump whenever the rendered audio changes, so an existing corpus folder is rebuilt instead of reused.
GENERATOR_VERSION = 1
MARKER = ".demo-corpus.json"  # hidden: it is not a recording, so the slicer should not list it

TAIL_SECONDS = 2.0  # after the last bar, for the final chord and the reverb to ring out
SLOTS = 16  # sixteenth notes per 4/4 bar

# --- the "artist": key, harmony and instruments are fixed; only the composition depends on the seed ---

TONIC = 57  # A3 (MIDI)
PENTATONIC = (0, 3, 5, 7, 10)  # A C D E G: fits every chord below, so the melody never clashes
CHORDS = {  # roman numeral -> (root semitones above A, third, name)
    "i": (0, 3, "Am"), "III": (3, 4, "C"), "iv": (5, 3, "Dm"), "v": (7, 3, "Em"),
    "VI": (8, 4, "F"), "VII": (10, 4, "G"),
}
PROGRESSIONS = (("i", "VI", "III", "VII"), ("i", "iv", "VII", "III"), ("i", "VII", "VI", "VII"),
                ("i", "VI", "iv", "v"))
# Melody range A3..A5 on the pentatonic scale; index steps in this list are scale steps.
MELODY_NOTES = tuple(m for m in range(TONIC, TONIC + 25) if (m - TONIC) % 12 in PENTATONIC)

# Per-bar patterns in sixteenth-note slots.
BASS_PATTERNS = (  # (slot, length, semitones above the chord root)
    ((0, 6, 0), (6, 2, 0), (8, 6, 0), (14, 2, 7)),
    ((0, 8, 0), (8, 8, 0)),
    ((0, 3, 0), (3, 3, 0), (6, 2, 12), (8, 4, 0), (12, 4, 7)),
    ((0, 6, 0), (6, 6, 7), (12, 4, 12)),
)
KEYS_PATTERNS = (((0, 16),), ((0, 6), (6, 10)), ((4, 3), (12, 3)), ((0, 3), (6, 3), (10, 6)))
KICK_PATTERNS = ((0, 8), (0, 6, 8), (0, 7, 10), (0, 8, 11))
SNARE_SLOTS = (4, 12)
FILL_SLOTS = (12, 13, 14, 15)

# Mix: melody and bass dominate; the noisy parts stay quiet so the audio is predictable sample by sample.
LEVEL = {"melody": 0.5, "keys": 0.09, "bass": 0.4, "kick": 0.45, "snare": 0.25, "hat": 0.06}
PAN = {"melody": 0.25, "keys": -0.3, "bass": 0.0, "kick": 0.0, "snare": -0.08, "hat": 0.35}
REVERB_SEND = {"melody": 1.0, "keys": 1.0, "bass": 0.05, "kick": 0.0, "snare": 0.5, "hat": 0.3}
REVERB_WET = 0.22
REVERB_T60 = 0.45
TARGET_RMS_DB = -15.0
PEAK_CEILING_DB = -1.0


def _midi_hz(m: float) -> float:
    return 440.0 * 2.0 ** ((m - 69) / 12)


def _instrument_rng(*key: int) -> np.random.Generator:
    # Instrument noise is seeded by the instrument alone, never by the corpus seed: the same "artist" always.
    return np.random.default_rng([7919, *key])


def _band(x: np.ndarray, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """Zero-phase band-limit of `x` (last axis) with 4th-order Butterworth magnitude slopes."""
    f = np.fft.rfftfreq(x.shape[-1], 1 / SAMPLE_RATE)
    h = np.ones_like(f)
    if lo:
        h /= np.sqrt(1 + (lo / np.maximum(f, 1e-3)) ** 8)
    if hi:
        h /= np.sqrt(1 + (f / hi) ** 8)
    return np.fft.irfft(np.fft.rfft(x, axis=-1) * h, x.shape[-1], axis=-1)


@functools.cache
def _pluck(midi: int, variant: int, seconds: float = 3.0) -> np.ndarray:
    """One Karplus-Strong plucked-string note (cached: a melody reuses a handful of pitches)."""
    d = SAMPLE_RATE / _midi_hz(midi)  # loop delay in samples
    # Loop filter taps at lags N, N+1, N+2 weighted ((1-w)/2, 1/2, w/2): a gentle lowpass whose delay
    # N + 0.5 + w tunes the string exactly, without an allpass.
    n_lag = int(d - 0.5)
    w = d - 0.5 - n_lag
    h0, h1, h2 = (1 - w) / 2, 0.5, w / 2
    t60 = 4.0  # the loop filter already damps high notes and upper partials faster
    g = 10 ** (-3 * d / (t60 * SAMPLE_RATE))
    # The string starts as a triangle, pulled at a point ~1/5 along (the variant moves it a little), with a
    # touch of pick noise. Classic noise-burst KS would be hiss-like, hard to predict sample by sample.
    x = np.arange(n_lag + 2) / (n_lag + 2)
    at = (0.18, 0.22, 0.27)[variant]
    exc = np.where(x < at, x / at, (1 - x) / (1 - at))
    exc += 0.04 * _instrument_rng(1, midi, variant).standard_normal(len(x))
    for _ in range(4):  # a soft fingertip rather than a sharp pick
        exc = 0.5 * (exc + np.roll(exc, 1))
    exc -= exc.mean()
    exc /= np.abs(exc).max()
    n = int(seconds * SAMPLE_RATE)
    y = np.zeros(n + n_lag + 2)
    y[: n_lag + 2] = exc
    # Vectorized one period at a time: every sample of a block only reads samples at least N back.
    i = n_lag + 2
    while i < len(y):
        m = min(n_lag, len(y) - i)
        a = i - n_lag
        y[i : i + m] = g * (h0 * y[a : a + m] + h1 * y[a - 1 : a - 1 + m] + h2 * y[a - 2 : a - 2 + m])
        i += m
    return y[:n]


def _env(n: int, attack: float, release_at: int, release: float) -> np.ndarray:
    """Linear attack, then 1, then from sample `release_at` an exponential fall of ~43 dB per `release` s."""
    t = np.arange(n)
    e = np.minimum(1.0, t / max(1.0, attack * SAMPLE_RATE))
    tail = t >= release_at
    e[tail] *= np.exp(-(t[tail] - release_at) / (release * SAMPLE_RATE / 5))
    return e


def _melody_note(midi: int, variant: int, samples: int) -> np.ndarray:
    y = _pluck(midi, variant)
    release = int(0.08 * SAMPLE_RATE)
    samples = min(samples, len(y) - release)  # a note longer than the cached string is released, not cut
    return y[: samples + release] * _env(samples + release, 0.0, samples, 0.08)


@functools.lru_cache(maxsize=256)  # a track repeats a few dozen (pitch, length) pairs
def _bass_note(midi: int, samples: int) -> np.ndarray:
    # Additive, with upper partials dying faster: the "pluck then round tone" of a finger bass.
    release = 0.04
    n = samples + int(release * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    f = _midi_hz(midi)
    y = np.zeros(n)
    for k in range(1, 7):
        y += np.sin(2 * np.pi * k * f * t) * np.exp(-t * (1.0 + 3.0 * k)) / k**1.5
    return y * np.exp(-t * 0.8) * _env(n, 0.004, samples, release)


@functools.lru_cache(maxsize=256)
def _keys_note(midi: int, samples: int) -> np.ndarray:
    # 1:1 FM with a decaying index: a soft electric piano, bright at the attack, nearly sine as it rings.
    release = 0.15
    n = samples + int(release * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    f = _midi_hz(midi)
    index = 1.6 * np.exp(-t / 0.25) + 0.25
    y = np.sin(2 * np.pi * f * t + index * np.sin(2 * np.pi * f * t))
    return y * np.exp(-t / 1.4) * _env(n, 0.003, samples, release)


@functools.cache
def _drum(kind: str) -> np.ndarray:
    """One drum-machine sample, the same in every track."""
    rng = _instrument_rng(2, ("kick", "snare", "hat").index(kind))
    if kind == "kick":
        t = np.arange(int(0.45 * SAMPLE_RATE)) / SAMPLE_RATE
        freq = 48 + 80 * np.exp(-t / 0.035)  # the pitch sweep is the "thump"
        body = np.sin(2 * np.pi * np.cumsum(freq) / SAMPLE_RATE) * np.exp(-t / 0.16)
        click = _band(rng.standard_normal(len(t)), 1000, 4000) * np.exp(-t / 0.003) * 0.3
        y = body + click
    elif kind == "snare":
        t = np.arange(int(0.3 * SAMPLE_RATE)) / SAMPLE_RATE
        tone = (np.sin(2 * np.pi * 185 * t) + 0.5 * np.sin(2 * np.pi * 330 * t)) * np.exp(-t / 0.06)
        # A short, band-limited rattle: enough to read as a snare, little unpredictable hiss.
        noise = _band(rng.standard_normal(len(t)), 1200, 4000) * np.exp(-t / 0.06)
        y = 0.8 * tone + 0.6 * noise / np.abs(noise).max()
    else:
        t = np.arange(int(0.12 * SAMPLE_RATE)) / SAMPLE_RATE
        y = _band(rng.standard_normal(len(t)), 7000, 12000) * np.exp(-t / 0.02)
    y = y * _env(len(y), 0.0005, len(y), 1.0)
    return y / np.abs(y).max()


@functools.cache
def _room_ir() -> np.ndarray:
    """(2, n) stereo impulse response: exponentially decaying, darkened noise, decorrelated left/right."""
    n = int(REVERB_T60 * 1.2 * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    noise = _band(_instrument_rng(3).standard_normal((2, n)), 150, 3500)
    ir = noise * np.exp(-t * 6.91 / REVERB_T60)
    ir[:, : int(0.012 * SAMPLE_RATE)] = 0  # pre-delay: the room answers after the direct sound
    return ir / np.sqrt((ir**2).sum(axis=1, keepdims=True))


def _convolve(x: np.ndarray, ir: np.ndarray) -> np.ndarray:
    """Overlap-add FFT convolution of each channel of x (C, L) with ir (C, M); returns (C, L)."""
    block = 1 << 15
    c, n = x.shape
    assert ir.shape[1] <= block, "the room impulse must fit one overlap-add block"
    nb = -(-n // block)
    xb = np.zeros((c, nb * block))
    xb[:, :n] = x
    spec = np.fft.rfft(xb.reshape(c, nb, block), 2 * block, axis=-1)
    yb = np.fft.irfft(spec * np.fft.rfft(ir, 2 * block, axis=-1)[:, None, :], 2 * block, axis=-1)
    y = np.zeros((c, (nb + 1) * block))
    y[:, : nb * block] += yb[..., :block].reshape(c, -1)
    y[:, block:] += yb[..., block:].reshape(c, -1)
    return y[:, :n]


class _Bus:
    """A mono accumulation buffer for one instrument; panned and sent to the room at mixdown."""

    def __init__(self, n: int) -> None:
        self.y = np.zeros(n)

    def add(self, start: int, sig: np.ndarray, gain: float = 1.0) -> None:
        end = min(len(self.y), start + len(sig))
        if end > start:
            self.y[start:end] += gain * sig[: end - start]


def _form(n_bars: int) -> list[str]:
    """Section label of every bar: an intro, alternating A/B sections of 8 bars, and one closing bar."""
    if n_bars < 12:
        return ["A"] * (n_bars - 1) + ["end"]
    labels = ["intro"] * 4
    k = 0
    while len(labels) < n_bars - 1:
        labels += ["AB"[k % 2]] * 8
        k += 1
    return labels[: n_bars - 1] + ["end"]


def _chord_tones(numeral: str) -> tuple[int, ...]:
    root, third, _ = CHORDS[numeral]
    return tuple((root + i) % 12 for i in (0, third, 7))


def _phrase(
    rng: np.random.Generator, progression: tuple[str, ...], centre: int, density: float
) -> list[tuple[int, int, int, float]]:
    """A 4-bar melody: a 2-bar motif, then its first bar again with a new answer; (slot, length, midi, vel)."""

    def bar(first: int, start_idx: int, breathe: bool) -> tuple[list[int], list[int]]:
        onsets = []
        for s in range(SLOTS):
            p = 0.8 if s % 4 == 0 else 0.4 if s % 2 == 0 else 0.06
            if s == 0 or (rng.random() < p * density and not (breathe and s >= 12)):
                onsets.append(first + s)
        idx, idxs = start_idx, []
        for _ in onsets:
            idx = int(np.clip(idx + rng.choice([-2, -1, -1, 0, 1, 1, 2]), 0, len(MELODY_NOTES) - 1))
            idxs.append(idx)
        return onsets, idxs

    on0, ix0 = bar(0, centre, False)
    on1, ix1 = bar(16, ix0[-1], True)
    on3, ix3 = bar(48, ix0[-1], True)
    onsets = on0 + on1 + [s + 32 for s in on0] + on3
    idxs = ix0 + ix1 + ix0 + ix3
    notes = []
    for k, (s, idx) in enumerate(zip(onsets, idxs)):
        nxt = onsets[k + 1] if k + 1 < len(onsets) else 64
        length = min(nxt - s, 8)
        midi = MELODY_NOTES[idx]
        if s % 8 == 0:  # strong beats land on a chord tone, so the melody follows the harmony
            tones = _chord_tones(progression[s // SLOTS])
            midi = min((m for m in MELODY_NOTES if (m - TONIC) % 12 in tones), key=lambda m: abs(m - midi))
        vel = (1.0 if s % 4 == 0 else 0.8) * rng.uniform(0.85, 1.0)
        notes.append((s, length, midi, vel))
    return notes


def _voicing(numeral: str) -> list[int]:
    # Close voicing within G3..F#4: chords change with small steps, like a keyboard player's left hand.
    return sorted(55 + (TONIC + t - 55) % 12 for t in _chord_tones(numeral))


def render_track(seed: int, index: int, seconds: float) -> tuple[np.ndarray, dict]:
    """Render track `index` of the corpus with `seed`, about `seconds` long: (float32 (n, 2), info dict)."""
    stems, info = _arrange(seed, index, seconds)
    mix = _mix(stems)
    mix *= 10 ** (TARGET_RMS_DB / 20) / np.sqrt(np.mean(mix**2))
    return _limit(mix, 10 ** (PEAK_CEILING_DB / 20)).T.astype(np.float32), info


def _limit(mix: np.ndarray, ceiling: float) -> np.ndarray:
    """Look-ahead peak limiter: a smooth gain that keeps every sample of mix (2, n) within +-ceiling."""
    # Plucks and kicks put the peaks ~16 dB over the RMS; shaving a few dB off them gives a sensible loudness.
    block = 512
    n = mix.shape[1]
    nb = -(-n // block)
    peak = np.zeros(nb * block)
    peak[:n] = np.abs(mix).max(axis=0)
    need = np.minimum(1.0, ceiling / np.maximum(peak.reshape(nb, block).max(axis=1), 1e-12))
    # Each block's gain also honours its neighbours', so linear interpolation between block centres never
    # exceeds what any sample needs, and the gain starts falling a block before a peak.
    g = np.minimum(need, np.minimum(np.r_[need[1:], 1.0], np.r_[1.0, need[:-1]]))
    return mix * np.interp(np.arange(n), (np.arange(nb) + 0.5) * block, g)


def _mix(stems: dict[str, np.ndarray]) -> np.ndarray:
    """Pan, level and reverberate the mono stems into a (2, n) mix."""
    n = len(next(iter(stems.values())))
    dry = np.zeros((2, n))
    send = np.zeros((2, n))
    for name, y in stems.items():
        theta = (PAN[name] + 1) * np.pi / 4  # equal-power pan
        for c, pan_gain in enumerate((np.cos(theta), np.sin(theta))):
            dry[c] += (LEVEL[name] * pan_gain) * y
            send[c] += (LEVEL[name] * pan_gain * REVERB_SEND[name]) * y
    return dry + REVERB_WET * _convolve(send, _room_ir())


def _arrange(seed: int, index: int, seconds: float) -> tuple[dict[str, np.ndarray], dict]:
    """Compose and play track `index`: one unmixed mono stem per instrument, and the track's info."""
    rng = np.random.default_rng([seed, index])
    bpm = int(rng.integers(90, 111))
    prog = PROGRESSIONS[int(rng.integers(len(PROGRESSIONS)))]
    bass_pat = BASS_PATTERNS[int(rng.integers(len(BASS_PATTERNS)))]
    keys_pat = KEYS_PATTERNS[int(rng.integers(len(KEYS_PATTERNS)))]
    kick_pat = KICK_PATTERNS[int(rng.integers(len(KICK_PATTERNS)))]
    sixteenth_hats = bool(rng.random() < 0.5)
    phrases = {"A": _phrase(rng, prog, 4, 0.8), "B": _phrase(rng, prog, 6, 1.0)}

    slot_s = 60.0 / bpm / 4
    bar_s = SLOTS * slot_s
    n_bars = max(2, math.ceil((seconds - TAIL_SECONDS) / bar_s))
    form = _form(n_bars)
    n = round((n_bars * bar_s + TAIL_SECONDS) * SAMPLE_RATE)
    buses = {name: _Bus(n) for name in LEVEL}

    def at(bar: int, slot: float) -> int:
        return round((bar * SLOTS + slot) * slot_s * SAMPLE_RATE)

    def dur(slots: float) -> int:
        return round(slots * slot_s * SAMPLE_RATE)

    for b, section in enumerate(form):
        pos = (b - _start(form, b)) % 4  # bar within the 4-bar progression
        numeral = "i" if section == "end" else prog[pos]
        root = 33 + CHORDS[numeral][0]  # A1..G2
        last_of_section = b + 1 < len(form) and form[b + 1] != section
        if section == "end":
            ring = n - at(b, 0) - round(0.15 * SAMPLE_RATE)  # the last chord rings to the end of the file
            for m in _voicing(numeral):
                buses["keys"].add(at(b, 0), _keys_note(m, ring), 0.9)
            buses["bass"].add(at(b, 0), _bass_note(root, ring))
            buses["melody"].add(at(b, 0), _melody_note(69, 0, ring))
            buses["kick"].add(at(b, 0), _drum("kick"))
            continue
        for s, length in KEYS_PATTERNS[0] if section == "intro" else keys_pat:
            for m in _voicing(numeral):
                buses["keys"].add(at(b, s), _keys_note(m, dur(length)), rng.uniform(0.8, 1.0))
        for s, length, interval in ((0, 16, 0),) if section == "intro" else bass_pat:
            buses["bass"].add(at(b, s), _bass_note(root + interval, dur(length)), rng.uniform(0.85, 1.0))
        hat_step = 1 if sixteenth_hats and section == "B" else 2
        for s in range(0, SLOTS, hat_step):
            accent = 1.0 if s % 4 == 2 else 0.7 if s % 2 == 0 else 0.45
            buses["hat"].add(at(b, s), _drum("hat"), accent * rng.uniform(0.8, 1.0))
        if section == "intro":
            continue
        for s in kick_pat:
            buses["kick"].add(at(b, s), _drum("kick"), 1.0 if s == 0 else 0.8)
        for s in FILL_SLOTS if last_of_section else SNARE_SLOTS:
            buses["snare"].add(at(b, s), _drum("snare"), (0.6 + 0.1 * (s - 12) if s > 12 else 1.0))
        for s, length, midi, vel in phrases[section]:
            if s // SLOTS == pos:
                note = _melody_note(midi, int(rng.integers(3)), dur(length))
                buses["melody"].add(at(b, s % SLOTS), note, vel)

    info = {"seconds": round(n / SAMPLE_RATE, 3), "bpm": bpm,
            "progression": "-".join(CHORDS[c][2] for c in prog), "bars": n_bars}
    return {name: bus.y for name, bus in buses.items()}, info


def _start(form: list[str], b: int) -> int:
    """First bar of the section that bar `b` belongs to."""
    while b > 0 and form[b - 1] == form[b]:
        b -= 1
    return b


def plan(minutes: float, seed: int, track_seconds: float = 75.0) -> list[float]:
    """Target length in seconds of every track: about `track_seconds` each, `minutes` in all."""
    total = minutes * 60.0
    count = max(1, round(total / track_seconds))
    weights = np.random.default_rng([seed, 1_000_003]).uniform(0.85, 1.15, count)
    return list(total * weights / weights.sum())


def _track_name(index: int) -> str:
    # A few WAVs among the FLACs, so the slicer sees both containers.
    return f"track-{index + 1:02d}.{'wav' if index % 4 == 1 else 'flac'}"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _existing(out: Path, params: dict) -> dict | None:
    """The marker of a complete corpus with exactly these params in `out`, else None."""
    try:
        marker = json.loads((out / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(marker, dict) or marker.get("params") != params or marker.get("complete") is False:
        return None
    try:
        complete = all((out / t["file"]).is_file() and (out / t["file"]).stat().st_size == t["size"]
                       for t in marker["tracks"])
    except (KeyError, TypeError):  # a marker edited by hand: rebuild
        return None
    return marker if complete else None


def _entries(tracks) -> list[dict]:
    """The track entries of a marker that name this tool's own files (track-NN.wav/flac in the folder)."""
    ok = re.compile(r"track-\d{2,}\.(?:wav|flac)")
    return [{"file": t["file"]} for t in tracks if isinstance(t, dict) and ok.fullmatch(str(t.get("file", "")))]


def make_corpus(out_dir: str | Path, minutes: float = 12.0, seed: int = 0, track_seconds: float = 75.0,
                force: bool = False, log: Callable[[str], None] = print) -> list[Path]:
    """Write the demo corpus (44.1 kHz stereo tracks + marker) to `out_dir`; return the track paths."""
    if not 0 < minutes < math.inf:
        raise UserError(f"demo-corpus: --minutes must be a positive number, got {minutes}")
    if not track_seconds >= 4:
        raise UserError(f"demo-corpus: tracks must be at least 4 s long, got {track_seconds}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"demo-corpus: {out} exists and is not a folder")
    params = {"generator_version": GENERATOR_VERSION, "minutes": float(minutes), "seed": int(seed),
              "track_seconds": float(track_seconds), "sample_rate": SAMPLE_RATE}
    marker = None if force else _existing(out, params)
    if marker is not None:
        log(f"demo corpus already in {out} ({len(marker['tracks'])} tracks, {marker['minutes']:.1f} min, "
            f"seed {seed}); --force rebuilds it")
        return [out / t["file"] for t in marker["tracks"]]

    try:
        old = json.loads((out / MARKER).read_text(encoding="utf-8")).get("tracks", [])
    except (OSError, ValueError, AttributeError):
        old = []
        if out.is_dir() and any(out.iterdir()):
            raise UserError(f"demo-corpus: {out} is not empty and holds no demo corpus ({MARKER}); choose a new "
                            "or empty folder (nothing in it was changed)")
    lengths = plan(minutes, seed, track_seconds)
    # Until this run ends the marker says "incomplete" and lists every file it may write, so the folder never
    # looks complete if the run is killed half way, and the next run knows which files are its own.
    names = [{"file": _track_name(i)} for i in range(len(lengths))]
    write_json(out / MARKER, {"params": params, "complete": False, "tracks": _entries(old) + names})
    t0 = time.perf_counter()
    tracks = []
    for i, seconds in enumerate(lengths):
        audio, info = render_track(seed, i, seconds)
        path = out / _track_name(i)
        fmt = "WAV" if path.suffix == ".wav" else "FLAC"
        with atomic_path(path, suffix=path.suffix) as tmp:
            sf.write(tmp, audio, SAMPLE_RATE, format=fmt, subtype="PCM_16")
        tracks.append({"file": path.name, "format": fmt, "size": path.stat().st_size,
                       "sha256": _sha256(path), **info})
        log(f"wrote {path}  {info['seconds']:5.1f} s  {info['bpm']} BPM  {info['progression']}")
    # Tracks of an earlier, longer corpus would otherwise be mixed into this one.
    written = {t["file"] for t in tracks}
    for entry in _entries(old):
        if entry["file"] not in written:
            (out / entry["file"]).unlink(missing_ok=True)
    total = sum(t["seconds"] for t in tracks) / 60
    write_json(out / MARKER, {"params": params, "minutes": round(total, 3), "channels": 2,
                              "tracks": tracks})
    log(f"demo corpus: {len(tracks)} track{'s' * (len(tracks) > 1)}, {total:.1f} min of 44.1 kHz stereo in {out} "
        f"({time.perf_counter() - t0:.1f} s)")
    return [out / t["file"] for t in tracks]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `soundalike demo-corpus`."""
    parser.add_argument("--out", default="data/demo/raw", help="folder for the tracks (default: %(default)s)")
    parser.add_argument("--minutes", type=float, default=12.0, help="total length (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="composition seed (default: %(default)s)")
    parser.add_argument("--force", action="store_true", help="rebuild even if the folder holds this corpus")


def run(args: argparse.Namespace) -> int:
    """Entry point of `soundalike demo-corpus`."""
    try:
        make_corpus(args.out, minutes=args.minutes, seed=args.seed, force=args.force)
    except OSError as e:
        raise UserError(f"cannot write the demo corpus to {args.out}: {e.strerror or e}") from e
    return 0
