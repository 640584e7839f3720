"""Clip statistics and verdicts on synthesized examples of each case, Fréchet distance, `soundalike stats`."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import soundfile as sf

from soundalike import cli
from soundalike.spectrogram import log_mel, mel_filterbank
from soundalike.stats import FrameGaussian, clip_stats, frame_features, frechet_distance, reference

RATE = 16000


def pluck(freq: float, seconds: float, rate: int = RATE, decay: float = 4.0) -> np.ndarray:
    """A plucked harmonic note: six partials, a 5 ms attack, exponential decay."""
    t = np.arange(int(seconds * rate)) / rate
    tone = sum(0.6**k * np.sin(2 * np.pi * freq * (k + 1) * t + k) for k in range(6))
    return tone * np.exp(-decay * t) * np.minimum(1.0, t / 0.005)


def music(seconds: float, rate: int = RATE, seed: int = 0) -> np.ndarray:
    """Plucked notes of varying pitch and length over a kick / hi-hat beat, (samples,) float32."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    out = np.zeros(n + 2 * rate)
    scale = [220, 247, 262, 294, 330, 349, 392, 440, 494, 523]
    t = 0.0
    while t < seconds:
        length = float(rng.choice([0.25, 0.5, 0.75]))
        note = pluck(float(rng.choice(scale)), length + 0.5, rate)
        out[int(t * rate):int(t * rate) + len(note)] += 0.3 * note
        t += length
    tk = np.arange(int(0.25 * rate)) / rate
    kick = np.sin(2 * np.pi * (50 + 100 * np.exp(-30 * tk)) * tk) * np.exp(-12 * tk)
    th = tk[:int(0.08 * rate)]
    for k, beat in enumerate(np.arange(0, seconds, 0.5)):
        i = int(beat * rate)
        hit = kick if k % 2 == 0 else 0.3 * rng.standard_normal(len(th)) * np.exp(-60 * th)  # kick, hi-hat
        out[i:i + len(hit)] += 0.4 * hit
    return (0.8 * out[:n]).astype(np.float32)


def riff(seconds: float, rate: int = RATE, period: float = 0.6) -> np.ndarray:
    """One 0.6 s three-note riff repeated for the whole clip: a model stuck in a loop."""
    one = np.zeros(int(period * rate))
    for j, f in enumerate([330, 440, 392]):
        i = int(j * period / 3 * rate)
        note = pluck(f, period / 3, rate, decay=8)[:len(one) - i]
        one[i:i + len(note)] += 0.4 * note
    return np.tile(one, math.ceil(seconds / period))[:int(seconds * rate)].astype(np.float32)


def white(seconds: float, rate: int = RATE, seed: int = 0, level: float = 0.2) -> np.ndarray:
    return (level * np.random.default_rng(seed).standard_normal(int(seconds * rate))).astype(np.float32)


def pink(seconds: float, rate: int = RATE, seed: int = 0) -> np.ndarray:
    spec = np.fft.rfft(np.random.default_rng(seed).standard_normal(int(seconds * rate)))
    spec[1:] /= np.sqrt(np.arange(1, len(spec)))
    x = np.fft.irfft(spec)
    return (0.1 * x / x.std()).astype(np.float32)


def tone(seconds: float, rate: int = RATE) -> np.ndarray:
    return (0.5 * np.sin(2 * np.pi * 440 * np.arange(int(seconds * rate)) / rate)).astype(np.float32)


def clipped(seconds: float, rate: int = RATE) -> np.ndarray:
    """A 110 Hz sine driven 12 dB into the rails: square-ish, flat tops."""
    t = np.arange(int(seconds * rate)) / rate
    return np.clip(4.0 * np.sin(2 * np.pi * 110 * t), -1.0, 1.0).astype(np.float32)


CASES = {
    "white noise": (lambda: white(6.0), "noise"),
    "pink noise": (lambda: pink(6.0), "noise"),
    "digital silence": (lambda: np.zeros(6 * RATE, np.float32), "silent"),
    "clipped square-ish": (lambda: clipped(6.0), "clipped"),
    "stuck riff": (lambda: riff(6.0), "stuck"),
    "held tone": (lambda: tone(6.0), "stuck"),
    "music": (lambda: music(6.0), "ok"),
    "other music": (lambda: music(6.0, seed=1), "ok"),
    "quiet music": (lambda: 0.05 * music(6.0, seed=2), "ok"),
}


