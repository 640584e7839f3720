"""Clip statistics and verdicts on synthesized examples of each case, Fréchet distance, `soundalike stats`."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import soundfile as sf

from soundalike import cli
from soundalike.spectrogram import log_mel, mel_filterbank
from soundalike.stats import (
    CRACKLE_RATE,
    FrameGaussian,
    Reference,
    clip_stats,
    frame_features,
    frechet_distance,
    judge,
    noise_floor,
    reference,
)

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
    low = clip_stats(white(2.0, rate=1000), 1000)  # no band of the noise floor fits under 500 Hz
    assert low["floor_db"] == {} and low["verdict"] == "noise"


def test_clipping_counts_flat_tops_not_loud_peaks():
    t = np.arange(2 * RATE) / RATE
    assert clip_stats(np.sin(2 * np.pi * 440 * t).astype(np.float32), RATE)["clip_fraction"] == 0.0
    # A mu-law model's top level is below 1.0: its flat tops there count all the same.
    x = np.clip(4.0 * np.sin(2 * np.pi * 110 * t), -1.0, 0.958).astype(np.float32)
    assert clip_stats(x, RATE)["clip_fraction"] > 0.5


def chord(seconds: float, rate: int) -> np.ndarray:
    """Clean steady tones, all below 1 kHz: nothing of them in the bands the noise floor reads."""
    t = np.arange(int(seconds * rate)) / rate
    return sum(0.2 * np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6, 440.0))


@pytest.mark.parametrize("rate", [16000, 44100])
def test_noise_floor_reads_white_noise_at_its_band_level(rate):
    rng = np.random.default_rng(0)
    clean = noise_floor(chord(6.0, rate), rate)
    assert list(clean) == ["1-2k", "2-4k", "4-8k"] + ["8-16k"] * (rate >= 32000)
    for level_db in (-40.0, -60.0):
        sigma = 10 ** (level_db / 20)
        floor = noise_floor(chord(6.0, rate) + sigma * rng.standard_normal(6 * rate), rate)
        for band, value in floor.items():
            lo, hi = (float(v) * 1000 for v in band[:-1].split("-"))
            # White noise spreads its power evenly over 0 .. rate / 2: a band holds its share.
            expected = level_db + 10 * math.log10((hi - lo) / (rate / 2))
            assert value == pytest.approx(expected, abs=0.5), (band, level_db)
            assert clean[band] < expected - 30, band  # the tones alone read far lower


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
    assert "hiss dB" in printed and "clicks/s" in printed and "noise floor 1-2k" in printed
    report = json.loads(out.read_text())
    assert [c["verdict"] for c in report["clips"]] == ["ok", "noise", "silent"]
    assert report["verdicts"]["ok"] == 1
    assert list(report["clips"][0]["floor_db"]) == ["1-2k", "2-4k", "4-8k"]
    assert list(report["clips"][2]["floor_db"]) == ["1-2k", "2-4k"]  # 8 kHz: nothing above 4 kHz
    assert report["levels"]["chunks"] == 3 and set(report["levels"]["chunk_ranges"]) == {
        "level_db", "dc_diff", "hiss_db"}
    f = report["frechet"]
    assert f["train_split"] < f["generated"] < f["white_noise"]
    assert cli.main(["stats", str(clips / "a.wav")]) == 0
    printed = capsys.readouterr().out
    assert "not judged without --reference" in printed


def test_stats_command_reports_user_errors(tmp_path, capsys):
    assert cli.main(["stats", str(tmp_path / "missing.wav")]) == 2
    (tmp_path / "bad.wav").write_text("not audio")
    assert cli.main(["stats", str(tmp_path / "bad.wav")]) == 2
    assert cli.main(["stats", str(tmp_path), "--reference", str(tmp_path)]) == 2  # no manifest.json
    errors = capsys.readouterr().err
    assert errors.count("soundalike stats: error:") == 3 and "manifest.json" in errors


def with_clicks(x: np.ndarray, per_s: float, amplitude: float = 0.1, seed: int = 0) -> np.ndarray:
    """Single-sample clicks of either sign at random places, per_s a second on average."""
    rng = np.random.default_rng(seed)
    y = x.copy()
    where = rng.choice(len(x), int(per_s * len(x) / RATE), replace=False)
    y[where] += amplitude * rng.choice([-1.0, 1.0], len(where)).astype(np.float32)
    return y


def hissy(x: np.ndarray, level_db: float) -> np.ndarray:
    return (x + 10 ** (level_db / 20) * np.random.default_rng(3).standard_normal(len(x))).astype(np.float32)


FAULTS = {  # a music-like clip like the dataset's chunks, with one fault each; (verdict with, without the data)
    "clean": (lambda x: x, "ok", "ok"),
    "DC +0.1": (lambda x: x + np.float32(0.1), "dc", "ok"),
    "8 dB louder": (lambda x: x * np.float32(10 ** (8 / 20)), "level", "ok"),
    "15 dB quieter, a soft passage": (lambda x: x * np.float32(10 ** (-15 / 20)), "ok", "ok"),
    "25 dB quieter": (lambda x: x * np.float32(10 ** (-25 / 20)), "level", "ok"),
    "20 clicks/s": (lambda x: with_clicks(x, 20), "crackle", "crackle"),
    "hiss at -50 dBFS": (lambda x: hissy(x, -50), "hiss", "ok"),
}


@pytest.mark.parametrize("name", FAULTS)
def test_faults_against_the_data(name, dataset):
    fault, with_data, without = FAULTS[name]
    levels = reference(dataset).levels
    x = fault(music(6.0, seed=7))
    s = clip_stats(x, RATE, levels)
    assert s["verdict"] == with_data, (name, s["why"])
    alone = clip_stats(x, RATE)  # no data: dc, level and hiss are not judged
    assert alone["verdict"] == without, (name, alone["why"])
    assert alone["level_db"] is alone["dc_diff"] is alone["hiss_db"] is None
    assert judge(alone, levels) == s  # statistics cached without the data are judged the same later


def test_fault_figures(dataset):
    levels = reference(dataset).levels
    clean = clip_stats(music(6.0, seed=7), RATE, levels)
    assert abs(clean["level_db"]) < 1 and abs(clean["dc_diff"]) < 1e-3 and clean["crackle_per_s"] == 0
    loud = clip_stats(music(6.0, seed=7) * np.float32(10 ** (8 / 20)), RATE, levels)
    assert loud["level_db"] == pytest.approx(clean["level_db"] + 8, abs=0.05)
    clicks = clip_stats(with_clicks(music(6.0, seed=7), 20), RATE)
    assert CRACKLE_RATE < clicks["crackle_per_s"] <= 20
    # Noise of RMS -50 dBFS holds 1/4 of its power in 2-4 kHz (-56 dBFS) and 1/2 in 4-8 kHz (-53), well above
    # this clip's own floor there; the data's floor counts from HISS_FLOOR_DB (-80) up.
    hiss = clip_stats(hissy(music(6.0, seed=7), -50), RATE, levels)
    expected = {band: noise - max(levels.floor[band], -80.0) for band, noise in (("2-4k", -56.0), ("4-8k", -53.0))}
    assert levels.floor["4-8k"] < -80 and expected["2-4k"] > 3
    for band, diff in expected.items():
        assert hiss["hiss_bands_db"][band] == pytest.approx(diff, abs=1), band
    assert hiss["hiss_db"] == pytest.approx(np.mean(list(expected.values())), abs=1)


def test_demo_corpus_chunks_stay_ok_with_and_without_the_data(tmp_path):
    """The demo corpus has clicks of its own (steps where a note is cut), quiet intros and clean silence."""
    demo = pytest.importorskip("soundalike.demo_corpus")
    chunks = []
    for seed in (3, 4):
        audio, _ = demo.render_track(seed, 0, 20.0)
        mono = audio.mean(axis=1) if audio.ndim == 2 else audio
        window = 6 * demo.SAMPLE_RATE
        chunks += [mono[i:i + window] for i in range(0, len(mono) - window + 1, window // 2)]
    root = tmp_path / "demo"
    for i, chunk in enumerate(chunks):
        (root / "chunks" / "valid").mkdir(parents=True, exist_ok=True)
        sf.write(root / "chunks" / "valid" / f"c-{i:06d}.wav", chunk, demo.SAMPLE_RATE, subtype="PCM_16")
    manifest = {"format": 1, "params": {"sample_rate": demo.SAMPLE_RATE}, "gain": 1.0, "summary": {},
                "chunks": [{"file": f"chunks/valid/c-{i:06d}.wav", "source": "x", "offset": 0.0,
                            "samples": len(c), "split": "valid"} for i, c in enumerate(chunks)]}
    (root / "manifest.json").write_text(json.dumps(manifest))
    levels = reference(root).levels
    for i, chunk in enumerate(chunks):
        s = clip_stats(chunk, demo.SAMPLE_RATE, levels)
        assert s["verdict"] == "ok", (i, s["why"])
        assert s["crackle_per_s"] < CRACKLE_RATE / 2, i


def test_reference_saves_its_levels_and_loads_an_older_file(tmp_path, dataset):
    ref = reference(dataset)
    ref.save(tmp_path / "ref.npz")
    back = Reference.load(tmp_path / "ref.npz")
    assert back.levels.summary() == ref.levels.summary()
    np.testing.assert_array_equal(back.levels.floor_db, ref.levels.floor_db)
    # Format 1 (before the levels): the Fréchet sums load, the levels are None.
    np.savez(tmp_path / "old.npz", dataset=np.array(str(dataset)), **ref.valid.to_arrays("valid"),
             **ref.noise.to_arrays("noise"))
    old = Reference.load(tmp_path / "old.npz")
    assert old.levels is None and old.valid.n == ref.valid.n


def test_chunks_of_the_dataset_are_judged_as_stored(tmp_path, capsys):
    """With a gain of 1/4 (-12 dB) the stored chunks are louder than the data the model learns; they are still
    the data, while the same file elsewhere (a model's output) is judged at the gain."""
    dataset = make_dataset(tmp_path / "loud", train=1, valid=3)
    manifest = json.loads((dataset / "manifest.json").read_text())
    (dataset / "manifest.json").write_text(json.dumps({**manifest, "gain": 0.25}))
    chunk = dataset / "chunks" / "valid" / "0a1b2c3d-000100.wav"
    (tmp_path / "out").mkdir()
    copy = tmp_path / "out" / "copy.wav"
    copy.write_bytes(chunk.read_bytes())
    report = tmp_path / "report.json"
    assert cli.main(["stats", str(chunk), str(copy), "--reference", str(dataset), "--json", str(report)]) == 0
    clips = json.loads(report.read_text())["clips"]
    assert [c["verdict"] for c in clips] == ["ok", "level"]
    assert clips[1]["level_db"] == pytest.approx(clips[0]["level_db"] + 12.04, abs=0.05)


def test_clips_together_are_pooled_by_power_and_length(tmp_path, dataset, capsys):
    """Two clips 20 dB apart, one twice as long: together they are one recording's power, not a mean of dB."""
    from soundalike.stats import together

    loud, quiet = music(4.0, seed=5), music(2.0, seed=6) * np.float32(0.1)
    stats = [clip_stats(x, RATE, reference(dataset).levels) for x in (loud, quiet)]
    t = together(stats)
    power = (np.sum(loud.astype(np.float64) ** 2) + np.sum(quiet.astype(np.float64) ** 2)) / (len(loud) + len(quiet))
    assert t["seconds"] == 6.0 and t["rms_db"] == pytest.approx(10 * np.log10(power), abs=0.02)
    mean = (np.sum(loud, dtype=np.float64) + np.sum(quiet, dtype=np.float64)) / (len(loud) + len(quiet))
    assert t["dc_offset"] == pytest.approx(mean, abs=1e-5)
    # against the data: the same shift as each clip's own level_db, and above the mean of the clips' dB
    shift = stats[0]["rms_db"] - stats[0]["level_db"]
    assert t["level_db"] == pytest.approx(t["rms_db"] - shift, abs=0.02)
    assert t["level_db"] > np.mean([s["level_db"] for s in stats]) + 5
    assert together([clip_stats(loud, RATE)])["level_db"] is None and together([]) is None
    sf.write(tmp_path / "a.wav", loud, RATE)
    sf.write(tmp_path / "b.wav", quiet, RATE)
    out = tmp_path / "report.json"
    assert cli.main(["stats", str(tmp_path / "a.wav"), str(tmp_path / "b.wav"), "--reference", str(dataset),
                     "--json", str(out)]) == 0
    assert f"all clips together (6.0 s): RMS {t['rms_db']:.1f} dBFS, {t['level_db']:+.1f} dB" in capsys.readouterr().out
    assert json.loads(out.read_text())["together"]["level_db"] == pytest.approx(t["level_db"], abs=0.01)
