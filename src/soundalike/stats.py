"""Audio statistics of clips, a verdict on each (ok / silent / noise / clipped / stuck / crackle / dc / level /
hiss), and a Fréchet distance between the log-mel frame distributions of generated and real audio.

The verdict rules, checked in this order (the first that holds wins):

- ``silent``:  at least SILENT_FRACTION (90 %) of the analysis frames (~32 ms) are below SILENCE_DB
               (-60 dBFS).
- ``noise``:   the median spectral flatness of the sounding frames is at least NOISE_FLATNESS (0.3; white
               noise reads 0.56, tonal music well under 0.05); or it is at least COLORED_NOISE_FLATNESS
               (0.05) and the sound never changes: steadiness (the fraction of frame pairs LOOP_MIN_S ..
               LOOP_MAX_S apart that match as in ``stuck`` below) at least STEADY (0.5; music reads under
               0.35). That is colored noise with no notes, no attacks, no structure. Steady sound that is
               not noisy (a held tone, a drone, brown-noise rumble) falls through to ``stuck``.
- ``clipped``: at least CLIPPED_FRACTION (1 %) of the samples sit in flat tops: runs of CLIP_RUN (3) or
               more samples within CLIP_TOLERANCE of the clip's own positive or negative extreme, where that
               extreme is at least CLIP_RAIL (0.9 of full scale). The clip's own extreme rather than 1.0,
               because a mu-law model's top level is below full scale; runs, because a loud sine touches its
               peak only once a cycle.
- ``stuck``:   one loop (a stuck riff, or a held note) repeats for at least STUCK_FRACTION (60 %) of the clip
               and at least STUCK_MIN_S (5 s). Real music repeats a bar, or holds a chord, for up to ~4 s
               (the demo corpus does), so a clip shorter than 5 s is never called stuck. A loop of lag L
               (LOOP_MIN_S .. LOOP_MAX_S) repeats where 32-band log-mel frames match the frames L later to
               within LOOP_MATCH_DB (3 dB mean absolute difference), gaps up to LOOP_GAP_S forgiven (frames
               straddling an onset that falls between two hops). The repeated span is the longest such run R
               plus min(R, L): the whole stretch when the loop plays on end (R >= L), the two copies of a
               phrase heard twice otherwise.
- ``crackle``: at least CRACKLE_RATE (5) clicks a second. A click is a run of samples (gaps up to
               CRACKLE_GAP_S, 2 ms, joined) whose 4th difference (CRACKLE_ORDER; weighs frequency f by
               (2 sin(pi f / rate))^4, so tonal music's energy, falling with frequency, drops out and an
               impulse stands out 6x) is at least CRACKLE_K (30) times the local scale and at least CRACKLE_MIN
               (0.03 of full scale: a single-sample impulse of 0.005). The local scale is the median absolute
               4th difference over CRACKLE_BLOCK_S (10 ms) blocks, as a Gaussian sigma, the largest of a block
               and its two neighbours (a note's onset is judged by the sound that follows it). Real music has
               few such events (sharp synthetic attacks, a note cut off with a step); model crackle is dense.

The next three compare the clip with the data, the valid split of the dataset given (``--reference``; the
gallery uses the run's dataset): its chunks' RMS, DC and noise floor, each chunk read at the dataset's gain
like the audio the model learnt (a chunk file of that dataset itself is judged as stored). Without a
dataset they are not judged. Each allows the whole range the data's own chunks span, plus a margin: music
varies from chunk to chunk (soft passages, loud tutti), so a fixed distance from the data's mean would call
real chunks bad.

- ``dc``:      the clip's mean minus the data's is more than DC_OFFSET (0.02, -34 dBFS) outside the range
               of the chunks' own. A step of that size clicks when playback starts or stops; music's own mean
               over seconds is far smaller (a tone's incomplete cycle averages to under 1 / (pi f T): 0.002 for
               a full-scale 20 Hz tone over 8 s), so only a recording made with an offset comes near.
- ``level``:   the clip's RMS is more than LEVEL_DB (6 dB, four times the power) above the data's loudest
               chunk, or more than LEVEL_QUIET_DB (20 dB) below its quietest: a soft passage of real music can
               sit well below the quietest chunk of a few minutes of the valid split.
- ``hiss``:    ``hiss_db`` is more than HISS_DB (6 dB) above the highest of the data's chunks.
- ``ok``:      none of the above.

The noise floor (``floor_db``, per octave band from 1 kHz up: 1-2, 2-4, 4-8 and, at 32 kHz and above, 8-16
kHz) is the level of the quietest moments in each band: the FLOOR_PERCENTILE-th (10th) percentile over time
of the band's power in FLOOR_FRAME_S (50 ms) Hann frames every 25 ms, in dBFS, a band's level being its share
of the mean square (white noise of RMS r reads r^2 * bandwidth / (rate / 2)). Long enough frames that a
band's estimate is steady (the 1-2 kHz band holds 50 FFT bins), short enough to fall between notes. The
percentile of a noisy estimate reads ~1 dB low in that band; that is corrected, so steady noise reads its own
level. ``hiss_bands_db`` is the clip's floor minus the data's (the median of its chunks') per band, both
raised to HISS_FLOOR_DB (-80 dBFS: quieter hiss is inaudible at listening level, and an 8-bit mu-law
model idling one level either side of silence reads about that); ``hiss_db``, their mean over the bands from
HISS_FROM_HZ (2 kHz) up, where music is quiet and model hiss shows. ``level_db`` and ``dc_diff`` are the
clip's RMS and DC minus the data's; ``together`` (in the report, and the line after the verdicts) holds the
same for all the clips as one recording, the figure to hold against the data's level (``together``'s
docstring says why not the mean of the clips' level_db).

The Fréchet distance (FAD-like, without a downloaded embedding model) compares Gaussian fits of 64-band
log-mel frames (log10 power floored at -100 dB, 16 kHz, 64 ms windows, 32 ms hop) of generated audio with
the dataset's valid split, read at the dataset's gain (the level the model learnt). Two anchors give it a scale: white noise at the valid split's RMS level (far) and the train split
(near 0, what a perfect model would score). Like FAD it reads higher for few frames, so compare like
amounts of audio.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from statistics import NormalDist

import numpy as np
import soundfile as sf
import soxr

from .atomic import atomic_path, check_folder, write_json
from .dataset import Manifest
from .errors import UserError
from .spectrogram import FLOOR_DB, log_mel, mel_filterbank, power_db, stft_power

SILENCE_DB = -60.0
SILENT_FRACTION = 0.9
NOISE_FLATNESS = 0.3
COLORED_NOISE_FLATNESS = 0.05
STEADY = 0.5
CLIP_RAIL = 0.9
CLIP_TOLERANCE = 1e-4
CLIP_RUN = 3
CLIPPED_FRACTION = 0.01
LOOP_MIN_S = 0.2
LOOP_MAX_S = 2.0
LOOP_MATCH_DB = 3.0
LOOP_GAP_S = 0.06
LOOP_RANGE_DB = 60.0  # bands this far below the clip's loudest are floored: their noise is not a difference
STUCK_FRACTION = 0.6
STUCK_MIN_S = 5.0
LOUDNESS_STEP_S = 0.5
CRACKLE_ORDER = 4
CRACKLE_K = 30.0
CRACKLE_MIN = 0.03
CRACKLE_BLOCK_S = 0.01
CRACKLE_GAP_S = 0.002
CRACKLE_RATE = 5.0
FLOOR_FRAME_S = 0.05
FLOOR_PERCENTILE = 10.0
FLOOR_BANDS = ((1000, 2000), (2000, 4000), (4000, 8000), (8000, 16000))  # Hz; a band above Nyquist is left out
HISS_FROM_HZ = 2000
HISS_FLOOR_DB = -80.0
DC_OFFSET = 0.02
LEVEL_DB = 6.0
LEVEL_QUIET_DB = 20.0
HISS_DB = 6.0

VERDICTS = ("ok", "silent", "noise", "clipped", "stuck", "crackle", "dc", "level", "hiss")
AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".aif", ".aiff", ".mp3", ".opus"}

FEATURE_RATE = 16000
FEATURE_MELS = 64
FEATURE_FFT = 1024
FEATURE_HOP = 512
FEATURE_FLOOR_DB = -100.0  # below 16-bit's noise floor; without it empty bands of digital silence dominate
REFERENCE_SECONDS = 300.0


def load_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Read any libsndfile format as mono float32 (channels averaged), (samples,), and its rate."""
    try:
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        raise UserError(f"{path}: cannot read audio ({e})") from None
    return audio.mean(axis=1), int(rate)


