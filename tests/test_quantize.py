"""Linear and mu-law quantization: exact round trips, silence, clipping, monotonicity."""

import numpy as np
import pytest

from soundalike.errors import UserError
from soundalike.quantize import Quantizer

CASES = [(kind, levels) for kind in ("linear", "mulaw") for levels in (2, 3, 256, 1024, 65536)]


@pytest.mark.parametrize("kind, levels", CASES)
def test_every_level_round_trips(kind, levels):
    q = Quantizer(kind, levels)
    all_levels = np.arange(levels)
    np.testing.assert_array_equal(q.quantize(q.dequantize(all_levels)), all_levels)


@pytest.mark.parametrize("kind, levels", CASES)
def test_silence_is_the_middle_level_and_back_to_zero(kind, levels):
    q = Quantizer(kind, levels)
    assert q.silence == levels // 2
    assert q.quantize(np.zeros(4)).tolist() == [levels // 2] * 4
    assert q.dequantize(np.array([levels // 2]))[0] == 0.0


@pytest.mark.parametrize("kind, levels", CASES)
def test_clipping_and_range(kind, levels):
    q = Quantizer(kind, levels)
    assert q.quantize(np.array([5.0, 1.0, -1.0, -5.0, np.float32(1.0000001)])).tolist() == [
        levels - 1, levels - 1, 0, 0, levels - 1]
    x = q.dequantize(np.arange(levels))
    assert x.dtype == np.float32 and x.min() >= -1.0 and x.max() <= 1.0
    assert q.quantize(np.zeros(1)).dtype == np.int64


@pytest.mark.parametrize("kind, levels", CASES)
def test_monotonic(kind, levels):
    q = Quantizer(kind, levels)
    x = np.linspace(-1.2, 1.2, 20001)
    assert np.all(np.diff(q.quantize(x)) >= 0)
    assert np.all(np.diff(q.dequantize(np.arange(levels)).astype(np.float64)) > 0)
    grid = q.grid(np.arange(levels))
    np.testing.assert_allclose(np.diff(grid), 2.0 / levels)  # what the model is fed is uniform


def test_mulaw_spends_levels_on_quiet_audio():
    lin, mu = Quantizer("linear", 256), Quantizer("mulaw", 256)
    quiet = np.linspace(-0.01, 0.01, 1001)
    assert len(np.unique(mu.quantize(quiet))) > 10 * len(np.unique(lin.quantize(quiet)))


def test_quantize_preserves_shape_and_dtype_choice():
    q = Quantizer("mulaw", 256)
    assert q.quantize(np.zeros((2, 3, 4))).shape == (2, 3, 4)
    assert q.dtype == np.uint8 and Quantizer("linear", 65536).dtype == np.uint16


@pytest.mark.parametrize("kind, levels", [("alaw", 256), ("mulaw", 1), ("linear", 65537)])
def test_bad_settings_are_user_errors(kind, levels):
    with pytest.raises(UserError):
        Quantizer(kind, levels)
