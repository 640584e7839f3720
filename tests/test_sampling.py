"""The fast sampling engine against the reference generator, and its streaming, resume and priming.

Exact equality of integer samples needs the two paths to agree on every argmax. They compute the same
logits in different orders (MKL vs the compiled loop), so in float32 a near-tie (top two perturbed logits
within ~1e-6) could flip a sample now and then; in float64 the logits agree to ~1e-15 and are rounded to
float32 before the noise is added, which makes a flip practically impossible. So equality tests run the
model and both engines in float64; float32 is checked against a teacher-forced forward pass (allclose).
"""

import dataclasses

import numpy as np
import pytest
import torch

from soundalike import models
from soundalike.config import load_config
from soundalike.models.heads import controls
from soundalike.sampling import Sampler, engine, generate, kernel, reference_generate
from soundalike.sampling.reference import NoiseStream
from tests.conftest import CONFIGS

SAMPLERNN_CONFIGS = [p for p in CONFIGS if load_config(p).model.family == "samplernn"]
# Low temperatures make the samples depend on the model rather than mostly on the noise (random weights).
TEMPS = [1.0, 0.05, 0.2]
BACKENDS = ["c", "numpy", "torch"]


def shipped(path, dim: int = 48, emb_size: int = 16, dtype=torch.float64) -> torch.nn.Module:
    """A shipped config's model with its structure (tiers, frame sizes, RNN type and depth, skip connections,
    weight norm, q_levels) at a small width, with random weights."""
    cfg = load_config(path)
    cfg.model = dataclasses.replace(cfg.model, dim=dim, emb_size=emb_size)
    torch.manual_seed(0)
    return models.from_config(cfg).to(dtype).eval()


def tiny(dtype=torch.float64, **kw) -> torch.nn.Module:
    from soundalike.models.samplernn import SampleRNN

    torch.manual_seed(1)
    kw = {"frame_sizes": [4, 2], "dim": 16, "emb_size": 8, "q_levels": 32, **kw}
    return SampleRNN(**kw).to(dtype).eval()


@pytest.fixture(params=BACKENDS)
def backend(request):
    if request.param == "c" and kernel.load() is None:
        pytest.skip("no C++ compiler")
    return request.param


@pytest.mark.parametrize("path", SAMPLERNN_CONFIGS, ids=lambda p: p.stem)
def test_fast_equals_reference_for_every_shipped_config(path, backend):
    model = shipped(path)
    if backend == "numpy" and model.head.kind != "softmax":
        pytest.skip("the numpy fallback draws from softmax heads only (the torch backend takes the others)")
    n = 2 * model.lookback + 37
    ref = reference_generate(model, n, batch=3, temperature=torch.tensor(TEMPS), seed=7)
    fast = generate(model, n, batch=3, temperature=TEMPS, seed=7, backend=backend)
    assert fast.dtype == torch.long and fast.shape == (3, n)
    assert torch.equal(fast, ref)
    # The model, not just the noise, decides the low-temperature streams.
    noise_only = NoiseStream(3, model.q_levels, 7).take(n).argmax(-1)
    assert (ref[1] != noise_only[1]).float().mean() > 0.5
    assert len(ref[0].unique()) > 10


