"""Short-time spectra and log-mel spectrograms with numpy alone (no librosa / torchaudio dependency).

Long audio is processed in blocks of frames, so a ten-minute render never needs its whole STFT in memory.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

FLOOR_DB = -120.0  # what digital silence reads as, so every number stays finite (JSON has no -inf)


def hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    """Hz -> mel (HTK formula)."""
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def mel_to_hz(m: np.ndarray | float) -> np.ndarray:
    """Mel (HTK formula) -> Hz."""
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(
    rate: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None
) -> np.ndarray:
    """Triangular mel filters with unit peak, (n_mels, n_fft // 2 + 1)."""
    fmax = rate / 2 if fmax is None else min(fmax, rate / 2)
    bins = np.fft.rfftfreq(n_fft, 1.0 / rate)
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins[None, :] - lo) / (mid - lo)
    falling = (hi - bins[None, :]) / (hi - mid)
    fb = np.maximum(0.0, np.minimum(rising, falling))
    # A band narrower than one FFT bin would read as silence; give it its nearest bin instead.
    for i in np.flatnonzero(fb.sum(axis=1) == 0):
        fb[i, np.argmin(np.abs(bins - mid[i, 0]))] = 1.0
    return fb.astype(np.float32)


def stft_power(audio: np.ndarray, n_fft: int, hop: int, block: int = 2048) -> Iterator[np.ndarray]:
    """Hann-windowed power spectra of successive frames, (frames, bins), in blocks of up to `block` frames.

    Frames start at 0, hop, 2*hop, ...; audio shorter than one window is zero-padded to one frame.
    """
    x = np.asarray(audio, dtype=np.float32)
    assert x.ndim == 1, f"expected mono audio (samples,), got shape {x.shape}"
    if len(x) < n_fft:
        x = np.pad(x, (0, n_fft - len(x)))
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop]
    window = np.hanning(n_fft + 1)[:-1].astype(np.float32)  # periodic Hann: overlapping frames sum flat
    for start in range(0, len(frames), block):
        spec = np.fft.rfft(frames[start : start + block] * window, axis=1)
        yield (spec.real**2 + spec.imag**2).astype(np.float32)


def power_db(power: np.ndarray) -> np.ndarray:
    """Power -> decibels, floored at FLOOR_DB."""
    return np.maximum(10.0 * np.log10(np.maximum(power, 1e-30)), FLOOR_DB).astype(np.float32)


def log_mel(
    audio: np.ndarray,
    rate: int,
    n_mels: int = 64,
    n_fft: int = 1024,
    hop: int = 256,
    fmin: float = 0.0,
    fmax: float | None = None,
) -> np.ndarray:
    """Log-mel spectrogram in dB, (frames, n_mels); 0 dB is a full-scale sine's peak bin, roughly."""
    fb = mel_filterbank(rate, n_fft, n_mels, fmin, fmax)
    # Normalize so the level does not depend on n_fft: a full-scale sine's peak bin holds (sum(w) / 2)^2.
    scale = 4.0 / (np.hanning(n_fft + 1)[:-1].sum() ** 2)
    blocks = [power_db((p @ fb.T) * scale) for p in stft_power(audio, n_fft, hop)]
    return np.concatenate(blocks, axis=0)