def _db(power: np.ndarray | float) -> np.ndarray:
    """Mean-square power -> dBFS (a full-scale square wave is 0 dB), floored at FLOOR_DB."""
    return np.maximum(10.0 * np.log10(np.maximum(power, 1e-30)), FLOOR_DB)


def _window_power(x: np.ndarray, size: int, hop: int) -> np.ndarray:
    """Mean square of windows of `size` samples every `hop`, (windows,); a cumulative sum, no frame copies."""
    cs = np.concatenate(([0.0], np.cumsum(x.astype(np.float64) ** 2)))
    if len(x) <= size:
        return np.array([cs[-1] / max(len(x), 1)])
    starts = np.arange(0, len(x) - size + 1, hop)
    return (cs[starts + size] - cs[starts]) / size


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Starts and ends (exclusive) of the runs of True in a 1-D boolean array."""
    edges = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)


def _longest_span(mask: np.ndarray, gap: int) -> int:
    """Length of the longest run of True when gaps of up to `gap` False between Trues are forgiven."""
    starts, ends = _runs(mask)
    if len(starts) == 0:
        return 0
    first = np.flatnonzero(np.concatenate(([True], starts[1:] - ends[:-1] > gap)))
    last = np.concatenate((first[1:] - 1, [len(starts) - 1]))
    return int((ends[last] - starts[first]).max())


def _clip_fraction(x: np.ndarray) -> float:
    """Fraction of samples in flat tops at the clip's own positive or negative extreme (see module doc)."""
    clipped = 0
    for side in (x, -x):
        top = float(side.max())
        if top < CLIP_RAIL:
            continue
        starts, ends = _runs(side >= top - CLIP_TOLERANCE)
        lengths = ends - starts
        clipped += int(lengths[lengths >= CLIP_RUN].sum())
    return clipped / len(x)


def band_name(lo: float, hi: float) -> str:
    """An octave band's key in the statistics: (1000, 2000) -> "1-2k"."""
    return f"{lo / 1000:g}-{hi / 1000:g}k"


