"""Block-sparse weights: gradual magnitude pruning of a model's large matrices during training.

The `sparsity` config section prunes each of a family's prunable weight matrices (`Family.prunable`: for
SampleRNN the frame tiers' RNN, skip and upsampling matrices and the sample-level hidden and output layers) to
`target` of its blocks zero (blocks of `block` = [rows, cols] weights), reached gradually between steps `start`
and `end` on the cubic schedule of Zhu & Gupta (2017), updated every `every` steps: at each update the blocks
with the smallest root mean square (of the weights the model computes with) are set to zero, and they stay zero. A
pruned block is exactly zero in the weights themselves, so the mask is derived from the zeros: checkpoints,
snapshots and exports hold it without a new field, a resumed run finds the same mask, and the compiled sampler
stores a matrix whose 16 x 1 blocks are mostly zero as a block-sparse one (`sampling.kernel.Blocks`). Between
updates the pruned weights' gradients are zeroed (so they do not count in gradient clipping) and the weights
are zeroed again after each optimizer step (Adam's momentum would move them).

A weight-normed matrix (`weight = g * v / |v|` per row) is pruned through `v`: its zeros are the weight's zeros.
A convolution's weight (out, in, k) is pruned as the matrix (out, in * k): a 16 x 1 block is 16 outputs of one
input at one tap, which is a 16 x 1 block of the matrix the compiled WaveNet loop multiplies by too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .errors import UserError


@dataclass
class SparsityConfig:
    target: float = 0.0  # fraction of each prunable matrix's blocks that are zero at the end; 0: no pruning
    start: int = 0  # the step pruning begins
    end: int = 0  # the step `target` is reached (then kept)
    every: int = 100  # steps between updates of the masks
    block: list[int] = field(default_factory=lambda: [16, 1])  # rows x cols of a block (16 x 1: the sampler's)

    def validate(self) -> None:
        """One-line errors naming the key."""
        if not 0 <= self.target < 1:
            raise UserError(f"sparsity.target: must be at least 0 and below 1, got {self.target}")
        if self.start < 0:
            raise UserError(f"sparsity.start: must not be negative, got {self.start}")
        if self.target and self.end <= self.start:
            raise UserError(f"sparsity.end: must be after sparsity.start ({self.start}), got {self.end}")
        if self.every < 1:
            raise UserError(f"sparsity.every: must be positive, got {self.every}")
        if len(self.block) != 2 or any(b < 1 for b in self.block):
            raise UserError(f"sparsity.block: expected [rows, cols] of positive integers, got {self.block}")


def scheduled(cfg: SparsityConfig, step: int) -> float:
    """The fraction of blocks zero after `step` steps: 0 before `start`, target * (1 - (1 - progress)^3) at the
    last update at or before `step`, `target` from `end` on."""
    if not cfg.target or step < cfg.start:
        return 0.0
    at = min(cfg.end, cfg.start + (step - cfg.start) // cfg.every * cfg.every)
    progress = (at - cfg.start) / (cfg.end - cfg.start)
    return cfg.target * (1 - (1 - progress) ** 3)


def prunable(model: torch.nn.Module) -> dict[str, tuple[torch.nn.Module, str, torch.Tensor]]:
    """The model's prunable matrices by name (the name of the weight it computes with): (module, attribute of
    the computed weight, the parameter whose zeros make the weight's zeros)."""
    from .models import family_of

    names = family_of(model).prunable
    out = {}
    for prefix, module in model.named_modules():
        weight_norm = hasattr(module, "parametrizations") and "weight" in module.parametrizations
        for attr, p in module.named_parameters(recurse=False):
            if p.dim() >= 2 and attr.startswith(("weight", "weight_ih", "weight_hh")):
                full = f"{prefix}.{attr}"
                if any(n in full for n in names):
                    out[full] = (module, attr, p)
        if weight_norm and module.weight.dim() >= 2:
            full = f"{prefix}.weight"
            if any(n in full for n in names):
                out[full] = (module, "weight", module.parametrizations.weight.original1)
    return out


