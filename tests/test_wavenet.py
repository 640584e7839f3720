"""WaveNet: the full causal pass against the incremental (queue) paths, generation against the plain generators,
and the model through the same train / evaluate / render path as SampleRNN.

Exact equality of samples needs every path to agree on every argmax, so those tests run in float64 (see
test_sampling.py); float32, as in production, is checked against a teacher-forced forward pass (allclose).
"""

import dataclasses
import json

import numpy as np
import pytest
import soundfile as sf
import torch

from soundalike import models
from soundalike.cli import main
from soundalike.config import load_config
from soundalike.errors import UserError
from soundalike.evaluate import evaluate_checkpoint
from soundalike.models.wavenet import WaveNet
from soundalike.models.wavenet.stepper import HOP, naive_generate, reference_generate
from soundalike.sampling import Sampler, engine, generate, kernel
from soundalike.sampling.reference import NoiseStream
from soundalike.train import Trainer
from tests.conftest import CONFIGS, ROOT

WAVENET_CONFIGS = [p for p in CONFIGS if load_config(p).model.family == "wavenet"]
TEMPS = [1.0, 0.05, 0.2]  # low temperatures make the samples depend on the model, not mostly on the noise


def sensitive(model: WaveNet, dtype) -> WaveNet:
    """Random weights scaled up 3x: at PyTorch's initial scale the logits hardly depend on the input (their
    std over time is ~0.02), so a generator that mixed up its queues would still draw the same samples."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("weight"):
                p.mul_(3.0)
    return model.to(dtype).eval()


def shipped(path, channels: int = 8, dtype=torch.float64) -> WaveNet:
    """A shipped config's model with its structure (stacks, layers, dilations, kernel size, q_levels) at a small
    width, with random weights."""
    cfg = load_config(path)
    cfg.model = dataclasses.replace(cfg.model, residual_channels=channels, dilation_channels=channels,
                                    skip_channels=2 * channels, out_channels=2 * channels)
    torch.manual_seed(0)
    return sensitive(models.from_config(cfg), dtype)


def tiny(dtype=torch.float64, **kw) -> WaveNet:
    torch.manual_seed(1)
    kw = {"n_stacks": 2, "n_layers": 3, "residual_channels": 6, "dilation_channels": 5, "skip_channels": 7,
          "out_channels": 9, "q_levels": 32, **kw}
    return sensitive(WaveNet(**kw), dtype)


@pytest.fixture(params=["c", "torch"])
def backend(request):
    if request.param == "c" and kernel.load() is None:
        pytest.skip("no C++ compiler")
    return request.param


def test_receptive_field_arithmetic():
    paper = load_config(ROOT / "configs" / "wavenet.yaml")
    model = models.from_config(paper)
    assert (paper.model.n_stacks, paper.model.n_layers) == (4, 10)
    assert sum(model.dilations) == 4092  # the SampleRNN paper's figure: 4 * (1 + 2 + ... + 512)
    assert model.receptive_field == model.lookback == 4093  # those and the newest sample
    assert tiny(kernel_size=3).receptive_field == 1 + 2 * 2 * (1 + 2 + 4)


@pytest.mark.parametrize("kw", [{}, {"kernel_size": 3}, {"n_stacks": 1, "n_layers": 1}])
def test_prediction_depends_on_exactly_the_receptive_field(kw):
    model = tiny(**kw)
    L, T = model.lookback, 12
    x = torch.randint(0, 32, (1, L + T))
    base, _ = model(x)
    for i in (0, L - 1, L + 3, L + T - 2):
        y = x.clone()
        y[0, i] = (y[0, i] + 1) % 32
        changed = (model(y)[0] - base).abs().amax(-1)[0] > 0  # (T,)
        targets = torch.arange(L, L + T)
        assert torch.equal(changed, (targets > i) & (targets - model.receptive_field <= i)), i


@pytest.mark.parametrize("path", WAVENET_CONFIGS, ids=lambda p: p.stem)
def test_incremental_queues_equal_the_full_forward(path):
    model = shipped(path)
    L, T = model.lookback, 40
    x = torch.randint(0, model.q_levels, (2, L + T), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        full, _ = model(x)
    queues = model.initial_queues(x[:, :L - 1])
    steps = torch.stack([model.step(x[:, L - 1 + t], queues)[0] for t in range(T)], dim=1)
    torch.testing.assert_close(steps, full, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("path", WAVENET_CONFIGS, ids=lambda p: p.stem)
def test_stepper_logits_equal_a_teacher_forced_forward(path, backend, dtype):
    model = shipped(path, dtype=dtype)
    L, B = model.lookback, 2
    T = 2 * HOP + 5
    levels, logits = Sampler(model, B, TEMPS[:B], seed=3, backend=backend).generate(T, logits=True)
    silence = torch.full((B, L), model.q_levels // 2)
    with torch.no_grad():
        forced, _ = model(torch.cat([silence, levels], dim=1)[:, :L + T])
    # float64 is the exactness check. In float32 the 40-layer `wavenet` sums its skips in another order than
    # the convolution does (oneDNN picks its kernel by CPU): up to 2e-4 apart on some machines.
    tol = 1e-10 if dtype == torch.float64 else 1e-3
    torch.testing.assert_close(logits, forced, rtol=tol, atol=tol)


@pytest.mark.parametrize("path", WAVENET_CONFIGS, ids=lambda p: p.stem)
def test_fast_equals_plain_and_naive_generation_for_every_shipped_config(path, backend):
    model = shipped(path)
    n = 2 * HOP + 37
    ref = reference_generate(model, n, batch=3, temperature=torch.tensor(TEMPS), seed=7)
    fast = generate(model, n, batch=3, temperature=TEMPS, seed=7, backend=backend)
    assert fast.dtype == torch.long and fast.shape == (3, n)
    assert torch.equal(fast, ref)
    # The naive re-run costs a forward pass over the receptive field per sample: a few samples show it agrees.
    assert torch.equal(naive_generate(model, 8, batch=3, temperature=torch.tensor(TEMPS), seed=7), ref[:, :8])
    noise_only = NoiseStream(3, model.q_levels, 7).take(n).argmax(-1)
    assert (ref[1] != noise_only[1]).float().mean() > 0.5
    # The history, not just the biases, decides: a different past gives different samples for the same noise.
    primed = Sampler(model, 3, TEMPS, seed=7, backend=backend)
    primed.prime(torch.randint(0, model.q_levels, (50,), generator=torch.Generator().manual_seed(1)))
    assert (primed.generate(n)[1:] != fast[1:]).float().mean() > 0.3


@pytest.mark.parametrize("kw", [{"kernel_size": 3}, {"n_stacks": 1, "n_layers": 1}, {"n_stacks": 3, "n_layers": 2}])
def test_other_structures(kw, backend):
    model = tiny(**kw)
    ref = naive_generate(model, 150, batch=2, temperature=[0.1, 1.0], seed=2)
    assert torch.equal(reference_generate(model, 150, batch=2, temperature=[0.1, 1.0], seed=2), ref)
    assert torch.equal(generate(model, 150, batch=2, temperature=[0.1, 1.0], seed=2, backend=backend), ref)


@pytest.mark.parametrize("prime_len", [1, 5, 64, 200])
def test_priming_equals_teacher_forcing(prime_len, backend):
    model = tiny()
    prime = torch.randint(0, model.q_levels, (prime_len,), generator=torch.Generator().manual_seed(0))
    ref = naive_generate(model, 70, batch=2, temperature=0.2, seed=5, prime=prime)
    assert torch.equal(reference_generate(model, 70, batch=2, temperature=0.2, seed=5, prime=prime), ref)
    s = Sampler(model, 2, 0.2, seed=5, backend=backend)
    s.prime(prime)
    assert torch.equal(s.generate(70), ref)
    assert not torch.equal(ref, naive_generate(model, 70, batch=2, temperature=0.2, seed=5))


@pytest.mark.parametrize("split", [1, 64, 77, 1030])
def test_state_dict_resumes_exactly(tmp_path, monkeypatch, split, backend):
    monkeypatch.setattr(engine, "CHUNK", 96)  # shift the history buffer often
    model = tiny()
    n = 1200
    whole = Sampler(model, 2, [0.2, 1.0], seed=9, backend=backend).generate(n)
    first = Sampler(model, 2, [0.2, 1.0], seed=9, backend=backend)
    a = first.generate(split)
    torch.save(first.state_dict(), tmp_path / "state.pt")
    second = Sampler(model, 2, 1.0, seed=123, backend="torch" if backend == "c" else "auto")
    second.load_state_dict(torch.load(tmp_path / "state.pt"))  # the state is the same for every backend
    assert torch.equal(torch.cat([a, second.generate(n - split)], dim=1), whole)


def test_config_checks():
    cfg = load_config(None, ["model.family=wavenet", "train.seq_len=1000"])  # no frame-size constraint
    assert models.from_config(cfg).lookback == 4093
    for override, message in [("model.kernel_size=1", "model.kernel_size: must be at least 2"),
                              ("model.n_layers=0", "model.n_layers: must be positive"),
                              ("model.skip_channels=0", "model.skip_channels: must be positive")]:
        with pytest.raises(UserError, match=message):
            load_config(None, ["model.family=wavenet", override])


def test_train_evaluate_render_end_to_end(tiny_dataset, tmp_path, monkeypatch):
    """The demo config's family through the trainer, `soundalike evaluate` and `soundalike render`, unchanged."""
    overrides = {
        "data.path": tiny_dataset, "run_root": tmp_path / "runs", "name": "wn", "model.n_stacks": 2,
        "model.n_layers": 4, "model.residual_channels": 16, "model.dilation_channels": 16,
        "model.skip_channels": 32, "model.out_channels": 32, "train.batch_size": 8, "train.seq_len": 128,
        "train.max_steps": 60, "train.val_every": 30, "train.log_every": 5, "train.val_batch_size": 8,
        "train.sample_count": 1, "train.sample_seconds": 0.02, "train.lr": 0.01, "train.threads": 2,
        "train.max_time": "",
    }
    cfg = load_config(ROOT / "configs" / "wavenet-demo.yaml", [f"{k}={v}" for k, v in overrides.items()])
    Trainer(cfg, device="cpu").fit()
    run = tmp_path / "runs" / "wn"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train = [r["train_bits"] for r in rows if "train_bits" in r]
    assert train[-1] < train[0] - 1.0, train
    assert len(sorted((run / "samples").glob("step-*/sample-00.wav"))) == 2
    best = run / "checkpoints" / "best.pt"
    r = evaluate_checkpoint(str(best), "test")
    assert 0 < r["bits"] < r["marginal_entropy_bits"] - 1.0
    monkeypatch.chdir(tmp_path)
    assert main(["render", "--ckpt", str(best), "--seconds", "0.05", "--count", "2", "--seed", "4",
                 "--out", "out"]) == 0
    audio, rate = sf.read(tmp_path / "out" / "track-01.wav", dtype="float32")
    assert rate == 8000 and len(audio) == 400 and np.abs(audio).max() > 0


