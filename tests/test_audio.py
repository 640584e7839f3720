"""Reading every format libsndfile writes here (with downmix and resampling), streaming, errors, write_wav."""

import numpy as np
import pytest
import soundfile as sf

from soundalike.audio import file_info, iter_blocks, read_audio, resample, write_wav
from soundalike.errors import UserError

FREQ = 440.0


def stereo_sine(rate: int, seconds: float = 1.0) -> np.ndarray:
    """(T, 2): left 0.5 and right 0.3 of a sine, so the mono downmix is 0.4 of it."""
    t = np.arange(int(rate * seconds)) / rate
    s = np.sin(2 * np.pi * FREQ * t)
    return np.stack([0.5 * s, 0.3 * s], axis=1).astype(np.float32)


def mono_sine(rate: int, n: int) -> np.ndarray:
    return 0.4 * np.sin(2 * np.pi * FREQ * np.arange(n) / rate)


LOSSLESS = [
    ("a.wav", "WAV", "PCM_16", 22050),
    ("a24.wav", "WAV", "PCM_24", 44100),
    ("af.wav", "WAV", "FLOAT", 48000),
    ("a.flac", "FLAC", "PCM_16", 44100),
    ("a.aiff", "AIFF", "PCM_16", 16000),
]
LOSSY = [
    ("a.ogg", "OGG", "VORBIS", 44100),
    ("a.opus", "OGG", "OPUS", 48000),  # Opus only takes 8/12/16/24/48 kHz
    ("a.mp3", "MP3", "MPEG_LAYER_III", 44100),
]


@pytest.mark.parametrize("name, fmt, subtype, rate", LOSSLESS)
def test_lossless_roundtrip_downmix_and_resample(tmp_path, name, fmt, subtype, rate):
    path = tmp_path / name
    sf.write(path, stereo_sine(rate), rate, format=fmt, subtype=subtype)
    info = file_info(path)
    assert (info.sample_rate, info.channels, info.frames, info.format) == (rate, 2, rate, fmt)
    assert info.duration == pytest.approx(1.0)

    audio, r = read_audio(path, 16000)
    assert r == 16000 and audio.dtype == np.float32 and audio.shape == (16000,)
    inner = slice(200, -200)  # the resampler's edges see the signal start from nothing
    np.testing.assert_allclose(audio[inner], mono_sine(16000, 16000)[inner], atol=2e-3)

    native, r = read_audio(path)
    assert r == rate and native.shape == (rate,)
    np.testing.assert_allclose(native, mono_sine(rate, rate), atol=1e-4)


@pytest.mark.parametrize("name, fmt, subtype, rate", LOSSY)
def test_lossy_formats_read_as_the_same_tone(tmp_path, name, fmt, subtype, rate):
    path = tmp_path / name
    sf.write(path, stereo_sine(rate), rate, format=fmt, subtype=subtype)
    assert file_info(path).channels == 2
    audio, _ = read_audio(path, 16000)
    # Encoders pad and shape the signal: check length, level and pitch, not samples.
    assert abs(len(audio) - 16000) < 1600
    inner = audio[2000:-2000]
    assert np.sqrt(np.mean(inner**2)) == pytest.approx(0.4 / np.sqrt(2), rel=0.15)
    spectrum = np.abs(np.fft.rfft(inner * np.hanning(len(inner))))
    assert np.argmax(spectrum) * 16000 / len(inner) == pytest.approx(FREQ, abs=10)


@pytest.mark.parametrize("target", [None, 16000, 8000, 48000])
def test_blocks_equal_whole_file(tmp_path, target):
    path = tmp_path / "n.wav"
    noise = np.random.default_rng(0).uniform(-0.5, 0.5, (44100 + 123, 3)).astype(np.float32)
    sf.write(path, noise, 44100, subtype="FLOAT")
    whole, _ = read_audio(path, target)
    blocks = list(iter_blocks(path, target, block_frames=1000))
    assert all(len(b) for b in blocks)
    np.testing.assert_allclose(np.concatenate(blocks), whole, atol=1e-6)
    if target is None:
        np.testing.assert_allclose(whole, noise.mean(axis=1), atol=1e-7)


def test_resample_length_and_identity():
    x = np.random.default_rng(1).standard_normal(4410).astype(np.float32)
    assert resample(x, 44100, 16000).shape == (1600,)
    assert resample(x, 16000, 16000) is not None and np.array_equal(resample(x, 16000, 16000), x)


def _corrupt_flac(path):
    sf.write(path, np.random.default_rng(0).standard_normal((40000, 2)) * 0.1, 16000)
    data = bytearray(path.read_bytes())
    data[3000:] = bytes(len(data) - 3000)  # header intact, frames destroyed
    path.write_bytes(bytes(data))


BAD = {
    "notes.wav": lambda p: p.write_text("this is not audio\n"),
    "empty.wav": lambda p: p.write_bytes(b""),
    "song.m4a": lambda p: p.write_bytes(b"\x00\x00\x00\x20ftypM4A \x00\x00\x02\x00M4A mp42isom" + bytes(500)),
    "song.aac": lambda p: p.write_bytes(b"\xff\xf1\x50\x80\x02\x1f\xfc" + bytes(300)),
    "noise.flac": lambda p: p.write_bytes(np.random.default_rng(0).bytes(4000)),
    "broken.flac": _corrupt_flac,
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_unreadable_files_raise_one_line_user_error(tmp_path, name):
    path = tmp_path / name
    BAD[name](path)
    for read in (lambda: read_audio(path, 16000), lambda: list(iter_blocks(path, 16000))):
        with pytest.raises(UserError) as e:
            read()
        msg = str(e.value)
        assert "\n" not in msg and str(path) in msg
        assert name == "empty.wav" or "FLAC" in msg  # names the formats that work


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        file_info(tmp_path / "nope.wav")


@pytest.mark.parametrize("name, subtype", [("o.wav", "PCM_16"), ("o.wav", "PCM_24"), ("o.wav", "FLOAT"),
                                           ("o.flac", "PCM_16")])
def test_write_wav_roundtrip_and_atomic(tmp_path, name, subtype):
    x = mono_sine(8000, 800).astype(np.float32)
    path = write_wav(tmp_path / "sub" / name, x, 8000, subtype=subtype)
    back, rate = sf.read(path, dtype="float32")
    assert rate == 8000 and sf.info(path).subtype == subtype
    np.testing.assert_allclose(back, x, atol=1e-4)
    assert sorted(p.name for p in path.parent.iterdir()) == [name]  # no temporary file left


def test_write_wav_clips_and_failed_write_leaves_nothing(tmp_path):
    path = write_wav(tmp_path / "c.wav", np.array([2.0, -2.0, 0.0], np.float32), 8000)
    assert sf.read(path, dtype="int16")[0].tolist() == [32767, -32768, 0]
    with pytest.raises(ValueError):
        write_wav(tmp_path / "bad.wav", np.zeros(10, np.float32), 8000, subtype="VORBIS")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.wav"]