def noise_floor(x: np.ndarray, rate: int) -> dict[str, float]:
    """The noise floor of each FLOOR_BANDS band below the Nyquist frequency, dBFS: the FLOOR_PERCENTILE-th
    percentile over time of the band's level in FLOOR_FRAME_S frames (Hann, half overlapping).

    A band's level is its share of the mean-square power, so white noise of variance v reads
    v * (hi - lo) / (rate / 2). The percentile of a noisy estimate reads below the mean, by ~1 dB in the 1 kHz
    wide band; that is corrected (Wilson-Hilferty, for Gaussian noise) so steady noise reads its own level.
    """
    n = round(FLOOR_FRAME_S * rate)
    bins = np.fft.rfftfreq(n, 1.0 / rate)
    window = np.hanning(n + 1)[:-1]
    scale = 2.0 / (n * float(np.sum(window**2)))  # one-sided periodogram -> mean square (Parseval)
    bands = [(lo, hi) for lo, hi in FLOOR_BANDS if hi <= rate / 2]
    if not bands:
        return {}
    masks = np.stack([(bins >= lo) & (bins < hi) for lo, hi in bands], axis=1).astype(np.float32)  # (bins, B)
    band_db = np.concatenate([_db((p @ masks) * scale) for p in stft_power(x, n, n // 2)])  # (frames, B)
    floor = np.percentile(band_db, FLOOR_PERCENTILE, axis=0)
    z = NormalDist().inv_cdf(FLOOR_PERCENTILE / 100)
    out = {}
    for (lo, hi), count, value in zip(bands, masks.sum(axis=0), floor):
        # A Hann-windowed periodogram summed over `count` bins: about chi-square with 2 * count * 18/35 degrees
        # of freedom; Wilson-Hilferty gives the ratio of its percentile to its mean.
        a = 2.0 / (9.0 * 2.0 * count * 18.0 / 35.0)
        bias_db = 30.0 * math.log10(1.0 - a + z * math.sqrt(a))
        out[band_name(lo, hi)] = round(max(float(value) - bias_db, FLOOR_DB), 2)
    return out


def crackle_rate(x: np.ndarray, rate: int) -> float:
    """Clicks per second: runs of samples (gaps up to CRACKLE_GAP_S joined) whose CRACKLE_ORDER-th difference is
    at least CRACKLE_K times the local robust scale and at least CRACKLE_MIN (see the module docstring)."""
    d = np.abs(np.diff(x.astype(np.float64), CRACKLE_ORDER))
    block = max(1, round(CRACKLE_BLOCK_S * rate))
    if len(d) < block:
        return 0.0
    whole = len(d) // block * block
    # Median absolute value over CRACKLE_BLOCK_S blocks, as a Gaussian sigma; a click is too brief to move it.
    sigma = np.median(d[:whole].reshape(-1, block), axis=1) / 0.6745  # (blocks,)
    padded = np.concatenate((sigma[:1], sigma, sigma[-1:]))
    # The largest of the block and its two neighbours: a note's onset is judged by the sound that follows it.
    local = np.maximum(np.maximum(padded[:-2], padded[1:-1]), padded[2:])
    threshold = np.pad(np.repeat(CRACKLE_K * local, block), (0, len(d) - whole), mode="edge")  # (len(d),)
    hits = np.flatnonzero(d >= np.maximum(threshold, CRACKLE_MIN))
    clicks = int(len(hits) > 0) + int(np.sum(np.diff(hits) > CRACKLE_GAP_S * rate))
    return clicks / (len(x) / rate)


def _longest_loop(mel: np.ndarray, sounding: np.ndarray, hop_s: float) -> tuple[float, float, float]:
    """(loop length, repeated span) in seconds of the loop that covers most audio, and the fraction of all
    (frame, lag) pairs that match (near 1 when the sound never changes: a held tone or steady noise).

    mel is (frames, bands) in dB.
    """
    n = len(mel)
    mel = np.maximum(mel, mel.max() - LOOP_RANGE_DB)
    gap = round(LOOP_GAP_S / hop_s)
    best_span, best_lag, matched, pairs = 0, 0, 0, 0
    for lag in range(max(1, round(LOOP_MIN_S / hop_s)), min(round(LOOP_MAX_S / hop_s), n - 1) + 1):
        diff = np.abs(mel[lag:] - mel[:-lag]).mean(axis=1)
        # Two silent frames match trivially; a pause is not a riff.
        match = (diff <= LOOP_MATCH_DB) & (sounding[lag:] | sounding[:-lag])
        matched, pairs = matched + int(match.sum()), pairs + len(match)
        run = _longest_span(match, gap)
        # A run as long as the lag is a loop played on end; a shorter one is a phrase heard twice.
        span = run + min(run, lag)
        if span > best_span:
            best_span, best_lag = span, lag
    return best_lag * hop_s, best_span * hop_s, matched / max(pairs, 1)


def clip_stats(audio: np.ndarray, rate: int, levels: Levels | None = None) -> dict:
    """Statistics and a verdict of one clip, mono (samples,) or (samples, channels) floats in [-1, 1], judged
    against the data's levels where given (see judge).

    Every value is a plain float / int / str / list / dict or None, ready for JSON. Levels are dBFS (unweighted
    RMS).
    """
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim == 2:
        x = x.mean(axis=1)
    assert x.ndim == 1, f"expected audio as (samples,) or (samples, channels), got shape {x.shape}"
    x = np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0)  # a float WAV can hold them; JSON cannot
    seconds = len(x) / rate
    if len(x) == 0:
        return {"seconds": 0.0, "rate": rate, "verdict": "silent", "why": "empty clip"}

    n_fft = 2 ** round(math.log2(0.032 * rate))
    hop = n_fft // 2
    frame_db = _db(_window_power(x, n_fft, hop))
    sounding = frame_db >= SILENCE_DB

    centroid, flatness, mels = [], [], []
    freqs = np.fft.rfftfreq(n_fft, 1.0 / rate).astype(np.float32)
    fb = mel_filterbank(rate, n_fft, 32, fmax=min(rate / 2, 8000.0))
    for p in stft_power(x, n_fft, hop):
        total = p.sum(axis=1) + 1e-20
        centroid.append((p @ freqs) / total)
        flatness.append(np.exp(np.log(p + 1e-12).mean(axis=1)) / (p.mean(axis=1) + 1e-12))
        mels.append(power_db(p @ fb.T))
    centroid, flatness, mel = np.concatenate(centroid), np.concatenate(flatness), np.concatenate(mels)
    sounding = sounding[: len(mel)]

    short_db = _db(_window_power(x, round(0.1 * rate), round(0.1 * rate)))
    short_db = short_db[short_db >= SILENCE_DB]
    step = round(LOUDNESS_STEP_S * rate)
    loudness = _db(_window_power(x, step, step))
    loop_s, repeat_s, steady = _longest_loop(mel, sounding, hop / rate)
    any_sound = bool(sounding.any())

    stats = {
        "seconds": round(seconds, 3),
        "rate": rate,
        "rms_db": round(float(_db(np.mean(x.astype(np.float64) ** 2))), 2),
        "peak_db": round(float(_db(float(np.abs(x).max()) ** 2)), 2),
        "loudness_db": [round(float(v), 1) for v in loudness],
        "loudness_step_s": LOUDNESS_STEP_S,
        "loudness_std_db": round(float(short_db.std()) if len(short_db) > 1 else 0.0, 2),
        "silence_fraction": round(float(1.0 - sounding.mean()), 4),
        "centroid_hz": round(float(centroid[sounding].mean()) if any_sound else 0.0, 1),
        "flatness": _sig(float(np.median(flatness[sounding])) if any_sound else 0.0),
        "zcr": round(float(np.mean(np.signbit(x[1:]) != np.signbit(x[:-1]))) if len(x) > 1 else 0.0, 4),
        "dc_offset": round(float(x.mean(dtype=np.float64)), 5),
        "clip_fraction": round(_clip_fraction(x), 4),
        "loop_s": round(loop_s, 3),
        "loop_repeat_s": round(repeat_s, 2),
        "steadiness": round(steady, 3),
        "crackle_per_s": round(crackle_rate(x, rate), 2),
        "floor_db": noise_floor(x, rate),
    }
    return judge(stats, levels)


def judge(stats: dict, levels: Levels | None) -> dict:
    """Statistics of clip_stats with their comparison to the data's levels (level_db, dc_diff, hiss_db and
    hiss_bands_db; None without levels) and the verdict. Without levels dc, level and hiss are not judged.

    Separate from clip_stats so that statistics cached without a dataset can be judged against one later.
    """
    s = {k: v for k, v in stats.items() if k not in ("verdict", "why")}
    if "silence_fraction" not in s:  # an empty clip
        return dict(stats)
    s.update(levels.compare(s) if levels is not None else dict.fromkeys(COMPARED))
    s["verdict"], s["why"] = _verdict(s, levels)
    return s


def _sig(v: float, digits: int = 3) -> float:
    """Round to significant digits (flatness spans several decades)."""
    return float(f"{v:.{digits}g}")


def _verdict(s: dict, levels: Levels | None = None) -> tuple[str, str]:
    """Apply the rules of the module docstring, in order; returns (verdict, a short reason)."""
    if s["silence_fraction"] >= SILENT_FRACTION:
        return "silent", f"{s['silence_fraction']:.0%} of frames below {SILENCE_DB:g} dBFS"
    if s["flatness"] >= NOISE_FLATNESS:
        return "noise", f"spectral flatness {s['flatness']:.2f} >= {NOISE_FLATNESS}"
    if s["flatness"] >= COLORED_NOISE_FLATNESS and s["steadiness"] >= STEADY:
        return "noise", f"flatness {s['flatness']:.2f}, never changing ({s['steadiness']:.0%} steady)"
    if s["clip_fraction"] >= CLIPPED_FRACTION:
        return "clipped", f"{s['clip_fraction']:.1%} of samples in flat tops"
    if s["loop_repeat_s"] >= max(STUCK_MIN_S, STUCK_FRACTION * s["seconds"]):
        if s["steadiness"] >= STEADY:
            return "stuck", f"the sound does not change for {s['loop_repeat_s']:.1f} s (a held note or drone)"
        return "stuck", f"a {s['loop_s']:.2f} s loop repeats for {s['loop_repeat_s']:.1f} s"
    if s["crackle_per_s"] >= CRACKLE_RATE:
        return "crackle", f"{s['crackle_per_s']:.1f} clicks/s >= {CRACKLE_RATE:g}"
    if levels is None:
        return "ok", ""
    span = levels.ranges()
    lo, hi = span["dc_diff"]
    if not lo - DC_OFFSET <= s["dc_diff"] <= hi + DC_OFFSET:
        return "dc", (f"DC {s['dc_offset']:+.3f}, {s['dc_diff']:+.3f} from the data's (its chunks "
                      f"{lo:+.3f}..{hi:+.3f})")
    lo, hi = span["level_db"]
    if not lo - LEVEL_QUIET_DB <= s["level_db"] <= hi + LEVEL_DB:
        return "level", f"RMS {s['level_db']:+.1f} dB from the data's (its chunks {lo:+.1f}..{hi:+.1f} dB)"
    hi = span["hiss_db"][1]
    if s["hiss_db"] is not None and math.isfinite(hi) and s["hiss_db"] > hi + HISS_DB:
        return "hiss", (f"noise floor above {HISS_FROM_HZ / 1000:g} kHz {s['hiss_db']:+.1f} dB over the data's "
                        f"(its chunks up to {hi:+.1f} dB)")
    return "ok", ""


def together(clips: list[dict]) -> dict | None:
    """The clips' RMS and DC as one recording (each clip weighted by its length; None without clips), and
    against the data's (level_db, dc_diff; None without levels).

    The mean of the clips' own level_db reads low for music with dynamics: a mean of decibels is not the
    decibels of the mean power (the Wesnoth soundtrack's 8 s chunks average 2.7 dB under its RMS, the demo
    corpus's 0.5 dB). The pooled figure is what "as loud as the data" means.
    """
    clips = [c for c in clips if c.get("seconds", 0) > 0 and "rms_db" in c and "dc_offset" in c]
    if not clips:
        return None
    w = np.array([c["seconds"] for c in clips], dtype=np.float64)
    w /= w.sum()

    def pooled_db(key: str) -> float:
        return round(float(10.0 * np.log10(np.sum(w * 10.0 ** (np.array([c[key] for c in clips]) / 10.0)))), 2)

    judged = all(isinstance(c.get("level_db"), (int, float)) for c in clips)
    return {"seconds": round(float(sum(c["seconds"] for c in clips)), 2), "rms_db": pooled_db("rms_db"),
            "dc_offset": round(float(np.sum(w * [c["dc_offset"] for c in clips])), 5),
            "level_db": pooled_db("level_db") if judged else None,
            "dc_diff": round(float(np.sum(w * [c["dc_diff"] for c in clips])), 5) if judged else None}


# ---- the data's levels: what dc, level and hiss judge a clip against ---------------------------------------

COMPARED = ("level_db", "dc_diff", "hiss_db", "hiss_bands_db")


@dataclass
class Levels:
    """RMS, DC and noise floor of each chunk read of the valid split, and of all of it; at `gain`."""

    rms_db: np.ndarray  # (chunks,)
    dc: np.ndarray  # (chunks,)
    floor_db: np.ndarray  # (chunks, len(FLOOR_BANDS)); NaN in a band above the data's Nyquist frequency
    mean_square: float  # of all the audio read
    mean: float  # its DC
    seconds: float
    gain: float

    @cached_property
    def floor(self) -> dict[str, float]:
        """The data's noise floor per band: the median of its chunks', dBFS."""
        return {band_name(*b): float(np.median(c[np.isfinite(c)]))
                for b, c in zip(FLOOR_BANDS, self.floor_db.T) if np.isfinite(c).any()}

    def hiss(self, floor: dict[str, float]) -> tuple[float | None, dict[str, float]]:
        """A clip's noise floor against the data's: the difference per band (both raised to HISS_FLOOR_DB) and
        its mean over the bands from HISS_FROM_HZ up (None if there are none), dB."""
        data = self.floor
        bands = {k: round(max(v, HISS_FLOOR_DB) - max(data[k], HISS_FLOOR_DB), 2)
                 for k, v in floor.items() if k in data}
        high = [bands[band_name(lo, hi)] for lo, hi in FLOOR_BANDS
                if lo >= HISS_FROM_HZ and band_name(lo, hi) in bands]
        return (round(float(np.mean(high)), 2) if high else None), bands

    def compare(self, s: dict) -> dict:
        """The COMPARED figures of clip statistics s."""
        hiss, bands = self.hiss(s["floor_db"])
        return {"level_db": round(s["rms_db"] - float(_db(self.mean_square)), 2),
                "dc_diff": round(s["dc_offset"] - self.mean, 5), "hiss_db": hiss, "hiss_bands_db": bands}

    def ranges(self) -> dict[str, tuple[float, float]]:
        """The range (lowest, highest) of the chunks' own level_db, dc_diff and hiss_db (NaN if none)."""
        names = [band_name(*b) for b in FLOOR_BANDS]
        hiss = [self.hiss({k: v for k, v in zip(names, row) if math.isfinite(v)})[0] for row in self.floor_db]
        out = {}
        for key, values in (("level_db", self.rms_db - _db(self.mean_square)), ("dc_diff", self.dc - self.mean),
                            ("hiss_db", np.array([np.nan if h is None else h for h in hiss]))):
            values = np.asarray(values, dtype=np.float64)
            values = values[np.isfinite(values)]
            out[key] = (float(values.min()), float(values.max())) if len(values) else (math.nan, math.nan)
        return out

    def as_stored(self) -> Levels:
        """The same levels without the dataset's gain: what the chunk files themselves read."""
        db = 20.0 * math.log10(self.gain)
        return Levels(self.rms_db - db, self.dc / self.gain, self.floor_db - db, self.mean_square / self.gain**2,
                      self.mean / self.gain, self.seconds, 1.0)

    def summary(self) -> dict:
        """For the JSON report: the data's figures and the ranges its chunks span."""
        return {"chunks": len(self.rms_db), "seconds": round(self.seconds, 1), "gain": self.gain,
                "rms_db": round(float(_db(self.mean_square)), 2), "dc": round(self.mean, 5),
                "floor_db": {k: round(v, 2) for k, v in self.floor.items()},
                "chunk_ranges": {k: [round(v, 3) for v in lh] for k, lh in self.ranges().items()}}

    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        return {f"{prefix}_{k}": np.asarray(getattr(self, k))
                for k in ("rms_db", "dc", "floor_db", "mean_square", "mean", "seconds", "gain")}

    @classmethod
    def from_arrays(cls, arrays, prefix: str) -> Levels:
        a = {k: arrays[f"{prefix}_{k}"] for k in ("rms_db", "dc", "floor_db", "mean_square", "mean", "seconds",
                                                  "gain")}
        return cls(a["rms_db"], a["dc"], a["floor_db"].reshape(-1, len(FLOOR_BANDS)),
                   *(float(a[k]) for k in ("mean_square", "mean", "seconds", "gain")))


# ---- Fréchet distance between log-mel frame distributions -------------------------------------------------


@dataclass
class FrameGaussian:
    """Running sums of feature frames, enough for a mean and covariance; sums of two sets add up."""

    n: int
    total: np.ndarray  # (D,)
    outer: np.ndarray  # (D, D)

    @classmethod
    def of(cls, frames: np.ndarray) -> FrameGaussian:
        """Sums of feature frames (T, D)."""
        f = np.asarray(frames, dtype=np.float64)
        return cls(len(f), f.sum(axis=0), f.T @ f)

    @classmethod
    def empty(cls, dim: int = FEATURE_MELS) -> FrameGaussian:
        return cls(0, np.zeros(dim), np.zeros((dim, dim)))

    def __add__(self, other: FrameGaussian) -> FrameGaussian:
        return FrameGaussian(self.n + other.n, self.total + other.total, self.outer + other.outer)

    @property
    def mean(self) -> np.ndarray:
        return self.total / self.n

    @property
    def cov(self) -> np.ndarray:
        """Unbiased covariance, (D, D)."""
        mu = self.mean
        return (self.outer - self.n * np.outer(mu, mu)) / (self.n - 1)

    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        """For np.savez: the sums under prefixed names."""
        return {f"{prefix}_n": np.array(self.n), f"{prefix}_total": self.total, f"{prefix}_outer": self.outer}

    @classmethod
    def from_arrays(cls, arrays, prefix: str) -> FrameGaussian:
        return cls(int(arrays[f"{prefix}_n"]), arrays[f"{prefix}_total"], arrays[f"{prefix}_outer"])


def frame_features(audio: np.ndarray, rate: int) -> np.ndarray:
    """The Fréchet features of a mono clip: 64-band log10 mel power at 16 kHz (bels), (frames, 64)."""
    x = np.asarray(audio, dtype=np.float32)
    if rate != FEATURE_RATE:
        x = soxr.resample(x, rate, FEATURE_RATE)
    mel = log_mel(x, FEATURE_RATE, FEATURE_MELS, FEATURE_FFT, FEATURE_HOP)
    return np.maximum(mel, FEATURE_FLOOR_DB) / 10.0


def _sqrtm_psd(c: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix by eigendecomposition."""
    w, v = np.linalg.eigh((c + c.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(a: FrameGaussian, b: FrameGaussian) -> float:
    """Fréchet distance between Gaussian fits: |mu_a - mu_b|^2 + tr(Ca + Cb - 2 (Ca Cb)^(1/2)).

    tr((Ca Cb)^(1/2)) = tr((Sa Cb Sa)^(1/2)) with Sa = Ca^(1/2), and Sa Cb Sa is symmetric, so only eigh is
    needed; a general sqrtm of the non-symmetric product turns complex on near-singular covariances.
    """
    assert a.n >= 2 and b.n >= 2, f"need at least 2 frames on each side, got {a.n} and {b.n}"
    ca, cb = a.cov, b.cov
    sa = _sqrtm_psd(ca)
    middle = sa @ cb @ sa
    tr_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0.0, None)).sum()
    d = float(np.sum((a.mean - b.mean) ** 2) + np.trace(ca) + np.trace(cb) - 2.0 * tr_sqrt)
    return max(d, 0.0)


def dataset_chunks(dataset: str | Path, split: str) -> list[Path]:
    """The chunk files of one split of a sliced dataset folder, in manifest order (those present)."""
    return [c.path for c in Manifest.load(dataset).split(split) if c.path.is_file()]


def spread(items: list, count: int) -> list:
    """`count` items spread evenly over the list (all of them if there are fewer)."""
    if len(items) <= count:
        return items
    return [items[i] for i in np.linspace(0, len(items) - 1, count).round().astype(int)]


def dataset_gain(dataset: str | Path) -> float:
    """The dataset-wide normalization gain of a sliced dataset (what the model was trained on)."""
    return Manifest.load(dataset).gain


def fit_files(files: list[Path], max_seconds: float | None = None,
              gain: float = 1.0) -> tuple[FrameGaussian, Levels]:
    """Fréchet sums and Levels of files (spread evenly up to max_seconds, scaled by gain)."""
    g, seconds, energy, total, samples = FrameGaussian.empty(), 0.0, 0.0, 0.0, 0
    rms_db, dc, floor = [], [], []
    if max_seconds is not None and files:
        # Chunks of one dataset share a length; read one to know how many fit.
        first = sf.info(str(files[0])).duration
        files = spread(files, max(1, int(max_seconds // max(first, 1e-3))))
    for path in files:
        audio, rate = load_audio(path)
        audio = audio * np.float32(gain)
        g = g + FrameGaussian.of(frame_features(audio, rate))
        seconds += len(audio) / rate
        square, mean = float(np.sum(audio.astype(np.float64) ** 2)), float(np.sum(audio, dtype=np.float64))
        energy, total, samples = energy + square, total + mean, samples + len(audio)
        rms_db.append(float(_db(square / max(len(audio), 1))))
        dc.append(mean / max(len(audio), 1))
        bands = noise_floor(audio, rate)
        floor.append([bands.get(band_name(*b), np.nan) for b in FLOOR_BANDS])
    levels = Levels(np.array(rms_db), np.array(dc), np.array(floor).reshape(-1, len(FLOOR_BANDS)),
                    energy / max(samples, 1), total / max(samples, 1), seconds, gain)
    return g, levels


REFERENCE_FORMAT = 2  # 1: the Fréchet sums only (loads, without levels); 2: with the valid split's Levels


@dataclass
class Reference:
    """The valid split's Fréchet sums and Levels, and the two anchors' sums (white noise, train split)."""

    dataset: str
    valid: FrameGaussian
    noise: FrameGaussian
    train: FrameGaussian | None
    levels: Levels | None = None

    def distances(self, generated: FrameGaussian) -> dict:
        """Fréchet distance of generated audio to the valid split, beside the anchors'."""
        return {
            "generated": round(frechet_distance(generated, self.valid), 3) if generated.n >= 2 else None,
            "white_noise": round(frechet_distance(self.noise, self.valid), 3),
            "train_split": round(frechet_distance(self.train, self.valid), 3) if self.train else None,
        }

    def save(self, path: str | Path) -> None:
        """Write the sums and levels as .npz, atomically."""
        arrays = {**self.valid.to_arrays("valid"), **self.noise.to_arrays("noise")}
        if self.train is not None:
            arrays.update(self.train.to_arrays("train"))
        if self.levels is not None:
            arrays.update(self.levels.to_arrays("levels"))
        with atomic_path(path, suffix=".npz") as tmp, open(tmp, "wb") as f:
            np.savez(f, format=np.array(REFERENCE_FORMAT), dataset=np.array(self.dataset), **arrays)

    @classmethod
    def load(cls, path: str | Path) -> Reference:
        """Read a saved reference; one of format 1 has no levels (None)."""
        with np.load(path) as z:
            train = FrameGaussian.from_arrays(z, "train") if "train_n" in z else None
            levels = Levels.from_arrays(z, "levels") if "levels_rms_db" in z else None
            return cls(str(z["dataset"]), FrameGaussian.from_arrays(z, "valid"),
                       FrameGaussian.from_arrays(z, "noise"), train, levels)


def reference(dataset: str | Path, max_seconds: float = REFERENCE_SECONDS) -> Reference:
    """Fit the valid split of a sliced dataset (Fréchet sums and Levels) and the anchors, up to max_seconds each.

    Chunks are scaled by the dataset's gain: generated audio comes out at the level the model was trained on.
    """
    valid_files = dataset_chunks(dataset, "valid")
    if not valid_files:
        raise UserError(f"{dataset}: the dataset has no valid-split chunks to compare against")
    gain = dataset_gain(dataset)
    valid, levels = fit_files(valid_files, max_seconds, gain)
    if valid.n < 2:
        raise UserError(f"{dataset}: the valid split is too short to compare against")
    # Noise as loud as the real audio and as long: the anchor then differs in spectrum only.
    rng = np.random.default_rng(0)
    noise_audio = rng.standard_normal(round(levels.seconds * FEATURE_RATE)) * math.sqrt(levels.mean_square)
    noise = FrameGaussian.of(frame_features(noise_audio, FEATURE_RATE))
    train_files = dataset_chunks(dataset, "train")
    train = fit_files(train_files, max_seconds, gain)[0] if train_files else None
    return Reference(str(dataset), valid, noise, train if train is not None and train.n >= 2 else None, levels)


# ---- command line -----------------------------------------------------------------------------------------


def audio_files(paths: list[str | Path]) -> list[Path]:
    """Files named, and audio files found under folders named (recursively, sorted; hidden files skipped)."""
    found = []
    for p in map(Path, paths):
        if p.is_dir():
            found += sorted(
                f for f in p.rglob("*")
                if f.is_file() and f.suffix.lower() in AUDIO_SUFFIXES and not f.name.startswith(".")
            )
        elif p.is_file():
            found.append(p)
        else:
            raise UserError(f"{p}: no such file or folder")
    return found


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="FILES_OR_DIR", help="audio files, or folders to search")
    parser.add_argument("--reference", metavar="DATASET", help="sliced dataset folder to compare against")
    parser.add_argument("--json", metavar="OUT", help="also write every statistic to this JSON file")
    parser.add_argument("--max-seconds", type=float, default=REFERENCE_SECONDS,
                        help="audio read from each dataset split (default %(default)s)")


def _check_report_path(path: Path) -> None:
    """--json may replace an earlier report of this command, never another file; checked before any work."""
    check_folder(path.parent, "--json")
    if path.is_dir():
        raise UserError(f"--json {path}: is a folder; give a file name")
    if path.exists():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
            ours = isinstance(old, dict) and {"clips", "verdicts"} <= old.keys()
        except (OSError, ValueError, UnicodeDecodeError):
            ours = False
        if not ours:
            raise UserError(f"--json {path}: exists and is not a report of `soundalike stats`; it was left as "
                            "it is, choose another name")


def _row(cells: list[str], widths: list[int]) -> str:
    return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))


