"""Pre-emphasis and de-emphasis: against a plain per-sample loop, fed in pieces as whole (bit for bit), round
trips, decoding levels to audio, and the coefficient's checks."""

import numpy as np
import pytest

from soundalike.emphasis import Emphasis, check_coefficient, decode, last_output
from soundalike.errors import UserError
from soundalike.quantize import Quantizer

COEFFICIENTS = [0.85, 0.5, 0.03, 0.999, 0.0]


def reference(y: np.ndarray, a: float) -> np.ndarray:
    """De-emphasis one sample at a time, x[n] = y[n] + a*x[n-1], from x[-1] = 0."""
    x, prev = np.zeros_like(y), np.zeros(y.shape[:-1])
    for n in range(y.shape[-1]):
        prev = y[..., n] + a * prev
        x[..., n] = prev
    return x


def pieces(n: int, rng: np.random.Generator, most: int) -> list[slice]:
    """Cut range(n) into consecutive slices of random lengths in [0, most], empty ones included."""
    cuts, pos = [], 0
    while pos < n:
        step = int(rng.integers(0, most + 1))
        cuts.append(slice(pos, min(n, pos + step)))
        pos += step
    return cuts


@pytest.mark.parametrize("a", COEFFICIENTS)
def test_filters_match_the_per_sample_definition(a):
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, (3, 5000))
    e = Emphasis(a)
    y, last = e.emphasize(x)
    before = np.concatenate([np.zeros((3, 1)), x[:, :-1]], axis=1)
    np.testing.assert_array_equal(y, x - a * before)
    np.testing.assert_array_equal(last, x[:, -1])
    got, _ = e.deemphasize(y)
    np.testing.assert_allclose(got, reference(y, a), rtol=0, atol=1e-12)
    np.testing.assert_allclose(got, x, rtol=0, atol=1e-12)  # the inverse
    if a >= 0.5:
        assert np.abs(y).max() > 1.2  # not vacuous: emphasis changed the signal (uniform noise peaks ~ 1 + a)


@pytest.mark.parametrize("a", COEFFICIENTS)
def test_pieces_with_carried_state_give_the_whole_signal_bit_for_bit(a):
    rng = np.random.default_rng(2)
    x = rng.uniform(-1, 1, (2, 20000))
    e = Emphasis(a)
    whole_y, _ = e.emphasize(x)
    whole_x, _ = e.deemphasize(whole_y)
    ys, xs, es, ds = [], [], None, None
    for cut in pieces(x.shape[1], rng, 3 * e.span):  # pieces inside, across and over several sub-blocks
        y, es = e.emphasize(x[:, cut], es)
        back, ds = e.deemphasize(y, ds)
        ys.append(y)
        xs.append(back)
    np.testing.assert_array_equal(np.concatenate(ys, axis=1), whole_y)
    np.testing.assert_array_equal(np.concatenate(xs, axis=1), whole_x)
    assert ds.carry.shape == (2,) and ds.pending.shape == (2, 20000 % e.span if a else 0)


def test_last_output_is_the_last_sample_deemphasis_put_out():
    rng = np.random.default_rng(2)
    y = rng.uniform(-1, 1, (3, 5000))
    e = Emphasis(0.85)
    whole, _ = e.deemphasize(y)
    for cut in (e.span, e.span + 7, 4999):  # at a sub-block's end and inside one (with pending inputs)
        _, state = e.deemphasize(y[:, :cut])
        np.testing.assert_allclose(last_output(state, 0.85, 3), whole[:, cut - 1], rtol=1e-12, atol=1e-12)
    assert not last_output(None, 0.85, 2).any()


def test_decode_deemphasizes_and_clips_and_is_dequantize_when_off():
    rng = np.random.default_rng(4)
    levels = rng.integers(0, 256, (2, 3000))
    plain = Quantizer("mulaw", 256)
    audio, state = decode(levels, plain)
    assert state is None and audio.dtype == np.float32
    np.testing.assert_array_equal(audio, plain.dequantize(levels))

    q = Quantizer("mulaw", 256, 0.85)
    audio, state = decode(levels, q)
    want = reference(plain.dequantize(levels).astype(np.float64), 0.85)
    assert np.abs(want).max() > 1.5  # random levels de-emphasize past full scale: they must be clipped
    np.testing.assert_allclose(audio, np.clip(want, -1, 1).astype(np.float32), rtol=0, atol=1e-6)
    first, s = decode(levels[:, :1234], q)
    second, _ = decode(levels[:, 1234:], q, s)
    np.testing.assert_array_equal(np.concatenate([first, second], axis=1), audio)


def test_emphasized_quantized_audio_decodes_close_to_the_audio():
    t = np.arange(16000) / 16000
    x = 0.5 * np.sin(2 * np.pi * 220 * t) + 0.05 * np.sin(2 * np.pi * 5000 * t)
    q = Quantizer("mulaw", 256, 0.85)
    audio, _ = decode(q.quantize(Emphasis(0.85).emphasize(x)[0]), q)
    plain = Quantizer("mulaw", 256)
    err = np.abs(audio - x).max()
    assert err < 0.02 and err < np.abs(plain.dequantize(plain.quantize(x)) - x).max()


@pytest.mark.parametrize("bad", [1.0, -0.1, 1.5, float("nan"), float("inf"), True, "0.8"])
def test_bad_coefficients_are_user_errors_naming_the_key(bad):
    with pytest.raises(UserError, match=r"^data.pre_emphasis: must be at least 0 \(0: off\) and below 1, got "):
        check_coefficient(bad, "data.pre_emphasis")
    with pytest.raises(UserError, match=r"^quantization: pre_emphasis: must be at least 0"):
        Quantizer("mulaw", 256, bad)
