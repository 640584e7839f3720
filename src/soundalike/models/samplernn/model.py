"""Multi-tier SampleRNN (Mehri et al., ICLR 2017) over quantized raw audio.

Tiers, top to bottom: frame-level RNN tiers that each read the previous frame of samples and condition the
tier below through learned per-position upsampling projections, then a sample-level MLP that predicts each
sample from the embeddings of the previous `frame_sizes[0]` samples and the conditioning above it.

Sequence convention (shared with `soundalike.data`): a window `x` of shape (B, lookback + T) holds levels;
the model predicts the T targets `x[:, lookback:]` from `x[:, :-1]`, where `lookback` is the top tier's frame
size. Consecutive TBPTT windows overlap by `lookback` samples and carry the recurrent state.

The sample-level input layer (embedding, then a linear map of the concatenated embeddings) is computed as a
sum of rows of per-position lookup tables `table[p] = E @ W_p`: one gather-and-sum per sample instead of an
(fs * emb) x dim matrix product, in training as in generation. `folded=False` keeps the plain path for tests.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm as _weight_norm

from ... import loudness
from ..heads import Head, input_digits, split_digits
from .config import top_frame_size

State = list  # one entry per tier, bottom first: a tensor (n_rnn, B, dim) for GRU, a pair of them for LSTM


def _wn(module: nn.Module, enabled: bool) -> nn.Module:
    return _weight_norm(module) if enabled else module


class FrameTier(nn.Module):
    """One frame-level tier: frames of `frame_size` samples -> `ratio` conditioning vectors per frame."""

    def __init__(self, frame_size: int, ratio: int, dim: int, n_rnn: int, rnn_type: str,
                 skip_connections: bool, weight_norm: bool, learn_h0: bool):
        super().__init__()
        self.frame_size, self.ratio, self.dim, self.n_rnn = frame_size, ratio, dim, n_rnn
        self.lstm = rnn_type == "lstm"
        self.skip = skip_connections and n_rnn > 1
        rnn_cls = nn.LSTM if self.lstm else nn.GRU
        self.input_proj = _wn(nn.Linear(frame_size, dim), weight_norm)
        if self.skip:
            # Separate layers so that every layer's output reaches the tier's output projection.
            self.rnns = nn.ModuleList(rnn_cls(dim, dim, batch_first=True) for _ in range(n_rnn))
            self.skip_proj = _wn(nn.Linear(n_rnn * dim, dim), weight_norm)
        else:
            self.rnns = nn.ModuleList([rnn_cls(dim, dim, num_layers=n_rnn, batch_first=True)])
        self.upsample = _wn(nn.Linear(dim, ratio * dim), weight_norm)
        n_states = 2 if self.lstm else 1
        self.h0 = nn.Parameter(torch.zeros(n_states, n_rnn, 1, dim), requires_grad=learn_h0)
        self._init_rnn()

    def _init_rnn(self) -> None:
        # Orthogonal recurrent weights and a positive forget-gate bias help long TBPTT training.
        for rnn in self.rnns:
            for name, p in rnn.named_parameters():
                if name.startswith("weight_hh"):
                    for chunk in p.data.chunk(4 if self.lstm else 3, 0):
                        nn.init.orthogonal_(chunk)
                elif name.startswith("bias") and self.lstm:
                    p.data.zero_()
                    p.data[self.dim:2 * self.dim] = 1.0

    def initial_state(self, batch: int) -> torch.Tensor | tuple:
        """The state at the start of a sequence for `batch` streams."""
        h0 = self.h0.expand(-1, -1, batch, -1).contiguous()
        return (h0[0], h0[1]) if self.lstm else h0[0]

    def reset_state(self, state, reset: torch.Tensor | None, batch: int):
        """Replace the state of streams where `reset` (B,) is true by the initial state."""
        init = self.initial_state(batch)
        if state is None:
            return init
        if reset is None:
            return state
        keep = ~reset.view(1, -1, 1)
        if self.lstm:
            return tuple(torch.where(keep, s, i) for s, i in zip(state, init))
        return torch.where(keep, state, init)

    def forward(self, frames: torch.Tensor, cond: torch.Tensor | None, state, reset=None):
        """frames (B, F, frame_size) floats, cond (B, F, dim) or None -> (B, F * ratio, dim), new state."""
        B, n_frames, _ = frames.shape
        h = self.input_proj(frames)  # (B, F, dim)
        if cond is not None:
            h = h + cond
        state = self.reset_state(state, reset, B)
        if self.skip:
            outs, new_h, new_c = [], [], []
            for i, rnn in enumerate(self.rnns):
                s = (state[0][i:i + 1].contiguous(), state[1][i:i + 1].contiguous()) if self.lstm \
                    else state[i:i + 1].contiguous()
                h, s = rnn(h, s)
                outs.append(h)
                if self.lstm:
                    new_h.append(s[0])
                    new_c.append(s[1])
                else:
                    new_h.append(s)
            out = self.skip_proj(torch.cat(outs, dim=-1))
            new_state = (torch.cat(new_h), torch.cat(new_c)) if self.lstm else torch.cat(new_h)
        else:
            out, new_state = self.rnns[0](h, state)
        up = self.upsample(out)  # (B, F, ratio * dim): one learned projection per position
        return up.reshape(B, n_frames * self.ratio, self.dim), new_state


class SampleMLP(nn.Module):
    """Sample-level MLP: previous `context` levels + conditioning -> features (dim) -> the head's parameters."""

    def __init__(self, context: int, dim: int, emb_size: int, q_levels: int, weight_norm: bool, output: str,
                 mixtures: int):
        super().__init__()
        self.context, self.q_levels, self.dim = context, q_levels, dim
        self.digits, self.radix = input_digits(q_levels)
        self.embedding = nn.Embedding(self.digits * self.radix, emb_size)  # a level: the sum of its digits' rows
        # A convolution over the context's embeddings = one linear map of their concatenation.
        self.input = _wn(nn.Conv1d(emb_size, dim, context, bias=False), weight_norm)
        self.hidden = _wn(nn.Linear(dim, dim), weight_norm)
        self.head = Head(output, dim, q_levels, mixtures)
        self.output = _wn(nn.Linear(dim, self.head.n_params), weight_norm)

    def rows(self, levels: torch.Tensor) -> torch.Tensor:
        """Levels (...) -> the embedding rows of their digits (..., digits)."""
        return split_digits(levels, self.q_levels) + torch.arange(self.digits, device=levels.device) * self.radix

    def input_tables(self) -> torch.Tensor:
        """Per-position lookup tables (context, digits * radix, dim): table[p, r] = W[:, :, p] @ E[r]."""
        return torch.einsum("qe,dep->pqd", self.embedding.weight, self.input.weight)

    def input_layer(self, prev: torch.Tensor, folded: bool = True) -> torch.Tensor:
        """prev (B, T + context - 1) levels -> first-layer activations (B, T, dim), before conditioning."""
        if not folded:
            emb = self.embedding(self.rows(prev)).sum(dim=2).transpose(1, 2)  # (B, emb, T + context - 1)
            return self.input(emb).transpose(1, 2)
        B = prev.shape[0]
        windows = self.rows(prev.unfold(1, self.context, 1))  # (B, T, context, digits)
        offsets = torch.arange(self.context, device=prev.device)[:, None] * (self.digits * self.radix)
        idx = (windows + offsets).reshape(-1, self.context * self.digits)
        tables = self.input_tables().reshape(-1, self.dim)
        return F.embedding_bag(idx, tables, mode="sum").view(B, -1, self.dim)

    def features(self, h: torch.Tensor) -> torch.Tensor:
        """First-layer activations with conditioning (..., dim) -> the head's features (..., dim)."""
        return F.relu(self.hidden(F.relu(h)))

    def forward(self, prev: torch.Tensor, cond: torch.Tensor, folded: bool = True) -> torch.Tensor:
        """prev (B, T + context - 1) levels, cond (B, T, dim) -> features (B, T, dim)."""
        return self.features(self.input_layer(prev, folded) + cond)