def _opt(v: object, spec: str) -> str:
    """A number formatted, or "-" where it is missing (a figure that needs --reference)."""
    return f"{v:{spec}}" if isinstance(v, (int, float)) else "-"


def format_floor(floor: dict | None) -> str:
    """A clip's noise floor per band as "-62/-70/-85" (dBFS, bands from 1 kHz up)."""
    return "/".join(f"{v:.0f}" for v in floor.values()) if floor else "-"


def format_table(rows: list[tuple[str, dict]]) -> str:
    """A plain-text table of (name, clip_stats) pairs."""
    head = ["file", "sec", "rms dB", "silence", "centroid", "flatness", "zcr", "dc", "clip", "loop/span s",
            "clicks/s", "floor 1-2/2-4/4-8/8-16k", "level", "hiss dB", "verdict"]
    body = [
        [
            name, f"{s['seconds']:.1f}", f"{s.get('rms_db', FLOOR_DB):.1f}",
            f"{s.get('silence_fraction', 1.0):.0%}", f"{s.get('centroid_hz', 0):.0f}",
            f"{s.get('flatness', 0):.3g}", f"{s.get('zcr', 0):.3f}", f"{s.get('dc_offset', 0):+.3f}",
            f"{s.get('clip_fraction', 0):.1%}", f"{s.get('loop_s', 0):.2f}/{s.get('loop_repeat_s', 0):.1f}",
            _opt(s.get("crackle_per_s"), ".1f"), format_floor(s.get("floor_db")), _opt(s.get("level_db"), "+.1f"),
            _opt(s.get("hiss_db"), "+.1f"), s["verdict"] + (f" ({s['why']})" if s.get("why") else ""),
        ]
        for name, s in rows
    ]
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
    widths[-1] = 0  # the reason is free text at the end of the line
    return "\n".join(_row(r, widths).rstrip() for r in [head, *body])


