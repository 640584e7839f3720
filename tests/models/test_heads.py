"""The output heads (models/heads.py): proper distributions, draws that follow them, the min-p floor, the
16-bit units, and the fast samplers against the reference generators for every head and family."""

import math

import numpy as np
import pytest
import torch

from soundalike.config import load_config
from soundalike.errors import UserError
from soundalike.models import heads
from soundalike.models.heads import Head, controls
from soundalike.models.samplernn import SampleRNN
from soundalike.models.wavenet import WaveNet
from soundalike.quantize import Quantizer
from soundalike.sampling import Sampler, engine, generate, kernel, reference_generate
from soundalike.sampling.reference import NoiseStream
from tests.conftest import ROOT

# The smallest level counts each head takes, so that every level's probability can be summed.
SMALL = [("softmax", 32), ("coarse_fine", 512), ("logistic_mixture", 64)]
SIXTEEN_BIT = [("coarse_fine", 65536), ("logistic_mixture", 65536), ("softmax", 256)]


def head_with_params(kind: str, levels: int, batch: int = 3, dim: int = 12):
    """A head with random weights, random features z (batch, dim) and parameters (batch, n_params)."""
    torch.manual_seed(0)
    head = Head(kind, dim, levels, mixtures=3).double()
    z = torch.relu(torch.randn(batch, dim, dtype=torch.float64))
    params = torch.randn(batch, head.n_params, dtype=torch.float64)
    if kind == "logistic_mixture":  # scales of a few levels, so the discretization matters
        params[:, 6:] = math.log(4 / levels)
    return head, params, z