class SampleRNN(nn.Module):
    """The whole model; built from its config section (`SampleRNNConfig`) or a checkpoint's kwargs."""

    def __init__(self, frame_sizes: list[int], dim: int = 1024, n_rnn: int = 1, rnn_type: str = "gru",
                 emb_size: int = 256, q_levels: int = 256, skip_connections: bool = False,
                 weight_norm: bool = True, learn_h0: bool = True, output: str = "softmax", mixtures: int = 10,
                 level_input: bool = False):
        super().__init__()
        self.kwargs = {"frame_sizes": list(frame_sizes), "dim": dim, "n_rnn": n_rnn, "rnn_type": rnn_type,
                       "emb_size": emb_size, "q_levels": q_levels, "skip_connections": skip_connections,
                       "weight_norm": weight_norm, "learn_h0": learn_h0, "output": output, "mixtures": mixtures,
                       "level_input": level_input}
        self.frame_sizes, self.q_levels, self.dim = list(frame_sizes), q_levels, dim
        self.tier_frames = [top_frame_size(frame_sizes[:k + 1]) for k in range(len(frame_sizes))]
        self.lookback = self.tier_frames[-1]
        self.tiers = nn.ModuleList(
            FrameTier(n, r, dim, n_rnn, rnn_type, skip_connections, weight_norm, learn_h0)
            for n, r in zip(self.tier_frames, frame_sizes))
        self.mlp = SampleMLP(frame_sizes[0], dim, emb_size, q_levels, weight_norm, output, mixtures)
        self.head = self.mlp.head
        # Loudness conditioning (`soundalike.loudness`): the level joins the top tier's input.
        loudness.add_input(self, dim, level_input)

    def level_cond(self, level: torch.Tensor | None, batch: int) -> torch.Tensor | None:
        """Levels (B,) in dB (None: `level_default`) -> the top tier's added input (B, dim); None without a
        level input."""
        return loudness.conditioning(self, level, batch)

    @torch.no_grad()
    def fold_level(self, f: float) -> None:
        """Fold the constant input `f` (`loudness.feature`) into the top tier's bias; drop the level input."""
        self.tiers[-1].input_proj.bias += self.level_proj.weight[:, 0] * f
        loudness.drop_input(self)

    def to_grid(self, levels: torch.Tensor) -> torch.Tensor:
        """Levels -> floats in [-1, 1), linear in the level (the frame tiers' input)."""
        half = self.q_levels // 2
        return (levels.to(self.tiers[0].h0.dtype) - half) / half

    def initial_state(self, batch: int) -> State:
        return [tier.initial_state(batch) for tier in self.tiers]

    def forward(self, x: torch.Tensor, state: State | None = None, reset: torch.Tensor | None = None,
                folded: bool = True, nll: bool = False, targets: torch.Tensor | None = None,
                level: torch.Tensor | None = None) -> tuple[torch.Tensor, State]:
        """x (B, lookback + T) levels, reset (B,) bool -> the head's parameters (B, T, n_params) for the targets
        x[:, lookback:] (the logits, for a softmax head), or with `nll` their NLL in nats (B, T); and the state.
        `targets` (B, T) levels replace x[:, lookback:] as what the NLL scores (training on noisy inputs);
        `level` (B,) the windows' levels in dB (`AudioDataset.window_levels`) for a model with a level input
        (None: its `level_default`)."""
        B, total = x.shape
        T = total - self.lookback
        assert T > 0 and T % self.lookback == 0, f"window length {total} - {self.lookback} must be a multiple"
        grid = self.to_grid(x)
        state = state if state is not None else [None] * len(self.tiers)
        new_state: State = [None] * len(self.tiers)
        top = self.level_cond(level, B)
        cond = None if top is None else top[:, None, :].expand(B, T // self.lookback, self.dim)
        for k in reversed(range(len(self.tiers))):
            n = self.tier_frames[k]
            start = self.lookback - n
            frames = grid[:, start:start + T].reshape(B, T // n, n)  # frame j precedes target block j
            cond, new_state[k] = self.tiers[k](frames, cond, state[k], reset)
        fs = self.frame_sizes[0]
        z = self.mlp(x[:, self.lookback - fs:total - 1], cond, folded)
        params = self.mlp.output(z)
        if nll:
            return self.head.nll(params, z, x[:, self.lookback:] if targets is None else targets), new_state
        return params, new_state

    # --- step-wise interface, used by generation -------------------------------------------------------

    def tier_step(self, k: int, frame: torch.Tensor, cond: torch.Tensor | None, state):
        """Tier k on one frame: frame (B, tier_frames[k]) levels, cond (B, dim) -> (B, ratio_k, dim), state."""
        if cond is None and k == len(self.tiers) - 1:
            cond = self.level_cond(None, frame.shape[0])
        c = None if cond is None else cond[:, None, :]
        out, state = self.tiers[k](self.to_grid(frame)[:, None, :], c, state)
        return out, state

    def sample_outputs(self, prev: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """prev (B, frame_sizes[0]) levels, cond (B, dim) -> the head's parameters (B, n_params) and features
        (B, dim) for the next sample."""
        # For one position the plain embedding + convolution is cheaper than building the folded tables.
        z = self.mlp(prev, cond[:, None, :], folded=False)[:, 0]
        return self.mlp.output(z), z

