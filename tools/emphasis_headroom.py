"""How a dataset fares under pre-emphasis: how often the emphasized signal leaves [-1, 1], and the quantization
noise of each way to store it, after de-emphasis, against the signal (whole band and by band).

    .venv/bin/python tools/emphasis_headroom.py data/demo/dataset [--a 0.85] [--levels 256] [--kind mulaw]

Every chunk of every split at the dataset's gain, as the loader sees it. Rows: `plain` (no emphasis),
`clip` (emphasize, quantize clipping at +-1), `scaled` (emphasize, divide by 1 + a, which bounds it by the
peak; multiply back after dequantizing). SNR in dB: signal power over the power of (audio after the round
trip - audio), summed over the whole dataset; by band from 1024-sample Hann frames.
"""

from __future__ import annotations

import argparse

import numpy as np
import soundfile as sf

from soundalike.dataset import Manifest
from soundalike.emphasis import Emphasis
from soundalike.quantize import Quantizer

FRAME = 1024
BANDS_HZ = [(0, 500), (500, 2000), (2000, 4000), (4000, 8000)]


def band_power(x: np.ndarray) -> np.ndarray:
    """(n,) -> (FRAME // 2 + 1,) power spectrum summed over Hann frames (hop FRAME // 2)."""
    if len(x) < FRAME:
        return np.zeros(FRAME // 2 + 1)
    frames = np.lib.stride_tricks.sliding_window_view(x, FRAME)[:: FRAME // 2] * np.hanning(FRAME)
    return np.square(np.abs(np.fft.rfft(frames, axis=-1))).sum(axis=0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dataset")
    p.add_argument("--a", type=float, default=0.85)
    p.add_argument("--kind", default="mulaw")
    p.add_argument("--levels", type=int, default=256)
    args = p.parse_args()
    m = Manifest.load(args.dataset)
    q, e = Quantizer(args.kind, args.levels), Emphasis(args.a)
    ways = ("plain", "clip", "scaled")
    sig, err = np.zeros(FRAME // 2 + 1), {w: np.zeros(FRAME // 2 + 1) for w in ways}
    sig_total, err_total = 0.0, dict.fromkeys(ways, 0.0)
    n = over = chunks_over = 0
    peak_x = peak_y = 0.0
    for c in m.chunks:
        x = sf.read(c.path, dtype="float32")[0].astype(np.float64) * m.gain
        y, _ = e.emphasize(x)
        outside = np.abs(y) > 1
        n, over, chunks_over = n + len(x), over + int(outside.sum()), chunks_over + bool(outside.any())
        peak_x, peak_y = max(peak_x, float(np.abs(x).max())), max(peak_y, float(np.abs(y).max()))
        back = {
            "plain": q.dequantize(q.quantize(x)),
            "clip": e.deemphasize(q.dequantize(q.quantize(y)))[0],
            "scaled": e.deemphasize(q.dequantize(q.quantize(y / (1 + args.a))) * (1 + args.a))[0],
        }
        sig += band_power(x)
        sig_total += float(np.square(x).sum())
        for w in ways:
            err[w] += band_power(back[w] - x)
            err_total[w] += float(np.square(back[w] - x).sum())
    freqs = np.fft.rfftfreq(FRAME, 1 / m.sample_rate)
    print(f"{args.dataset}: {len(m.chunks)} chunks, {n / m.sample_rate / 3600:.3f} h, gain {m.gain:.3f}, "
          f"{args.kind}{args.levels}, a = {args.a:g}")
    print(f"peak |x| {peak_x:.3f}, peak |emphasized| {peak_y:.3f}; samples outside [-1, 1]: {over} "
          f"({over / n:.2e}); chunks with any: {chunks_over} of {len(m.chunks)}")
    bands = [(lo, hi) for lo, hi in BANDS_HZ if lo < m.sample_rate / 2]
    print(f"{'SNR dB':8} {'all':>7} " + " ".join(f"{f'{lo}-{hi} Hz':>12}" for lo, hi in bands))
    for w in ways:
        by_band = []
        for lo, hi in bands:
            sel = (freqs >= lo) & (freqs < hi)
            by_band.append(10 * np.log10(sig[sel].sum() / err[w][sel].sum()))
        print(f"{w:8} {10 * np.log10(sig_total / err_total[w]):7.1f} " + " ".join(f"{b:12.1f}" for b in by_band))


if __name__ == "__main__":
    main()