def block_norms(w: torch.Tensor, block: list[int]) -> torch.Tensor:
    """w (R, C) -> the root mean square of each block's weights (ceil(R / rows), ceil(C / cols)); a block cut by
    the matrix's edge is the mean over its weights that exist, so that it is not pruned first for being small."""
    br, bc = block
    R, C = w.shape
    pad = (0, -C % bc, 0, -R % br)
    squares = torch.nn.functional.pad(w.detach().float() ** 2, pad)
    count = torch.nn.functional.pad(torch.ones_like(squares[:R, :C]), pad)
    n_rows, n_cols = squares.shape[0] // br, squares.shape[1] // bc
    total = squares.reshape(n_rows, br, n_cols, bc).sum(dim=(1, 3))
    return (total / count.reshape(n_rows, br, n_cols, bc).sum(dim=(1, 3))).sqrt()


def block_mask(w: torch.Tensor, fraction: float, block: list[int]) -> torch.Tensor:
    """The mask (R, C) bool of w keeping all but the `fraction` of its blocks with the smallest norm (ties:
    the first in row-major order go), except that each row of blocks keeps its largest one: no output is cut off
    from every input (and weight norm's |v| of a row never vanishes). A convolution's weight (R, C, k) is the
    matrix (R, C * k)."""
    shape = w.shape
    w = w.reshape(len(w), -1)
    norms = block_norms(w, block)
    n_zero = round(fraction * norms.numel())
    keep = torch.ones(norms.numel(), dtype=torch.bool, device=w.device)
    keep[torch.argsort(norms.flatten(), stable=True)[:n_zero]] = False
    keep = keep.view(norms.shape)
    keep[torch.arange(len(norms), device=w.device), norms.argmax(dim=1)] = True
    br, bc = block
    keep = keep.repeat_interleave(br, 0).repeat_interleave(bc, 1)
    return keep[:w.shape[0], :w.shape[1]].reshape(shape)


class Pruner:
    """Gradual magnitude pruning of `model` by `cfg` (see the module docstring); the masks come from the zeros
    of the weights it is given, so a resumed or `--init-from` model continues where it was. `followers`, copies
    of the model (the weights' average, `averaging.py`), have the same weights zeroed with it."""

    def __init__(self, model: torch.nn.Module, cfg: SparsityConfig, followers: tuple[torch.nn.Module, ...] = ()):
        self.cfg = cfg
        self.matrices = prunable(model) if cfg.target else {}
        self.masks = {name: p.detach() != 0 for name, (_, _, p) in self.matrices.items()}
        self.followers = [prunable(f) for f in followers] if cfg.target else []

    @torch.no_grad()
    def mask_gradients(self) -> None:
        """Zero the gradients of pruned weights (before clipping and the optimizer step)."""
        for name, (_, _, p) in self.matrices.items():
            if p.grad is not None:
                p.grad.mul_(self.masks[name])

    @torch.no_grad()
    def after_step(self, step: int) -> None:
        """After optimizer step number `step` (1-based): at a scheduled update prune to its fraction, and zero
        the pruned weights again."""
        cfg = self.cfg
        if not self.matrices:
            return
        if cfg.start <= step <= cfg.end and (step - cfg.start) % cfg.every == 0 or step == cfg.end:
            fraction = scheduled(cfg, step)
            for name, (module, attr, _) in self.matrices.items():
                self.masks[name] &= block_mask(getattr(module, attr), fraction, cfg.block)
        for matrices in (self.matrices, *self.followers):
            for name, (_, _, p) in matrices.items():
                p.mul_(self.masks[name])

    def density(self) -> float:
        """The fraction of prunable weights that are nonzero."""
        total = sum(m.numel() for m in self.masks.values())
        return sum(int(m.sum()) for m in self.masks.values()) / total if total else 1.0


@torch.no_grad()
def zero_blocks(model: torch.nn.Module, block: list[int] | None = None) -> float:
    """The fraction of the blocks (default 16 x 1, the compiled sampler's) of the model's prunable matrices that
    are zero: the sparsity `soundalike evaluate` reports."""
    mats = [getattr(module, attr) for module, attr, _ in prunable(model).values()]
    norms = [block_norms(w.reshape(len(w), -1), block or [16, 1]) for w in mats]
    total = sum(n.numel() for n in norms)
    return sum(int((n == 0).sum()) for n in norms) / total if total else 0.0


@torch.no_grad()
def prune(model: torch.nn.Module, fraction: float, block: list[int] | None = None) -> torch.nn.Module:
    """Set `fraction` of the blocks of every prunable matrix of `model` to zero at once, by magnitude (on random
    weights: a random pattern at the target sparsity, as the speed measurements use); returns the model."""
    for module, attr, p in prunable(model).values():
        p.mul_(block_mask(getattr(module, attr), fraction, block or [16, 1]))
    return model
