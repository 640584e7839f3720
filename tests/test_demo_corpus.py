"""The demo corpus: deterministic, 44.1 kHz stereo, unclipped, and musical (tuned harmonic peaks, not noise)."""

import json

import numpy as np
import pytest
import soundfile as sf

from soundalike.cli import main
from soundalike.demo_corpus import MARKER, SAMPLE_RATE, make_corpus, render_track


def _spectrum(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Welch power spectrum of a mono signal: (freqs, power)."""
    nfft = 32768
    frames = np.lib.stride_tricks.sliding_window_view(x, nfft)[:: nfft // 2] * np.hanning(nfft)
    return np.fft.rfftfreq(nfft, 1 / SAMPLE_RATE), (np.abs(np.fft.rfft(frames, axis=1)) ** 2).mean(axis=0)


def _flatness(x: np.ndarray) -> float:
    f, p = _spectrum(x)
    band = (f > 40) & (f < 8000)
    return float(np.exp(np.mean(np.log(p[band]))) / np.mean(p[band]))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    return out, make_corpus(out, minutes=0.2, seed=0, track_seconds=6.0, log=lambda _: None)


def test_render_is_deterministic_and_seeded():
    a, info = render_track(0, 0, 6.0)
    b, _ = render_track(0, 0, 6.0)
    c, _ = render_track(1, 0, 6.0)
    assert a.dtype == np.float32 and a.shape[1] == 2
    assert abs(len(a) / SAMPLE_RATE - info["seconds"]) < 1e-3
    assert np.array_equal(a, b)
    assert not np.array_equal(a[: len(c)], c[: len(a)])
    assert 90 <= info["bpm"] <= 110


def test_files_are_stereo_44k_unclipped_and_loud_enough(corpus):
    _, paths = corpus
    assert [p.name for p in paths] == ["track-01.flac", "track-02.wav"]
    for path in paths:
        info = sf.info(str(path))
        assert (info.samplerate, info.channels, info.subtype) == (44100, 2, "PCM_16")
        audio, _ = sf.read(str(path))
        assert np.abs(audio).max() < 0.95
        assert -20 < 20 * np.log10(np.sqrt(np.mean(audio**2))) < -10
        assert not np.array_equal(audio[:, 0], audio[:, 1])  # panned, not dual mono


def test_spectrum_has_tuned_harmonic_peaks_not_noise(corpus):
    _, paths = corpus
    x = sf.read(str(paths[0]))[0].mean(axis=1)
    noise = np.random.default_rng(0).standard_normal(len(x))
    assert _flatness(x) < 0.02
    assert _flatness(noise) > 0.5
    # The strongest peaks between 200 Hz and 1 kHz are notes: within a few cents of the A440 semitone grid.
    f, p = _spectrum(x)
    lp = np.log(p)
    k = np.flatnonzero((f > 200) & (f < 1000))
    local_max = k[(lp[k] > lp[k - 1]) & (lp[k] > lp[k + 1])]
    top = local_max[np.argsort(p[local_max])[-5:]]
    shift = 0.5 * (lp[top - 1] - lp[top + 1]) / (lp[top - 1] - 2 * lp[top] + lp[top + 1])  # parabolic peak
    semitones = 12 * np.log2((top + shift) * (f[1] - f[0]) / 440.0)
    assert np.abs(semitones - np.round(semitones)).max() < 0.1


def test_same_seed_gives_same_bytes(corpus, tmp_path):
    out, _ = corpus
    make_corpus(tmp_path, minutes=0.2, seed=0, track_seconds=6.0, log=lambda _: None)
    first = json.loads((out / MARKER).read_text())["tracks"]
    again = json.loads((tmp_path / MARKER).read_text())["tracks"]
    assert [t["sha256"] for t in first] == [t["sha256"] for t in again]


def test_cli_skips_a_finished_corpus_and_force_rebuilds(tmp_path, capsys):
    args = ["demo-corpus", "--out", str(tmp_path), "--minutes", "0.1", "--seed", "3"]
    assert main(args) == 0
    assert "wrote" in capsys.readouterr().out
    mtime = (tmp_path / "track-01.flac").stat().st_mtime_ns
    assert main(args) == 0
    assert "already" in capsys.readouterr().out
    assert (tmp_path / "track-01.flac").stat().st_mtime_ns == mtime
    assert main([*args, "--force"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert json.loads((tmp_path / MARKER).read_text())["params"]["seed"] == 3


def test_smaller_corpus_removes_the_tracks_it_no_longer_has(tmp_path):
    make_corpus(tmp_path, minutes=0.2, seed=0, track_seconds=6.0, log=lambda _: None)
    assert (tmp_path / "track-02.wav").exists()
    make_corpus(tmp_path, minutes=0.1, seed=0, track_seconds=6.0, log=lambda _: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == [MARKER, "track-01.flac"]


def test_cli_rejects_bad_minutes(tmp_path, capsys):
    assert main(["demo-corpus", "--out", str(tmp_path), "--minutes", "0"]) == 2
    assert "--minutes must be a positive number" in capsys.readouterr().err