def _within(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def run(args: argparse.Namespace) -> int:
    if not 0 < args.max_seconds < math.inf:
        raise UserError(f"--max-seconds must be a positive number, got {args.max_seconds}")
    if args.json:
        _check_report_path(Path(args.json))
    files = audio_files(args.paths)
    if not files:
        raise UserError(f"no audio files in {', '.join(args.paths)}")
    ref = reference(args.reference, args.max_seconds) if args.reference else None
    clips, generated = [], FrameGaussian.empty()
    for path in files:
        audio, rate = load_audio(path)
        levels = ref.levels if ref is not None else None
        if levels is not None and _within(path, Path(args.reference)):
            levels = levels.as_stored()  # a chunk of the dataset itself, stored before the gain
        clips.append({"file": str(path), **clip_stats(audio, rate, levels)})
        if ref is not None:
            generated = generated + FrameGaussian.of(frame_features(audio, rate))
    print(format_table([(c["file"], c) for c in clips]))
    counts = {v: sum(c["verdict"] == v for c in clips) for v in VERDICTS}
    print("verdicts: " + ", ".join(f"{n} {v}" for v, n in counts.items() if n))
    report: dict = {"clips": clips, "verdicts": counts, "together": together(clips), "levels": None}
    if (t := report["together"]) is not None:
        vs = f", {t['level_db']:+.1f} dB from the data's" if t["level_db"] is not None else ""
        dc = f" ({t['dc_diff']:+.4f} from the data's)" if t["dc_diff"] is not None else ""
        print(f"all clips together ({t['seconds']:.1f} s): RMS {t['rms_db']:.1f} dBFS{vs}, DC {t['dc_offset']:+.4f}{dc}")
    if ref is None:
        print("dc, level and hiss are not judged without --reference (the data's own levels)")
    else:
        report["levels"] = ref.levels.summary()
        lv, span = report["levels"], report["levels"]["chunk_ranges"]
        print(f"data ({args.reference}, valid split at gain {lv['gain']:.3f}): RMS {lv['rms_db']:.1f} dBFS "
              f"(chunks {span['level_db'][0]:+.1f}..{span['level_db'][1]:+.1f} dB), DC {lv['dc']:+.4f}, "
              f"noise floor {', '.join(f'{k} {v:.0f}' for k, v in lv['floor_db'].items())} dBFS "
              f"(chunks' hiss up to {_opt(span['hiss_db'][1], '+.1f')} dB)")
        d = ref.distances(generated)
        report["frechet"] = {"reference": f"{args.reference} (valid split)", **d}
        fmt = {k: "n/a" if v is None else f"{v:.1f}" for k, v in d.items()}
        print(f"Fréchet distance to {args.reference} valid split (log-mel frames; lower is closer): "
              f"these clips {fmt['generated']} | anchors: train split {fmt['train_split']}, "
              f"white noise {fmt['white_noise']}")
    if args.json:
        write_json(args.json, report)
    return 0