def test_graph_backend_needs_cuda():
    with pytest.raises(ValueError, match="needs a CUDA device"):
        Sampler(tiny(), backend="graph", device="cpu")


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@cuda
@pytest.mark.parametrize("gpu_backend", ["torch", "graph"])
@pytest.mark.parametrize("path", WAVENET_CONFIGS, ids=lambda p: p.stem)
def test_cuda_fast_equals_cpu_reference_in_float64(path, gpu_backend):
    model = shipped(path)
    n = 3 * HOP + 5
    ref = reference_generate(model, n, batch=3, temperature=torch.tensor(TEMPS), seed=7)
    fast = generate(model.cuda(), n, batch=3, temperature=TEMPS, seed=7, backend=gpu_backend)
    assert fast.device.type == "cpu" and torch.equal(fast, ref)


@cuda
def test_cuda_graph_state_dict_resumes_exactly():
    model = tiny().cuda()
    whole = Sampler(model, 2, [0.2, 1.0], seed=9, backend="graph").generate(700)
    first = Sampler(model, 2, [0.2, 1.0], seed=9, backend="graph")
    a = first.generate(300)
    second = Sampler(model, 2, 1.0, seed=1, backend="graph")
    second.load_state_dict(first.state_dict())
    assert torch.equal(torch.cat([a, second.generate(400)], dim=1), whole)


