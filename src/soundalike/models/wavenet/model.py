"""WaveNet (van den Oord et al., 2016) over quantized raw audio, as the SampleRNN paper's WaveNet baseline.

Layers: an embedding of the input levels (a one-hot input times a 1x1 convolution), then `n_stacks` stacks of
`n_layers` dilated causal convolutions of width `kernel_size` with dilations 1, 2, 4, ..., 2**(n_layers - 1),
each a gated tanh-sigmoid unit with a residual path (1x1 convolution added to its input) and a skip path;
the skip outputs of all layers are summed, and ReLU, 1x1, ReLU make the output head's features, which a 1x1
convolution maps to its parameters (`heads.Head`; the logits over `q_levels` for a softmax head). Above
`heads.BYTE_INPUT_LEVELS` levels the input embedding is a row per byte of the level, summed.

Receptive field: a layer of dilation d and width k sees (k - 1) * d samples more than its input, so the
prediction of one sample depends on 1 + (k - 1) * sum(dilations) previous samples. The SampleRNN paper's
baseline (4 stacks x 10 layers, k = 2): sum(dilations) = 4 * (1 + 2 + ... + 512) = 4 * 1023 = 4092, which is
the paper's "receptive field of 4,092"; counted with the newest input sample it is 4,093 samples.

Sequence convention (shared with SampleRNN and `soundalike.data`): a window `x` (B, lookback + T) of levels;
the model predicts the T targets `x[:, lookback:]` from `x[:, :-1]`. With `lookback` = the receptive field,
every target sees its whole receptive field inside the window, so the model needs no state across windows:
`forward` takes the trainer's `state` and `reset` and ignores them (returns None as the new state).

Generation (Fast WaveNet, Paine et al., 2016): a layer of dilation d needs its own input from (k - 1) * d
steps ago, so each layer keeps a queue of its last (k - 1) * d inputs and one new sample costs one step per
layer. `initial_queues` / `step` are the plain version of that, the reference for the sampling engine's
stepper (`stepper.py`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ... import loudness
from ..heads import Head, input_digits, split_digits

Queues = list  # one tensor per layer: its last (k - 1) * dilation inputs (B, residual_channels, (k - 1) * d)


class WaveNet(nn.Module):
    """The whole model; built from its config section (`WaveNetConfig`) or a checkpoint's kwargs."""

    def __init__(self, n_stacks: int = 4, n_layers: int = 10, residual_channels: int = 64,
                 dilation_channels: int = 64, skip_channels: int = 64, out_channels: int = 256,
                 kernel_size: int = 2, q_levels: int = 256, output: str = "softmax", mixtures: int = 10,
                 level_input: bool = False):
        super().__init__()
        self.kwargs = {"n_stacks": n_stacks, "n_layers": n_layers, "residual_channels": residual_channels,
                       "dilation_channels": dilation_channels, "skip_channels": skip_channels,
                       "out_channels": out_channels, "kernel_size": kernel_size, "q_levels": q_levels,
                       "output": output, "mixtures": mixtures, "level_input": level_input}
        assert kernel_size >= 2, f"kernel_size must be at least 2, got {kernel_size}"
        self.q_levels, self.kernel_size = q_levels, kernel_size
        self.residual_channels, self.dilation_channels = residual_channels, dilation_channels
        self.dilations = [2 ** i for _ in range(n_stacks) for i in range(n_layers)]
        self.receptive_field = 1 + (kernel_size - 1) * sum(self.dilations)
        self.lookback = self.receptive_field
        R, D = residual_channels, dilation_channels
        self.digits, self.radix = input_digits(q_levels)
        self.embedding = nn.Embedding(self.digits * self.radix, R)  # a level: the sum of its digits' rows
        # Filter and gate halves of each gated unit in one convolution: (B, R, n) -> (B, 2D, n - (k-1)d).
        self.convs = nn.ModuleList(nn.Conv1d(R, 2 * D, kernel_size, dilation=d) for d in self.dilations)
        # No bias: a constant added to the residual stream is absorbed by the next convolutions' biases. The
        # last layer has no residual output (nothing reads it).
        self.residual = nn.ModuleList(nn.Conv1d(D, R, 1, bias=False) for _ in self.dilations[:-1])
        # The sum of every layer's 1x1 skip convolution is one 1x1 convolution of their concatenated inputs.
        self.skip = nn.Conv1d(len(self.dilations) * D, skip_channels, 1)
        self.out_hidden = nn.Conv1d(skip_channels, out_channels, 1)
        self.head = Head(output, out_channels, q_levels, mixtures)
        self.out = nn.Conv1d(out_channels, self.head.n_params, 1)
        # Loudness conditioning (`soundalike.loudness`): the level joins every gated unit's input.
        loudness.add_input(self, len(self.dilations) * 2 * D, level_input)

    def level_cond(self, level: torch.Tensor | None, batch: int) -> list[torch.Tensor] | None:
        """Levels (B,) in dB (None: `level_default`) -> what each layer's convolution output gets added
        (B, 2D, 1), one per layer; None without a level input."""
        added = loudness.conditioning(self, level, batch)
        return None if added is None else list(added[:, :, None].chunk(len(self.dilations), dim=1))

    @torch.no_grad()
    def fold_level(self, f: float) -> None:
        """Fold the constant input `f` (`loudness.feature`) into the convolutions' biases; drop the level input."""
        for conv, w in zip(self.convs, self.level_proj.weight[:, 0].chunk(len(self.dilations))):
            conv.bias += w * f
        loudness.drop_input(self)

    def embed(self, levels: torch.Tensor) -> torch.Tensor:
        """Levels (...) -> input embeddings (..., R)."""
        rows = split_digits(levels, self.q_levels) + torch.arange(self.digits, device=levels.device) * self.radix
        return self.embedding(rows).sum(dim=-2)

    def gate(self, a: torch.Tensor) -> torch.Tensor:
        """Convolution output (B, 2D, ...) -> gated activations tanh(filter) * sigmoid(gate) (B, D, ...)."""
        f, g = a.chunk(2, dim=1)
        return torch.tanh(f) * torch.sigmoid(g)

    def features(self, skip: torch.Tensor) -> torch.Tensor:
        """Skip sum (B, skip_channels, T) -> the head's features (B, out_channels, T)."""
        return F.relu(self.out_hidden(F.relu(skip)))

    def forward(self, x: torch.Tensor, state=None, reset: torch.Tensor | None = None,
                nll: bool = False, targets: torch.Tensor | None = None,
                level: torch.Tensor | None = None) -> tuple[torch.Tensor, None]:
        """x (B, lookback + T) levels -> the head's parameters (B, T, n_params) for the targets x[:, lookback:]
        (the logits, for a softmax head), or with `nll` their NLL in nats (B, T); and None (no state).
        `targets` (B, T) levels replace x[:, lookback:] as what the NLL scores (training on noisy inputs);
        `level` (B,) the windows' levels in dB (`AudioDataset.window_levels`) for a model with a level input
        (None: its `level_default`)."""
        T = x.shape[1] - self.lookback
        added = self.level_cond(level, x.shape[0])
        assert T > 0, f"window of {x.shape[1]} samples: expected more than lookback={self.lookback}"
        h = self.embed(x[:, :-1]).transpose(1, 2)  # (B, R, lookback + T - 1)
        gated = []
        for i, conv in enumerate(self.convs):
            a = conv(h)
            z = self.gate(a if added is None else a + added[i])  # (B, D, n): n = h's length - (k - 1) * dilation
            gated.append(z[:, :, -T:])  # only the last T positions reach the output
            if i < len(self.residual):
                h = h[:, :, -z.shape[2]:] + self.residual[i](z)
        z = self.features(self.skip(torch.cat(gated, dim=1)))  # (B, O, T)
        params = self.out(z).transpose(1, 2)  # (B, T, n_params)
        if nll:
            y = x[:, self.lookback:] if targets is None else targets
            return self.head.nll(params, z.transpose(1, 2), y), None
        return params, None

    # --- step-wise interface: the plain Fast WaveNet, the reference for the sampling engine ---------------

    @torch.no_grad()
    def initial_queues(self, history: torch.Tensor) -> Queues:
        """history (B, receptive_field - 1) levels before the next input -> every layer's queue of past inputs."""
        assert history.shape[1] == self.receptive_field - 1, \
            f"expected {self.receptive_field - 1} history samples, got {history.shape[1]}"
        h = self.embed(history).transpose(1, 2)  # (B, R, receptive_field - 1)
        added = self.level_cond(None, h.shape[0])
        queues = []
        for i, (conv, d) in enumerate(zip(self.convs, self.dilations)):
            queues.append(h[:, :, h.shape[2] - (self.kernel_size - 1) * d:].clone())
            if i < len(self.residual):
                a = conv(h)
                z = self.gate(a if added is None else a + added[i])
                h = h[:, :, -z.shape[2]:] + self.residual[i](z)
        return queues

    @torch.no_grad()
    def step(self, level: torch.Tensor, queues: Queues) -> tuple[torch.Tensor, torch.Tensor]:
        """The newest input level (B,) -> the head's parameters (B, n_params) and features (B, out_channels) for
        the sample after it; pushes it on the queues."""
        # One position of each convolution is a matrix product (F.linear): much faster than conv1d on length-k
        # inputs, and in float64 conv1d has no fast CPU path at all.
        B = level.shape[0]
        h = self.embed(level)[:, :, None]  # (B, R, 1)
        added = self.level_cond(None, B)
        gated = []
        for i, (conv, d) in enumerate(zip(self.convs, self.dilations)):
            q = queues[i]
            taps = torch.cat([q[:, :, ::d], h], dim=2)  # (B, R, k): inputs (k-1)d, ..., d, 0 steps ago
            a = F.linear(taps.reshape(B, -1), conv.weight.reshape(conv.out_channels, -1), conv.bias)
            z = self.gate(a if added is None else a + added[i][:, :, 0])
            queues[i] = torch.cat([q[:, :, 1:], h], dim=2)
            gated.append(z)  # (B, D)
            if i < len(self.residual):
                h = h + F.linear(z, self.residual[i].weight[:, :, 0])[:, :, None]
        skip = F.linear(torch.cat(gated, dim=1), self.skip.weight[:, :, 0], self.skip.bias)  # (B, S)
        z = self.features(skip[:, :, None])
        return self.out(z)[:, :, 0], z[:, :, 0]
