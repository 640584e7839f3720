"""Audio file I/O: read anything libsndfile reads as mono float32 at a chosen rate, whole or in blocks.

Channels are downmixed by averaging (before resampling: it is linear, and one channel is cheaper to
resample). Resampling uses soxr at "HQ" (20-bit precision, more than 16-bit output needs); the block reader
uses soxr's streaming resampler, which gives exactly the samples the whole-file reader gives, in bounded
memory. Anything libsndfile cannot decode raises `UserError` with one line naming the file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from .atomic import atomic_path
from .errors import UserError

SUPPORTED = "WAV (16/24/32-bit, float), FLAC, OGG/Vorbis, Opus, MP3, AIFF"
HINT = f"readable formats: {SUPPORTED}"
QUALITY = "HQ"
BLOCK_FRAMES = 65536

# libsndfile picks a format from the extension, but atomic_path writes to "<name>.tmp": say it explicitly.
_FORMATS = {".wav": "WAV", ".flac": "FLAC", ".aiff": "AIFF", ".aif": "AIFF"}


@dataclass(frozen=True)
class AudioInfo:
    """What a file's header says about its audio."""

    sample_rate: int
    channels: int
    frames: int
    duration: float
    format: str
    subtype: str


def _unreadable(path: str | os.PathLike, err: Exception) -> UserError:
    # error_string leaves out the path the message names anyway; libsndfile's text can span lines.
    reason = " ".join(str(getattr(err, "error_string", None) or err).split())
    return UserError(f"{path}: not an audio file libsndfile can read ({reason}); {HINT}")


def _open(path: str | os.PathLike) -> sf.SoundFile:
    if not Path(path).is_file():
        raise UserError(f"{path}: no such file")
    if Path(path).stat().st_size == 0:
        raise UserError(f"{path}: empty file (0 bytes)")
    try:
        f = sf.SoundFile(path)
    except (sf.SoundFileError, RuntimeError, TypeError) as e:
        raise _unreadable(path, e) from None
    if f.frames == 0:
        f.close()
        raise UserError(f"{path}: contains no audio samples")
    return f


def file_info(path: str | os.PathLike) -> AudioInfo:
    """Rate, channels, frames, duration and format of an audio file (from its header, without decoding)."""
    with _open(path) as f:
        return AudioInfo(f.samplerate, f.channels, f.frames, f.frames / f.samplerate, f.format, f.subtype)


def resample(audio: np.ndarray, rate: int, target_rate: int) -> np.ndarray:
    """Resample mono or (T, C) float audio from `rate` to `target_rate` with soxr; float32 out."""
    audio = np.asarray(audio, dtype=np.float32)
    if rate == target_rate:
        return audio
    return soxr.resample(audio, rate, target_rate, quality=QUALITY).astype(np.float32, copy=False)


def read_audio(path: str | os.PathLike, sample_rate: int | None = None) -> tuple[np.ndarray, int]:
    """Whole file -> (mono float32 audio (T,), rate); resampled to `sample_rate` when given."""
    with _open(path) as f:
        try:
            audio = f.read(dtype="float32", always_2d=True)
        except (sf.SoundFileError, RuntimeError) as e:
            raise _unreadable(path, e) from None
        rate = f.samplerate
    mono = audio.mean(axis=1, dtype=np.float32)
    if sample_rate is None:
        return mono, rate
    return resample(mono, rate, sample_rate), sample_rate


def iter_blocks(
    path: str | os.PathLike, sample_rate: int | None = None, block_frames: int = BLOCK_FRAMES
) -> Iterator[np.ndarray]:
    """Stream a file as mono float32 blocks (T,) at `sample_rate` (native when None), in bounded memory.

    The concatenated blocks equal `read_audio(path, sample_rate)[0]`; block lengths vary, none is empty.
    A decoding error part-way raises `UserError`.
    """
    with _open(path) as f:
        stream = None
        if sample_rate is not None and sample_rate != f.samplerate:
            stream = soxr.ResampleStream(f.samplerate, sample_rate, 1, dtype="float32", quality=QUALITY)
        while True:
            try:
                block = f.read(block_frames, dtype="float32", always_2d=True)
            except (sf.SoundFileError, RuntimeError) as e:
                raise _unreadable(path, e) from None
            last = len(block) < block_frames
            mono = block.mean(axis=1, dtype=np.float32)
            if stream is not None:
                mono = stream.resample_chunk(mono, last=last)
            if len(mono):
                yield mono
            if last:
                return


def write_wav(
    path: str | os.PathLike,
    audio: np.ndarray,
    rate: int,
    subtype: str | None = "PCM_16",
    format: str | None = None,
) -> Path:
    """Write (T,) or (T, C) audio atomically: floats (clipped to [-1, 1] for PCM) or int16/int32 samples.

    The format comes from the extension (.wav, .flac, .aiff) unless given (e.g. "OGG" with subtype "VORBIS");
    `subtype` must suit it: PCM_16/PCM_24/FLOAT for WAV, PCM_16/PCM_24 for FLAC, None for the default.
    """
    path = Path(path)
    if format is None:
        if path.suffix.lower() not in _FORMATS:
            raise ValueError(f"write_wav: cannot tell the format of {path}; pass format=")
        format = _FORMATS[path.suffix.lower()]
    with atomic_path(path, suffix=path.suffix) as tmp:
        sf.write(tmp, audio, rate, subtype=subtype, format=format)
    return path