@pytest.mark.parametrize("path", WAVENET_CONFIGS, ids=lambda p: p.stem)
def test_block_sparse_compiled_equals_reference_on_the_pruned_model(path):
    """A pruned WaveNet (80 % of the 16 x 1 blocks of its convolutions and projections zero): the compiled loop
    stores them block-sparse and draws the reference generator's samples, float64, 1 and 3 threads alike."""
    from soundalike import sparsity

    lib = kernel.load()
    if lib is None:
        pytest.skip("no C++ compiler")
    model = sparsity.prune(shipped(path, channels=32), 0.8)
    n = 300
    sampler = Sampler(model, 2, [1.0, 0.1], seed=5, backend="c")
    assert sum(isinstance(m, kernel.Blocks) for m in sampler.stepper._c) == len(sampler.stepper._c)
    fast = sampler.generate(n)
    assert torch.equal(fast, reference_generate(model, n, batch=2, temperature=torch.tensor([1.0, 0.1]), seed=5))
    assert not torch.equal(fast, Sampler(shipped(path, channels=32), 2, [1.0, 0.1], seed=5).generate(n))
    try:
        lib.set_threads(3, 0)
        assert torch.equal(fast, Sampler(model, 2, [1.0, 0.1], seed=5, threads=3).generate(n))
    finally:
        lib.set_threads(1, kernel.MIN_SPLIT)