@pytest.mark.parametrize("name", CASES)
def test_verdict_on_synthesized_examples(name):
    make, expected = CASES[name]
    s = clip_stats(make(), RATE)
    assert s["verdict"] == expected, (name, s["why"], {k: v for k, v in s.items() if k != "loudness_db"})


def test_verdict_on_demo_corpus_audio():
    demo = pytest.importorskip("soundalike.demo_corpus")
    audio, _ = demo.render_track(3, 0, 12.0)
    assert clip_stats(audio, demo.SAMPLE_RATE)["verdict"] == "ok"  # stereo at 44.1 kHz, whole
    mono = audio.mean(axis=1) if audio.ndim == 2 else audio
    window = 6 * demo.SAMPLE_RATE  # dataset-chunk-sized pieces, half overlapping
    for start in range(0, len(mono) - window + 1, window // 2):
        s = clip_stats(mono[start:start + window], demo.SAMPLE_RATE)
        assert s["verdict"] == "ok", (start, s["why"])


def test_stats_values_are_plain_finite_json():
    s = clip_stats(music(3.0) + 0.01, RATE)
    text = json.dumps(s, allow_nan=False)  # no inf / nan anywhere, digital silence included
    json.dumps(clip_stats(np.zeros(RATE, np.float32), RATE), allow_nan=False)
    json.dumps(clip_stats(np.full(RATE, np.nan, np.float32), RATE), allow_nan=False)
    assert json.loads(text) == s
    assert s["seconds"] == 3.0 and s["dc_offset"] == pytest.approx(0.01, abs=1e-3)
    assert len(s["loudness_db"]) == 6 and s["loudness_step_s"] == 0.5
    assert 200 < s["centroid_hz"] < 2000 and 0 < s["zcr"] < 0.2
    noise = clip_stats(white(2.0), RATE)
    assert noise["flatness"] == pytest.approx(0.56, abs=0.03)  # exp(-Euler gamma): the white-noise value
    assert noise["zcr"] == pytest.approx(0.5, abs=0.02)
    assert noise["rms_db"] == pytest.approx(20 * math.log10(0.2), abs=0.2)


def test_stereo_empty_and_short_clips():
    stereo = np.stack([music(2.0), music(2.0)], axis=1)
    assert clip_stats(stereo, RATE)["verdict"] == "ok"
    assert clip_stats(np.zeros(0, np.float32), RATE)["verdict"] == "silent"
    assert clip_stats(white(0.01), RATE)["seconds"] == 0.01  # shorter than one analysis window


def test_clipping_counts_flat_tops_not_loud_peaks():
    t = np.arange(2 * RATE) / RATE
    assert clip_stats(np.sin(2 * np.pi * 440 * t).astype(np.float32), RATE)["clip_fraction"] == 0.0
    # A mu-law model's top level is below 1.0: its flat tops there count all the same.
    x = np.clip(4.0 * np.sin(2 * np.pi * 110 * t), -1.0, 0.958).astype(np.float32)
    assert clip_stats(x, RATE)["clip_fraction"] > 0.5


def test_log_mel_levels_and_filterbank():
    fb = mel_filterbank(8000, 256, 64)
    assert fb.shape == (64, 129) and (fb.sum(axis=1) > 0).all()  # no empty band at a coarse FFT
    t = np.arange(RATE) / RATE
    mel = log_mel(np.sin(2 * np.pi * 1000 * t), RATE)  # (frames, 64)
    assert mel.shape[1] == 64
    assert mel.max() == pytest.approx(0.0, abs=1.5)  # full-scale sine reads about 0 dB
    assert np.isfinite(log_mel(np.zeros(100), RATE)).all()


def test_frechet_distance_matches_the_closed_form():
    rng = np.random.default_rng(0)
    a = FrameGaussian.of(rng.standard_normal((20000, 4)) * [1, 2, 3, 4] + [0, 1, 0, 0])
    b = FrameGaussian.of(rng.standard_normal((20000, 4)) * [2, 2, 1, 4])
    # Diagonal covariances: |mu_a - mu_b|^2 + sum (sigma_a - sigma_b)^2.
    sigma_a, sigma_b = np.sqrt(np.diag(a.cov)), np.sqrt(np.diag(b.cov))
    expected = float(np.sum((a.mean - b.mean) ** 2) + np.sum((sigma_a - sigma_b) ** 2))
    assert frechet_distance(a, b) == pytest.approx(expected, rel=0.02)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    # Rank-deficient covariances (digital silence, constant bands) stay finite and non-negative.
    flat = FrameGaussian.of(np.zeros((100, 4)) + [1, 2, 3, 4])
    assert frechet_distance(flat, a) > 0 and math.isfinite(frechet_distance(a, flat))


def test_frame_gaussian_sums_add_up():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((50, 3)), rng.standard_normal((70, 3))
    both = FrameGaussian.of(x) + FrameGaussian.of(y)
    np.testing.assert_allclose(both.cov, np.cov(np.concatenate([x, y]).T), atol=1e-12)


def make_dataset(root, rate: int = RATE, seconds: float = 6.0, train: int = 6, valid: int = 3):
    """A sliced dataset folder per docs/CONTRACTS.md, chunks of generated music."""
    chunks = []
    for split, count in (("train", train), ("valid", valid)):
        (root / "chunks" / split).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            name = f"chunks/{split}/0a1b2c3d-{i + 100 * (split == 'valid'):06d}.wav"
            audio = music(seconds, rate, seed=i + 100 * (split == "valid"))
            sf.write(root / name, audio, rate, subtype="PCM_16")
            chunks.append({"file": name, "source": "x", "offset": 0.0, "samples": len(audio), "split": split})
    manifest = {"format": 1, "params": {"sample_rate": rate, "chunk_seconds": seconds}, "gain": 1.0,
                "chunks": chunks, "summary": {"hours": {s: n * seconds / 3600 for s, n in (("train", train),
                                                                                         ("valid", valid))}}}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("dataset"))


