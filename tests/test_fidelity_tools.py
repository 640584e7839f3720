"""The fidelity tools' data baseline: excerpts of the data cut like renders are the recordings' own audio."""

import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from soundalike.dataset import Manifest
from soundalike.emphasis import decode, encode
from soundalike.quantize import Quantizer
from soundalike.slicing import make_params, slice_dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from bench_fidelity import data_excerpts

RATE = 8000


def test_data_excerpts_are_continuous_audio_of_one_recording_at_the_gain(tmp_path):
    """Excerpts longer than a chunk join overlapping chunks back into the recording's own samples."""
    raw = tmp_path / "raw"
    raw.mkdir()
    t = np.arange(60 * RATE) / RATE
    song = (0.4 * np.sin(2 * np.pi * (200 + 20 * t) * t)).astype(np.float32)  # never repeats itself
    sf.write(raw / "song.wav", song, RATE, subtype="FLOAT")
    data = tmp_path / "dataset"
    slice_dataset([raw], data, make_params(RATE, 4.0, 1.0, split="1,0,0", region_seconds=60.0), progress=False)
    manifest = Manifest.load(data)
    stored = song * np.float32(manifest.data["storage_scale"])  # what the chunk files hold
    paths = data_excerpts(data, tmp_path / "excerpts", count=3, seconds=10.0, seed=0)
    assert [p.name for p in paths] == ["excerpt-00.wav", "excerpt-01.wav", "excerpt-02.wav"]
    starts = set()
    for path in paths:
        x, rate = sf.read(path, dtype="float32")
        assert rate == RATE and len(x) == 10 * RATE
        y = x / np.float32(manifest.gain)
        # find where it lies in the recording: the sweep's samples match at one place only
        at = int(np.argmax(np.correlate(stored[:50 * RATE + 400], y[:400], "valid")))
        np.testing.assert_allclose(y, stored[at:at + len(y)], atol=2e-4)  # 16-bit chunk files
        starts.add(at)
    assert len(starts) == 3  # random places
    again = data_excerpts(data, tmp_path / "again", count=3, seconds=10.0, seed=0)
    assert all(np.array_equal(sf.read(a)[0], sf.read(b)[0]) for a, b in zip(paths, again))
    # through a representation: the same places, as a perfect model of those levels would render them
    q = Quantizer("mulaw", 256)
    coded = data_excerpts(data, tmp_path / "coded", count=3, seconds=10.0, seed=0, quantizer=q)
    for plain, through in zip(paths, coded):
        x, y = sf.read(plain, dtype="float32")[0], sf.read(through, dtype="float32")[0]
        np.testing.assert_array_equal(y, decode(encode(x, q), q)[0])
        assert 20 < 10 * np.log10(np.mean(x**2) / np.mean((y - x) ** 2)) < 60  # 8-bit noise, not silence
