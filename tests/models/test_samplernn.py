import pytest
import torch
import torch.nn.functional as F

from soundalike.config import load_config
from soundalike.models.samplernn import SampleRNN
from tests.conftest import CONFIGS

SAMPLERNN_CONFIGS = [p for p in CONFIGS if load_config(p).model.family == "samplernn"]


TINY = [
    {"frame_sizes": [16, 4], "rnn_type": "gru", "n_rnn": 1},
    {"frame_sizes": [2, 4], "rnn_type": "gru", "n_rnn": 2},
    {"frame_sizes": [16], "rnn_type": "lstm", "n_rnn": 3, "skip_connections": True},
    {"frame_sizes": [4, 2, 2], "rnn_type": "lstm", "n_rnn": 1, "learn_h0": False, "weight_norm": False},
]


def tiny(**kw) -> SampleRNN:
    torch.manual_seed(1)
    return SampleRNN(dim=32, emb_size=16, q_levels=64, **kw).double()


@pytest.mark.parametrize("kw", TINY)
def test_folded_input_layer_equals_plain_convolution(kw):
    model = tiny(**kw)
    x = torch.randint(0, 64, (3, model.lookback * 5))
    folded, _ = model(x)
    plain, _ = model(x, folded=False)
    torch.testing.assert_close(folded, plain)


@pytest.mark.parametrize("kw", TINY)
def test_tbptt_state_carry_equals_one_long_forward(kw):
    model = tiny(**kw)
    L = model.lookback
    x = torch.randint(0, 64, (2, L + 6 * L))
    whole, _ = model(x)
    first, state = model(x[:, :L + 2 * L])
    second, state = model(x[:, 2 * L:L + 4 * L], state)
    third, _ = model(x[:, 4 * L:], state)
    torch.testing.assert_close(torch.cat([first, second, third], 1), whole)


def test_reset_restores_the_initial_state_per_stream():
    model = tiny(**TINY[0])
    L = model.lookback
    x = torch.randint(0, 64, (2, L + 2 * L))
    _, state = model(x)
    reset = torch.tensor([True, False])
    after, _ = model(x, state, reset)
    fresh, _ = model(x)
    carried, _ = model(x, state)
    torch.testing.assert_close(after[0], fresh[0])
    torch.testing.assert_close(after[1], carried[1])
    assert not torch.allclose(fresh[1], carried[1])


def test_prediction_is_causal():
    model = tiny(**TINY[0])
    L = model.lookback
    x = torch.randint(0, 64, (1, L + 4 * L))
    y = x.clone()
    t = L + 37  # change one sample: logits of targets at or before it must not move
    y[0, t] = (y[0, t] + 5) % 64
    a, _ = model(x)
    b, _ = model(y)
    k = t - L  # target index of sample t
    torch.testing.assert_close(a[:, :k + 1], b[:, :k + 1])
    assert not torch.allclose(a[:, k + 1:], b[:, k + 1:])


def test_tiny_model_overfits_a_repeated_window():
    model = tiny(**TINY[0]).float()
    L = model.lookback
    torch.manual_seed(0)
    x = torch.randint(0, 64, (4, L + 2 * L))
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    losses = []
    for _ in range(150):
        logits, _ = model(x)
        loss = F.cross_entropy(logits.reshape(-1, 64), x[:, L:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]