def test_frechet_anchors_order(dataset):
    ref = reference(dataset)
    d_music = ref.distances(FrameGaussian.of(frame_features(music(8.0, seed=7), RATE)))
    d_noise = ref.distances(FrameGaussian.of(frame_features(white(8.0, level=0.1), RATE)))
    d_riff = ref.distances(FrameGaussian.of(frame_features(riff(8.0), RATE)))
    assert d_music["train_split"] < d_music["generated"] < d_riff["generated"] < d_noise["generated"]
    # real-vs-real is near 0 on the scale that white noise sets
    assert d_music["train_split"] < 0.05 * d_music["white_noise"]
    assert d_noise["generated"] > 0.5 * d_music["white_noise"]


def test_stats_command_prints_a_table_and_writes_json(tmp_path, dataset, capsys):
    clips = tmp_path / "clips"
    clips.mkdir()
    sf.write(clips / "a.wav", music(3.0, seed=5), RATE)
    sf.write(clips / "b.flac", white(3.0), RATE)
    sf.write(clips / "c.wav", np.zeros(3 * 8000), 8000)
    out = tmp_path / "out" / "stats.json"
    assert cli.main(["stats", str(clips), "--reference", str(dataset), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "verdict" in printed and "noise" in printed and "silent" in printed and "Fréchet" in printed
    report = json.loads(out.read_text())
    assert [c["verdict"] for c in report["clips"]] == ["ok", "noise", "silent"]
    assert report["verdicts"]["ok"] == 1
    f = report["frechet"]
    assert f["train_split"] < f["generated"] < f["white_noise"]


def test_stats_command_reports_user_errors(tmp_path, capsys):
    assert cli.main(["stats", str(tmp_path / "missing.wav")]) == 2
    (tmp_path / "bad.wav").write_text("not audio")
    assert cli.main(["stats", str(tmp_path / "bad.wav")]) == 2
    assert cli.main(["stats", str(tmp_path), "--reference", str(tmp_path)]) == 2  # no manifest.json
    errors = capsys.readouterr().err
    assert errors.count("soundalike stats: error:") == 3 and "manifest.json" in errors
