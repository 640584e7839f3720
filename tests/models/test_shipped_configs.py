"""Every shipped config, whatever its model family, builds at full size and takes a training step."""

import pytest
import torch

from soundalike import models
from soundalike.config import load_config
from tests.conftest import CONFIGS


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_shipped_config_full_size_forward_backward_and_step(path):
    cfg = load_config(path)
    torch.manual_seed(0)
    model = models.from_config(cfg)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    # two top frames of a SampleRNN; a short window after a WaveNet's receptive field
    B, T = 2, model.lookback * 2 if cfg.model.family == "samplernn" else 32
    x = torch.randint(0, cfg.data.q_levels, (B, model.lookback + T))
    params, state = model(x, None, torch.ones(B, dtype=torch.bool))
    assert params.shape == (B, T, model.head.n_params)  # the logits, for a softmax head
    nll, _ = model(x, None, torch.ones(B, dtype=torch.bool), nll=True)
    assert nll.shape == (B, T) and (nll > 0).all()
    if cfg.model.family == "samplernn":
        assert len(state) == len(cfg.model.frame_sizes)  # one recurrent state per frame tier
    else:
        assert state is None  # a WaveNet carries nothing between windows
    nll.mean().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    before = [p.detach().clone() for p in model.parameters()]
    opt.step()
    assert all(not torch.equal(a, p) for a, p in zip(before, model.parameters()) if p.requires_grad)