@pytest.mark.parametrize("path", SAMPLERNN_CONFIGS, ids=lambda p: p.stem)
def test_logits_used_match_teacher_forced_forward(path):
    """float32 as in production: the logits behind each sample equal a forward pass over the output."""
    model = shipped(path, dim=64, dtype=torch.float32)
    L, B = model.lookback, 2
    T = 3 * L
    levels, logits = Sampler(model, B, TEMPS[:B], seed=3).generate(T, logits=True)
    silence = torch.full((B, L), model.q_levels // 2)
    with torch.no_grad():
        forced, _ = model(torch.cat([silence, levels], dim=1)[:, :L + T])
    torch.testing.assert_close(logits.float(), forced, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("weights", ["bf16", "int8"])
@pytest.mark.parametrize("path", SAMPLERNN_CONFIGS, ids=lambda p: p.stem)
@pytest.mark.parametrize("batch", [1, 3])  # the head's sparse product (1) and dense product (3)
def test_compact_weights_compiled_equals_torch_on_the_same_rounded_weights(path, weights, batch):
    """weights="bf16" / "int8": the compiled loop stores bfloat16 (widened exactly) / int8 with per-row scales;
    torch ops use the rounded values. float64: the same samples (also as the reference generator on the
    rounded model), logits equal to rounding."""
    if kernel.load() is None:
        pytest.skip("no C++ compiler")
    model = shipped(path, dim=40)  # 40: not a multiple of the vector width, so the scalar tails run too
    n = 2 * model.lookback + 9
    kw = {"temperature": TEMPS[:batch], "seed": 4, "weights": weights}
    fast, fast_logits = Sampler(model, batch, backend="c", **kw).generate(n, logits=True)
    emulated, emulated_logits = Sampler(model, batch, backend="torch", **kw).generate(n, logits=True)
    assert torch.equal(fast, emulated)
    torch.testing.assert_close(fast_logits, emulated_logits, rtol=1e-12, atol=1e-12)
    # and the plain reference generator on the model the option computes draws the same samples
    rounded = engine.with_compact_weights(model, weights)
    assert torch.equal(fast, reference_generate(rounded, n, batch=batch, temperature=torch.tensor(TEMPS[:batch]),
                                                seed=4))
    _, full = Sampler(model, batch, seed=4, backend="c").generate(n, logits=True)
    assert (fast_logits - full).abs().max() > 1e-6  # the option does change the weights


def test_crossing_noise_blocks_and_history_shifts(monkeypatch, backend):
    monkeypatch.setattr(engine, "CHUNK", 40)  # shift the history buffer often
    model = tiny()
    n = 1100  # past the first noise block of 1024
    ref = reference_generate(model, n, batch=2, temperature=0.3, seed=1)
    assert torch.equal(generate(model, n, batch=2, temperature=0.3, seed=1, backend=backend), ref)


@pytest.mark.parametrize("kw", [
    {"frame_sizes": [2, 3]},  # top frame of 6: not a divisor of the noise block
    {"frame_sizes": [4, 2, 2], "rnn_type": "lstm", "learn_h0": False, "weight_norm": False},
    {"frame_sizes": [2], "rnn_type": "gru", "n_rnn": 3, "skip_connections": True},
])
def test_other_structures(kw):
    model = tiny(**kw)
    ref = reference_generate(model, 150, batch=2, temperature=[0.1, 1.0], seed=2)
    assert torch.equal(generate(model, 150, batch=2, temperature=[0.1, 1.0], seed=2), ref)


def test_consecutive_calls_continue_one_stream():
    model = tiny()
    whole = Sampler(model, 2, 0.5, seed=4).generate(200)
    s = Sampler(model, 2, 0.5, seed=4)
    parts = torch.cat([s.generate(k) for k in (1, 7, 8, 50, 134)], dim=1)
    assert torch.equal(parts, whole)
    assert s.generated == 200


@pytest.mark.parametrize("split", [64, 77, 1030])
def test_state_dict_resumes_exactly(tmp_path, monkeypatch, split):
    monkeypatch.setattr(engine, "CHUNK", 96)
    model = tiny()
    n = 1200
    whole = Sampler(model, 2, [0.2, 1.0], seed=9).generate(n)
    first = Sampler(model, 2, [0.2, 1.0], seed=9)
    a = first.generate(split)
    torch.save(first.state_dict(), tmp_path / "state.pt")
    del first
    second = Sampler(model, 2, 1.0, seed=123)  # temperature and noise come from the state
    second.load_state_dict(torch.load(tmp_path / "state.pt"))
    b = second.generate(n - split)
    assert torch.equal(torch.cat([a, b], dim=1), whole)


@pytest.mark.parametrize("prime_len", [1, 8, 21])
def test_priming_equals_reference_teacher_forcing(prime_len, backend):
    model = tiny()
    prime = torch.randint(0, model.q_levels, (prime_len,), generator=torch.Generator().manual_seed(0))
    ref = reference_generate(model, 60, batch=2, temperature=0.2, seed=5, prime=prime)
    s = Sampler(model, 2, 0.2, seed=5, backend=backend)
    pad = s.prime(prime)
    assert pad == -prime_len % model.lookback
    assert torch.equal(s.generate(60), ref)
    # The prime changes what follows.
    assert not torch.equal(ref, reference_generate(model, 60, batch=2, temperature=0.2, seed=5))


def test_long_prime_runs_in_chunks(monkeypatch):
    model = tiny()
    prime = torch.randint(0, model.q_levels, (3000,), generator=torch.Generator().manual_seed(1))
    ref = reference_generate(model, 20, temperature=0.2, seed=5, prime=prime)
    s = Sampler(model, 1, 0.2, seed=5)
    s.prime(prime)
    assert torch.equal(s.generate(20), ref)


def test_numpy_fallback_when_no_compiler(monkeypatch):
    monkeypatch.setattr(kernel, "_loaded", {})
    monkeypatch.setenv("SOUNDALIKE_KERNEL", "numpy")
    assert kernel.load() is None
    assert Sampler(tiny()).stepper.backend == "numpy"
    monkeypatch.setattr(kernel, "_loaded", {})


def test_noise_stream_take_and_state_match_next():
    a, b = NoiseStream(2, 8, 3, block=16), NoiseStream(2, 8, 3, block=16)
    steps = torch.stack([a.next() for _ in range(40)], dim=1)
    got = [b.take(5), b.take(20)]
    state = b.state()
    c = NoiseStream(2, 8, 99, block=16)
    c.load_state(state)
    got.append(c.take(15))
    assert torch.equal(torch.cat(got, dim=1), steps)
    assert torch.isfinite(steps).all() and steps.std() > 0.5


def test_unknown_model_is_a_clear_error():
    with pytest.raises(TypeError, match="Linear is no registered model family"):
        Sampler(torch.nn.Linear(2, 2))


def test_temperature_count_must_match_batch():
    with pytest.raises(AssertionError, match="temperatures"):
        Sampler(tiny(), 3, [1.0, 0.5])


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@cuda
def test_cuda_fast_equals_cpu_reference_in_float64():
    model = shipped(SAMPLERNN_CONFIGS[0])
    n = 2 * model.lookback + 5
    ref = reference_generate(model, n, batch=3, temperature=torch.tensor(TEMPS), seed=7)
    fast = generate(model.cuda(), n, batch=3, temperature=TEMPS, seed=7)
    assert fast.device.type == "cpu" and torch.equal(fast, ref)


@cuda
@pytest.mark.parametrize("path", SAMPLERNN_CONFIGS, ids=lambda p: p.stem)
def test_cuda_logits_match_teacher_forced_forward(path):
    model = shipped(path, dim=64, dtype=torch.float32).cuda()
    L, B = model.lookback, 4
    levels, logits = Sampler(model, B, 1.0, seed=3).generate(2 * L, logits=True)
    silence = torch.full((B, L), model.q_levels // 2)
    with torch.no_grad():
        forced, _ = model(torch.cat([silence, levels], dim=1).cuda())
    torch.testing.assert_close(logits.float(), forced.cpu(), rtol=1e-3, atol=1e-3)


def test_int8_quantization_rounds_each_row_to_its_own_scale():
    w = torch.randn(6, 5, 3, dtype=torch.float64)
    w[2] = 0
    w[4, 0, 0] = 1000.0  # one large weight sets its row's scale alone
    q, scale = engine.quantize_int8(w)
    assert q.dtype == torch.int8 and q.shape == w.shape and scale.dtype == torch.float32
    assert scale[2] == 1 and not q[2].any()
    flat = q.reshape(6, -1).double() * scale.double()[:, None]
    assert (flat - w.reshape(6, -1)).abs().le(scale.double()[:, None] / 2 + 1e-6).all()
    assert q.reshape(6, -1).abs().amax(dim=1).tolist() == [127, 127, 0, 127, 127, 127]
    torch.testing.assert_close(engine.compact(w, "int8"), flat.reshape(w.shape), rtol=0, atol=0)


def test_numpy_and_c_kernels_agree_on_random_inputs():
    if kernel.load() is None:
        pytest.skip("no C++ compiler")
    from soundalike.models.samplernn.stepper import SampleRNNStepper

    C, Q, D, B = 4, 32, 24, 3  # D not a multiple of the vector width: the scalar tail runs too
    model = tiny(frame_sizes=[C], dim=D, q_levels=Q)
    rng = np.random.default_rng(0)
    seq0 = torch.from_numpy(rng.integers(0, Q, (B, 2 * C)))
    cond = torch.from_numpy(rng.standard_normal((B, C, D)))
    noise = torch.from_numpy(rng.gumbel(size=(B, C, Q)).astype(np.float32))
    outs = []
    for backend in ("c", "numpy"):
        st = SampleRNNStepper(model, backend=backend)
        st.reset(B)
        seq, logits = seq0.clone(), torch.empty(B, C, Q, dtype=torch.float64)
        st._sample_frame(seq, C, cond, noise, controls(torch.tensor([1.0, 0.5, 2.0]), torch.tensor([0.0, 0.1, 0.3])),
                         logits)
        outs.append((seq, logits))
    assert torch.equal(outs[0][0], outs[1][0])
    torch.testing.assert_close(outs[0][1], outs[1][1])


@cuda
@pytest.mark.parametrize("path", SAMPLERNN_CONFIGS, ids=lambda p: p.stem)
def test_cuda_graph_replays_equal_eager_steps(path):
    model = shipped(path, dim=64, dtype=torch.float32).cuda()
    n = 3 * model.lookback + 5
    eager = generate(model, n, batch=4, temperature=[0.1, 0.5, 1.0, 2.0], seed=3, backend="torch")
    graph = generate(model, n, batch=4, temperature=[0.1, 0.5, 1.0, 2.0], seed=3, backend="graph")
    assert torch.equal(graph, eager)


@cuda
def test_cuda_device_noise_resumes_exactly(monkeypatch):
    monkeypatch.setattr(engine, "CHUNK", 96)
    model = tiny(dtype=torch.float32).cuda()
    whole = Sampler(model, 3, 0.5, seed=2, device_noise=True).generate(700)
    a = Sampler(model, 3, 0.5, seed=2, device_noise=True)
    first = a.generate(250)
    b = Sampler(model, 3, 0.5, seed=0, device_noise=True)
    b.load_state_dict(a.state_dict())
    assert torch.equal(torch.cat([first, b.generate(450)], dim=1), whole)
    assert len(whole.unique()) > 10


@cuda
def test_cuda_bfloat16_runs():
    model = shipped(SAMPLERNN_CONFIGS[0], dim=64, dtype=torch.float32).cuda()
    out = generate(model, 2 * model.lookback, batch=2, seed=1, dtype=torch.bfloat16, device_noise=True)
    assert out.shape == (2, 2 * model.lookback) and 0 <= out.min() and out.max() < model.q_levels


# Every shipped config at a small width (40: scalar tails), and two SampleRNNs at 136 (>= 64, not a multiple
# of 16), where the input-table gather and the head's hidden layer are split between threads too.
THREAD_CASES = [(p, 40) for p in CONFIGS] + [(p, 136) for p in SAMPLERNN_CONFIGS if p.stem in ("demo", "beatles")]


@pytest.mark.parametrize("weights", ["full", "int8"])
@pytest.mark.parametrize("path,dim", THREAD_CASES, ids=[f"{p.stem}-{d}" for p, d in THREAD_CASES])
@pytest.mark.parametrize("batch", [1, 3])
def test_compiled_loops_give_the_same_bits_with_any_number_of_threads(path, dim, batch, weights):
    """Every matrix product split between 3 threads (odd shares, scalar tails) gives bitwise the samples and
    logits of one thread, float32 as in production, for every shipped config of either family (and the
    compiled SampleRNN loop's int8 products)."""
    if kernel.load() is None:
        pytest.skip("no C++ compiler")
    if weights != "full" and load_config(path).model.family == "wavenet":
        pytest.skip("WaveNet computes with the rounded values in float32: the same products as full")
    from tests.test_wavenet import shipped as shipped_wavenet

    wavenet = load_config(path).model.family == "wavenet"
    model = shipped_wavenet(path, channels=20, dtype=torch.float32) if wavenet else \
        shipped(path, dim=dim, dtype=torch.float32)
    libs = [kernel.load()]
    hop = Sampler(model, batch).stepper.hop
    n = 2 * hop + 5
    runs = []
    try:
        # 3 threads with every product split; 5 with the usual minimum (some products in fewer parts)
        for threads, min_split in [(1, -1), (3, 0), (5, kernel.MIN_SPLIT)]:
            for lib in libs:
                assert lib.set_threads(threads, min_split) == threads
            sampler = Sampler(model, batch, TEMPS[:batch], seed=5, threads=threads, weights=weights)
            runs.append(sampler.generate(n, logits=True))
    finally:
        for lib in libs:
            lib.set_threads(1, kernel.MIN_SPLIT)
    (one, one_logits), *more = runs
    for samples, logits in more:
        assert torch.equal(one, samples) and torch.equal(one_logits, logits)
    assert one_logits.abs().sum() > 0


@pytest.mark.parametrize("batch", [1, 2])
def test_generating_leaves_the_model_untouched(batch, backend):
    """The stepper's state starts from the learned initial state; at batch 1 too it must be a copy of it."""
    model = tiny(dtype=torch.float32, learn_h0=True)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    first = Sampler(model, batch, seed=3, backend=backend).generate(40, logits=True)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "generation changed the model"
    again = Sampler(model, batch, seed=3, backend=backend).generate(40, logits=True)
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])


@pytest.mark.parametrize("weights", ["bf16", "int8"])
@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_compact_weights_model_is_what_the_sampler_computes(path, weights):
    """engine.with_compact_weights (behind `evaluate --weights`) gives, teacher-forced, the logits the sampler
    used with the same `weights`: the NLL it reports is the option's real cost. float64, so that only the
    rounding of the weights differs from full precision."""
    from tests.test_wavenet import shipped as shipped_wavenet

    wavenet = load_config(path).model.family == "wavenet"
    model = shipped_wavenet(path, channels=12) if wavenet else shipped(path, dim=40)
    L, B = model.lookback, 2
    T = 2 * Sampler(model, B).stepper.hop  # SampleRNN: whole top frames, as its forward wants
    levels, logits = Sampler(model, B, [1.0, 0.2], seed=6, weights=weights).generate(T, logits=True)
    x = torch.cat([torch.full((B, L), model.q_levels // 2), levels], dim=1)[:, :L + T]
    with torch.no_grad():
        rounded, _ = engine.with_compact_weights(model, weights)(x)
        full, _ = model(x)
    torch.testing.assert_close(logits, rounded, rtol=1e-9, atol=1e-9)
    assert (logits - full).abs().max() > 1e-5  # the rounding is there, and the copy left the model as it was
    assert all(p.dtype == torch.float64 for p in model.parameters())


# The shipped SampleRNN models (a config with a `sparsity` section has another one's model: not again).
DISTINCT_MODELS = [p for p in SAMPLERNN_CONFIGS if not load_config(p).sparsity.target]


@pytest.mark.parametrize("weights", engine.WEIGHTS)
@pytest.mark.parametrize("path", DISTINCT_MODELS, ids=lambda p: p.stem)
@pytest.mark.parametrize("dim,batch", [(48, 1), (40, 3)])  # 40: a partial last group of 16 rows
def test_block_sparse_compiled_equals_reference_on_the_pruned_model(path, weights, dim, batch):
    """A pruned model (sparsity.prune: 80 % of the 16 x 1 blocks zero): the compiled loop stores its matrices
    block-sparse and draws the reference generator's samples on the same model (the rounded one for bf16 /
    int8), float64, with the same bits for 1 and 3 threads."""
    from soundalike import sparsity

    lib = kernel.load()
    if lib is None:
        pytest.skip("no C++ compiler")
    model = sparsity.prune(shipped(path, dim=dim), 0.8)
    n = 2 * model.lookback + 9
    temps = TEMPS[:batch]
    sampler = Sampler(model, batch, temps, seed=4, weights=weights, backend="c")
    s = sampler.stepper
    assert all(isinstance(m, kernel.Blocks) for m in (s.w1, s.w2, s.tiers[0].w_up, s.tiers[0].layers[0][1]))
    fast = sampler.generate(n)
    plain = model if weights == "full" else engine.with_compact_weights(model, weights)
    assert torch.equal(fast, reference_generate(plain, n, batch=batch, temperature=torch.tensor(temps), seed=4))
    # the samples depend on the pruned weights: the unpruned model draws others from the same noise
    assert not torch.equal(fast, Sampler(shipped(path, dim=dim), batch, temps, seed=4, weights=weights).generate(n))
    try:
        lib.set_threads(3, 0)
        assert torch.equal(fast, Sampler(model, batch, temps, seed=4, weights=weights, threads=3).generate(n))
    finally:
        lib.set_threads(1, kernel.MIN_SPLIT)


def test_block_sparse_matrices_read_fewer_bytes():
    if kernel.load() is None:
        pytest.skip("no C++ compiler")
    from soundalike import sparsity

    model = shipped(SAMPLERNN_CONFIGS[0], dim=64, dtype=torch.float32)
    def matrices(stepper) -> float:
        b = stepper.stored_bytes()
        return b["tiers"] + b["mlp"]

    dense = Sampler(model, 1).stepper
    sparse = Sampler(sparsity.prune(model, 0.9), 1).stepper
    assert matrices(sparse) < 0.2 * matrices(dense)
    assert sparse.stored_bytes()["tables"] == dense.stored_bytes()["tables"] > 0  # gathered rows, not pruned
