"""A family plugs in through its `Family` record alone: the config loader, model building, the sampling engine,
compact weights and checkpoints serve a toy family that no other module knows."""

import inspect
from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch
from torch import nn

from soundalike import models
from soundalike.checkpoint import build_model, load_checkpoint, model_payload, save_checkpoint
from soundalike.config import load_config
from soundalike.errors import UserError
from soundalike.models import FAMILIES, Family
from soundalike.models.heads import Head, HeadConfig
from soundalike.quantize import Quantizer
from soundalike.sampling import engine, generate, reference, reference_generate
from soundalike.sampling.reference import NoiseStream


@dataclass
class BigramConfig(HeadConfig):
    family: ClassVar[str] = "bigram"
    emb_dim: int = 8

    def validate(self, seq_len: int) -> None:
        if self.emb_dim < 1:
            raise UserError("model.emb_dim: must be positive")


class Bigram(nn.Module):
    """The next sample's distribution from the previous sample alone."""

    def __init__(self, emb_dim: int = 8, q_levels: int = 256, output: str = "softmax", mixtures: int = 10):
        super().__init__()
        self.kwargs = {"emb_dim": emb_dim, "q_levels": q_levels, "output": output, "mixtures": mixtures}
        self.q_levels, self.lookback = q_levels, 1
        self.embedding = nn.Embedding(q_levels, emb_dim)
        self.head = Head(output, emb_dim, q_levels, mixtures)
        self.out = nn.Linear(emb_dim, self.head.n_params)

    def step(self, level: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Levels (...) -> the head's parameters and features for the next sample."""
        z = torch.relu(self.embedding(level))
        return self.out(z), z

    def forward(self, x: torch.Tensor, state=None, reset=None, nll: bool = False) -> tuple[torch.Tensor, None]:
        """x (B, 1 + T) levels -> the head's parameters (B, T, n_params) for x[:, 1:], or their NLL (B, T)."""
        params, z = self.step(x[:, :-1])
        return (self.head.nll(params, z, x[:, 1:]) if nll else params), None


class BigramStepper:
    hop = context = 1
    backend, threads = "torch", 1

    def __init__(self, model: Bigram, device=None, dtype=None, backend: str = "auto", weights: str = "full"):
        self.device, self.dtype = engine.stepper_placement(model, device, dtype, backend, ("auto",), weights)
        self.model = model if weights == "full" else engine.with_compact_weights(model, weights)
        self.q_levels = model.q_levels
        self.head = engine.stepper_head(self.model.head, self.device, self.dtype, "full")

    def reset(self, batch: int) -> None:
        pass

    def prime(self, levels: torch.Tensor) -> None:
        pass

    def advance(self, seq, pos, noise, c, logits=None) -> None:
        params, z = self.model.step(seq[:, pos - 1])
        seq[:, pos] = self.head.draw(params, z, noise[:, 0], c)
        if logits is not None:
            logits[:, 0] = params

    def state(self) -> dict:
        return {}

    def load_state(self, state: dict) -> None:
        pass


def bigram_reference(model, n_samples, batch=1, temperature=1.0, seed=0, prime=None, min_p=0.0,
                     bias=None) -> torch.Tensor:
    seq = torch.full((batch, 1 + n_samples), model.q_levels // 2, dtype=torch.long)
    c = engine.stream_controls(temperature, min_p, batch, bias=bias)
    noise = NoiseStream(batch, model.head.noise_width, seed, uniform=model.head.uniform)
    for pos in range(1, seq.shape[1]):
        params, z = model.step(seq[:, pos - 1])
        seq[:, pos] = model.head.draw(params, z, noise.next(), c)
    return seq[:, 1:]


BIGRAM = Family(config=BigramConfig, model=Bigram, stepper=BigramStepper, reference=bigram_reference,
                unrounded=("embedding.weight",))


@pytest.fixture
def bigram(monkeypatch):
    monkeypatch.setitem(FAMILIES, "bigram", BIGRAM)


def test_config_section_is_read_and_checked_by_the_family(bigram):
    cfg = load_config(None, ["model.family=bigram", "model.emb_dim=4", "data.q_levels=16"])
    assert isinstance(cfg.model, BigramConfig) and cfg.to_dict()["model"] == {"family": "bigram", "output": "softmax",
                                                                    "mixtures": 10, "emb_dim": 4}
    with pytest.raises(UserError, match=r"^model.frame_sizes: unknown key for family bigram \(known: family, output, mixtures, emb_dim\)$"):
        load_config(None, ["model.family=bigram", "model.frame_sizes=[2]"])
    with pytest.raises(UserError, match="^model.emb_dim: must be positive$"):
        load_config(None, ["model.family=bigram", "model.emb_dim=0"])


def test_engine_compact_weights_and_checkpoint_serve_the_family(bigram, tmp_path):
    cfg = load_config(None, ["model.family=bigram", "model.emb_dim=4", "data.q_levels=16"])
    torch.manual_seed(0)
    model = models.from_config(cfg).double()
    assert isinstance(model, Bigram) and models.family_of(model) is BIGRAM
    temps = [1.0, 0.05]
    fast = generate(model, 300, batch=2, temperature=temps, seed=3)
    assert torch.equal(fast, reference_generate(model, 300, batch=2, temperature=temps, seed=3))
    assert len(set(fast[1].tolist())) > 1

    rounded = engine.with_compact_weights(model, "int8")
    assert torch.equal(rounded.embedding.weight, model.embedding.weight)  # the family's unrounded rule
    assert not torch.equal(rounded.out.weight, model.out.weight)
    assert torch.equal(rounded.out.weight, engine.compact(model.out.weight, "int8"))

    path = tmp_path / "bigram.pt"
    save_checkpoint(path, model_payload(model.float(), Quantizer("mulaw", 16), 8000, cfg.to_dict()))
    assert torch.load(path, weights_only=True)["config"]["model"]["emb_dim"] == 4
    rebuilt = build_model(load_checkpoint(path))
    assert isinstance(rebuilt, Bigram) and torch.equal(rebuilt.out.weight, model.out.weight)


def test_the_sampling_engine_names_no_family():
    """No family's name, class or (underscored) config key in the engine's modules: a family is its folder."""
    names = set()
    for f in FAMILIES.values():
        names |= {f.name, f.model.__name__, f.config.__name__} | {k for k in f.config_keys() if "_" in k}
    for module in (engine, reference):
        source = inspect.getsource(module).lower()
        assert not [n for n in names if n.lower() in source], module.__name__