def all_probabilities(head: Head, params: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """(B, levels) probability of every level, from the head's NLL."""
    B, Q = params.shape[0], head.levels
    levels = torch.arange(Q).expand(B, Q)
    nll = head.nll(params[:, None].expand(B, Q, -1), z[:, None].expand(B, Q, -1), levels)
    return torch.exp(-nll.double())


@pytest.mark.parametrize("kind,levels", SMALL)
def test_nll_is_a_distribution_over_every_level(kind, levels):
    head, params, z = head_with_params(kind, levels)
    p = all_probabilities(head, params, z)
    torch.testing.assert_close(p.sum(dim=1), torch.ones(3, dtype=torch.float64), rtol=1e-4, atol=1e-4)
    assert (p > 0).all()


@pytest.mark.parametrize("kind,levels", SMALL)
def test_draws_follow_the_distribution(kind, levels):
    head, params, z = head_with_params(kind, levels, batch=1)
    n = 20000
    noise = NoiseStream(1, head.noise_width, 5, uniform=head.uniform).take(n)[0]  # n independent draws
    c = controls(torch.ones(n), torch.zeros(n))
    drawn = head.draw(params.expand(n, -1), z.expand(n, -1), noise, c)
    freq = torch.bincount(drawn, minlength=levels).double() / n
    p = all_probabilities(head, params, z)[0].detach()
    # Total variation distance between the empirical and the model's distribution: sampling error only (its
    # expectation, from the binomial's mean absolute deviation), and well below that to a shifted distribution.
    expected = 0.5 * torch.sqrt(2 * p * (1 - p) / (math.pi * n)).sum()
    assert 0.5 * (freq - p).abs().sum() < 1.25 * expected
    assert 0.5 * (freq - p.roll(1)).abs().sum() > 3 * expected


@pytest.mark.parametrize("kind,levels", SMALL)
def test_min_p_floor_cuts_the_improbable_levels(kind, levels):
    head, params, z = head_with_params(kind, levels, batch=1)
    n, min_p = 5000, 0.3
    noise = NoiseStream(1, head.noise_width, 6, uniform=head.uniform).take(n)[0]
    drawn = head.draw(params.expand(n, -1), z.expand(n, -1), noise, controls(torch.ones(n), torch.full((n,), min_p)))
    free = head.draw(params.expand(n, -1), z.expand(n, -1), noise, controls(torch.ones(n), torch.zeros(n)))
    p = all_probabilities(head, params, z)[0]
    if kind == "softmax":
        assert (p[drawn] >= min_p * p.max()).all()
    if kind == "logistic_mixture":  # one component's draws stay where its density is >= min_p of its peak
        assert drawn.unique().numel() < free.unique().numel()
    assert p[drawn].mean() > p[free].mean()  # the tail is cut: the draws are likelier on average


def test_logistic_floor_keeps_the_density_above_min_p_of_the_peak():
    """One component: u' = tail + (1 - 2 tail) u bounds the logistic to |x - mu| <= s * logit(1 - tail)."""
    levels, s, min_p = 65536, 0.01, 0.5
    head = Head("logistic_mixture", 4, levels, mixtures=1).double()
    params = torch.tensor([[0.0, 0.1, math.log(s)]], dtype=torch.float64).expand(4000, -1)
    noise = NoiseStream(1, head.noise_width, 1, uniform=1).take(4000)[0]
    x = (head.draw(params, torch.zeros(4000, 4), noise, controls(torch.ones(4000), torch.full((4000,), min_p)))
         - levels // 2) * 2 / levels
    tail = (1 - math.sqrt(1 - min_p)) / 2
    bound = s * math.log((1 - tail) / tail)
    assert (x - 0.1).abs().max() <= bound + 2 / levels
    assert (x - 0.1).abs().max() > 0.8 * bound
    density = 4 * torch.sigmoid((x - 0.1) / s) * (1 - torch.sigmoid((x - 0.1) / s))  # relative to the peak
    assert density.min() >= min_p - 0.01


def test_config_checks_the_head_against_the_levels():
    with pytest.raises(UserError, match="model.output: coarse_fine needs data.q_levels"):
        load_config(ROOT / "configs/demo.yaml", ["model.output=coarse_fine"])
    with pytest.raises(UserError, match="model.output: expected one of"):
        load_config(ROOT / "configs/demo.yaml", ["model.output=gauss"])
    with pytest.raises(UserError, match="model.mixtures"):
        load_config(ROOT / "configs/demo-mol.yaml", ["model.mixtures=0"])


def test_sixteen_bit_inputs_are_embedded_per_byte():
    m = SampleRNN(frame_sizes=[4, 2], dim=8, emb_size=4, q_levels=65536, output="coarse_fine")
    assert m.mlp.embedding.num_embeddings == 512 and m.mlp.input_tables().shape == (4, 512, 8)
    w = WaveNet(n_stacks=1, n_layers=2, residual_channels=4, dilation_channels=4, skip_channels=4,
                out_channels=4, q_levels=65536, output="logistic_mixture", mixtures=2)
    assert w.embedding.num_embeddings == 512 and w.out.out_channels == 6
    # level 0x1234's embedding: row 0x12 plus row 256 + 0x34
    e = w.embed(torch.tensor([0x1234]))
    torch.testing.assert_close(e[0], w.embedding.weight[0x12] + w.embedding.weight[256 + 0x34])


def test_sixteen_bit_unit():
    assert np.all(Quantizer("linear", 65536).log2_width16() == 0)
    assert np.allclose(Quantizer("linear", 256).log2_width16(), 8)
    w = Quantizer("mulaw", 256).log2_width16()
    assert w[128] < 4 and w[0] > 10  # fine bins near silence, coarse ones near full scale
    assert abs(np.exp2(w).sum() / 65536 - 1) < 0.02  # the bins tile full scale
    # a uniform model over 8-bit levels costs 16 bits at 16-bit resolution, like a uniform 16-bit one
    from soundalike.evaluate import marginal_entropy_bits
    levels = np.arange(256).repeat(10)
    assert marginal_entropy_bits(levels, 256, Quantizer("linear", 256).log2_width16()) == pytest.approx(16.0)


def families(kind: str, levels: int):
    torch.manual_seed(1)
    s = SampleRNN(frame_sizes=[4, 2], dim=16, emb_size=8, q_levels=levels, output=kind, mixtures=3)
    w = WaveNet(n_stacks=1, n_layers=3, residual_channels=8, dilation_channels=8, skip_channels=8,
                out_channels=8, q_levels=levels, output=kind, mixtures=3)
    return [s.double().eval(), w.double().eval()]


@pytest.mark.parametrize("kind,levels", SIXTEEN_BIT)
@pytest.mark.parametrize("min_p", [0.0, 0.2])
def test_fast_samplers_equal_the_reference_for_every_head(kind, levels, min_p):
    """float64: the compiled loops and the torch backends draw the reference generator's samples, for both
    families, with and without the floor, at two temperatures."""
    backends = ["torch"] + (["c"] if kernel.load() is not None else [])
    for model in families(kind, levels):
        n = 3 * model.lookback + 70 if isinstance(model, SampleRNN) else 150
        temps = torch.tensor([1.0, 0.3])
        ref = reference_generate(model, n, batch=2, temperature=temps, seed=9, min_p=min_p)
        assert len(ref[0].unique()) > 10  # not stuck on one level
        for backend in backends:
            assert torch.equal(generate(model, n, batch=2, temperature=temps, seed=9, backend=backend,
                                        min_p=min_p), ref), (type(model).__name__, backend)
        # the floor changes the draws (except where the noise alone decides)
        if min_p:
            assert not torch.equal(reference_generate(model, n, batch=2, temperature=temps, seed=9), ref)


@pytest.mark.parametrize("min_p", [0.0, 0.2])
def test_a_logit_bias_draws_the_same_samples_in_every_sampler(min_p):
    """A softmax head's logit bias (the level hold's tilt): the compiled loops, the numpy fallback and the torch
    backends draw the reference generator's samples for both families; a bias set mid-stream takes effect
    from the next top frame and resumes exactly."""
    backends = ["torch"] + (["c"] if kernel.load() is not None else [])
    torch.manual_seed(3)
    bias = torch.randn(2, 256, dtype=torch.float64) * 3  # per stream
    temps = torch.tensor([1.0, 0.5])
    for model in families("softmax", 256):
        sample_rnn = isinstance(model, SampleRNN)
        n = 3 * model.lookback + 70 if sample_rnn else 150
        ref = reference_generate(model, n, batch=2, temperature=temps, seed=9, min_p=min_p, bias=bias)
        assert not torch.equal(ref, reference_generate(model, n, batch=2, temperature=temps, seed=9, min_p=min_p))
        for backend in backends + (["numpy"] if sample_rnn else []):
            s = Sampler(model, 2, temps, seed=9, backend=backend, min_p=min_p)
            s.set_controls(bias=bias)
            assert torch.equal(s.generate(n), ref), (type(model).__name__, backend)
        # set after the first `hop` samples (a whole top frame), then resumed from a state taken later
        hop = model.frame_sizes[0] * model.frame_sizes[1] if sample_rnn else 1
        whole = Sampler(model, 2, temps, seed=9, min_p=min_p)
        a = whole.generate(hop)
        whole.set_controls(bias=bias)
        b = whole.generate(n - hop)
        first = Sampler(model, 2, temps, seed=9, min_p=min_p)
        c = first.generate(hop)
        first.set_controls(bias=bias)
        d = first.generate(40)
        second = Sampler(model, 2, 1.0, seed=0)
        second.load_state_dict(first.state_dict())
        assert torch.equal(torch.cat([c, d, second.generate(n - hop - 40)], dim=1), torch.cat([a, b], dim=1))
        assert not torch.equal(torch.cat([a, b], dim=1), ref)
        with pytest.raises(AssertionError, match="softmax"):
            Sampler(families("coarse_fine", 65536)[0], 2).set_controls(bias=torch.zeros(2, 65536))


def heard_echo(levels: torch.Tensor, amp: np.ndarray, decay: float, start: np.ndarray) -> np.ndarray:
    """The heard tilt's echo after `levels` (B, n), by its float32 recursion, one sample at a time."""
    echo, a = start.astype(np.float32), np.float32(decay)
    for q in levels.T.numpy():
        echo = amp[q] + a * echo
    return echo


@pytest.mark.parametrize("min_p", [0.0, 0.2])
def test_a_heard_tilt_draws_the_same_samples_in_every_sampler(min_p):
    """The heard tilt (the level hold's on emphasized models), beside a logit bias: the compiled loops, the numpy
    fallback and the torch backends draw the reference generator's samples for both families and carry the echo
    as its recursion does; the echo's start matters; set mid-stream and resumed from a state, the same again."""
    backends = ["torch"] + (["c"] if kernel.load() is not None else [])
    torch.manual_seed(5)
    bias = torch.randn(2, 256) * 2
    amp = Quantizer("mulaw", 256).dequantize(np.arange(256)).astype(np.float32)
    pull, start = torch.tensor([-60.0, -25.0]), np.array([0.4, -0.3])
    heard = heads.Heard(torch.from_numpy(amp), 0.85, 0.1, torch.from_numpy(start))
    temps = torch.tensor([1.0, 0.5])
    for model in families("softmax", 256):
        sample_rnn = isinstance(model, SampleRNN)
        hop = Sampler(model, 2).stepper.hop  # SampleRNN: a top frame
        n = hop * -(-(3 * model.lookback + 100) // hop)  # whole hops: the samplers draw no further than asked
        kw = {"batch": 2, "temperature": temps, "seed": 9, "min_p": min_p, "bias": bias}
        ref = reference_generate(model, n, pull=pull, heard=heard, **kw)
        assert len(ref[0].unique()) > 10
        assert not torch.equal(ref, reference_generate(model, n, **kw))
        other = heads.Heard(heard.amp, 0.85, 0.1, torch.tensor([-0.4, 0.3]))
        assert not torch.equal(ref, reference_generate(model, n, pull=pull, heard=other, **kw))
        for backend in backends + (["numpy"] if sample_rnn else []):
            s = Sampler(model, 2, temps, seed=9, backend=backend, min_p=min_p)
            s.set_heard(amp, 0.85, 0.1, start)
            s.set_controls(bias=bias, pull=pull)
            assert torch.equal(s.generate(n), ref), (type(model).__name__, backend)
            np.testing.assert_array_equal(s.heard.echo.numpy(), heard_echo(ref, amp, 0.85, start))
        # turned on after the first top frame, then resumed from a state taken later
        whole = Sampler(model, 2, temps, seed=9, min_p=min_p)
        a = whole.generate(hop)
        whole.set_heard(amp, 0.85, 0.1, start)
        whole.set_controls(pull=pull)
        b = whole.generate(n - hop)
        first = Sampler(model, 2, temps, seed=9, min_p=min_p)
        c = first.generate(hop)
        first.set_heard(amp, 0.85, 0.1, start)
        first.set_controls(pull=pull)
        d = first.generate(40)
        second = Sampler(model, 2, 1.0, seed=0)
        second.load_state_dict(first.state_dict())
        assert torch.equal(torch.cat([c, d, second.generate(n - hop - 40)], dim=1), torch.cat([a, b], dim=1))
        assert not torch.equal(b, Sampler(model, 2, temps, seed=9, min_p=min_p).generate(n)[:, hop:])
    with pytest.raises(AssertionError, match="softmax"):
        Sampler(families("coarse_fine", 65536)[0], 2).set_heard(np.zeros(65536), 0.85, 0.1, 0.0)


def test_a_heard_tilt_damps_the_lows_that_the_emphasized_tilt_leaves():
    """What the heard tilt is for: with the same negative strength, streams tilted on the heard amplitude come out
    quieter as heard (de-emphasized) than streams tilted on the emphasized amplitude, and with less of their
    energy in the lowest eighth of the band, which the emphasized tilt leaves as it was (a random model)."""
    model = families("softmax", 256)[0]
    amp = Quantizer("mulaw", 256).dequantize(np.arange(256)).astype(np.float32)
    shape = torch.from_numpy(np.minimum(amp ** 2, 0.1))

    def heard(**tilt) -> tuple[float, float]:  # level and low share in dB
        s = Sampler(model, 4, 1.0, seed=3)
        s.set_heard(amp, 0.85, 0.1, 0.0)
        s.set_controls(**tilt)
        y = amp[s.generate(4000).numpy()].astype(np.float64)
        x = np.zeros_like(y)
        for k in range(y.shape[1]):
            x[:, k] = y[:, k] + 0.85 * (x[:, k - 1] if k else 0)
        power = np.abs(np.fft.rfft(x, axis=1)) ** 2
        return 10 * math.log10(np.mean(x ** 2)), 10 * math.log10(power[:, :power.shape[1] // 8].sum() / power.sum())

    free, emphasized, tilted = heard(), heard(bias=-40 * shape.expand(4, -1)), heard(pull=-40.0)
    assert abs(emphasized[1] - free[1]) < 0.5 and tilted[1] < emphasized[1] - 2, (free, emphasized, tilted)
    assert tilted[0] < emphasized[0] < free[0] - 6, (free, emphasized, tilted)


@pytest.mark.parametrize("weights", ["bf16", "int8"])
@pytest.mark.parametrize("batch", [1, 3])  # the sparse per-stream products (1) and the dense ones (3)
def test_coarse_fine_compact_weights_compiled_equals_torch(weights, batch):
    if kernel.load() is None:
        pytest.skip("no C++ compiler")
    model = families("coarse_fine", 65536)[0]
    n = 2 * model.lookback + 9
    kw = {"temperature": [1.0, 0.3, 0.6][:batch], "seed": 4, "weights": weights, "min_p": 0.05}
    fast, fast_params = Sampler(model, batch, backend="c", **kw).generate(n, logits=True)
    emulated, emulated_params = Sampler(model, batch, backend="torch", **kw).generate(n, logits=True)
    assert torch.equal(fast, emulated)
    torch.testing.assert_close(fast_params, emulated_params, rtol=1e-12, atol=1e-12)
    rounded = engine.with_compact_weights(model, weights)
    assert torch.equal(fast, reference_generate(rounded, n, batch=batch, temperature=torch.tensor(kw["temperature"]),
                                                seed=4, min_p=0.05))


@pytest.mark.parametrize("kind,levels", SIXTEEN_BIT[:2])
def test_resume_mid_stream_with_a_sixteen_bit_head(kind, levels):
    model = families(kind, levels)[0]
    whole = Sampler(model, 2, 0.7, seed=2, min_p=0.1).generate(300)
    first = Sampler(model, 2, 0.7, seed=2, min_p=0.1)
    a = first.generate(123)
    second = Sampler(model, 2, 1.0, seed=0)
    second.load_state_dict(first.state_dict())
    assert torch.equal(torch.cat([a, second.generate(177)], dim=1), whole)


def test_heads_are_listed_in_the_error():
    with pytest.raises(UserError, match=", ".join(heads.HEADS)):
        heads.check("x", 1, 256)


@pytest.mark.parametrize("kind,levels", SMALL)
def test_targets_score_other_levels_than_the_inputs(kind, levels):
    """`targets` (training on noisy inputs): the NLL of the same parameters at the given levels, for both
    families; without it the window's own samples are the targets."""
    for model in families(kind, levels):
        x = torch.randint(0, levels, (2, model.lookback + 8))
        y = torch.randint(0, levels, (2, 8))
        params, _ = model(x)
        own, _ = model(x, nll=True)
        other, _ = model(x, nll=True, targets=y)
        if kind == "softmax":  # the logits' log-probability at the targets
            expect = -torch.log_softmax(params.double(), dim=-1).gather(2, y[..., None])[..., 0]
            torch.testing.assert_close(other.double(), expect, rtol=1e-5, atol=1e-5)
        same, _ = model(x, nll=True, targets=x[:, model.lookback:])
        torch.testing.assert_close(same, own)
        assert not torch.allclose(other, own)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graphs_take_a_logit_bias_that_comes_changes_and_goes():
    """The CUDA-graph paths recapture when a bias comes or goes and read a changed one: the same samples as
    the eager torch backend, for both families."""
    torch.manual_seed(4)
    biases = [torch.randn(2, 256) * 3, torch.randn(2, 256) * 3, torch.zeros(2, 0)]
    amp = Quantizer("mulaw", 256).dequantize(np.arange(256)).astype(np.float32)
    for model in families("softmax", 256):
        model = model.float().cuda()
        hop = model.frame_sizes[0] * model.frame_sizes[1] if isinstance(model, SampleRNN) else 1
        outs, echoes = [], []
        for backend in ("torch", "graph"):
            s = Sampler(model, 2, [1.0, 0.5], seed=6, backend=backend, device_noise=True)
            parts = [s.generate(5 * hop + 40)]
            for bias in biases:
                s.set_controls(bias=bias)
                parts.append(s.generate(5 * hop + 40))
            s.set_heard(amp, 0.85, 0.1, [0.2, -0.1])  # and a heard tilt, whose echo the graph carries
            for pull in ([-30.0, -10.0], [-5.0, 0.0]):
                s.set_controls(pull=pull)
                parts.append(s.generate(5 * hop + 40))
            outs.append(torch.cat(parts, dim=1))
            echoes.append(s.heard.echo.cpu())
        assert torch.equal(outs[1], outs[0]), type(model).__name__
        assert torch.equal(echoes[1], echoes[0]), type(model).__name__
        assert len(outs[0].unique()) > 10
