"""Polyak averaging of the weights while training: an exponential moving average of every parameter.

With a constant learning rate, the weights at any one step carry that step's gradient noise, and a sample-level
model in free running amplifies it: renders of checkpoints a thousand steps apart swung by tens of dB in level
and hiss, and by up to 0.016 in DC, on an orchestral soundtrack, while the average over the same steps rendered
steadily after its first 2,000 updates and scored lower validation NLL throughout (docs/MEASUREMENTS.md, "What
a checkpoint renders"). The average over the last ~1 / (1 - decay) steps is the model the checkpoints hold,
validation measures and the previews and renders play (as the WaveNet vocoders do); training goes on with its
own weights, kept in the checkpoint for resuming. The first updates use a smaller decay, (1 + n) / (10 + n)
after n updates, so that a young average is not dominated by where it started.
"""

from __future__ import annotations

import copy

import torch


class WeightAverage:
    """The averaged copy of `model` (`.model`), updated after every optimizer step."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.updates = 0
        self.model = copy.deepcopy(model)
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        """Move the average towards `model`'s weights. A weight zero in both stays exactly zero: the pruner
        zeroes pruned weights in the average too (`Pruner(followers=)`) before this runs."""
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        torch._foreach_lerp_(list(self.model.parameters()), list(model.parameters()), 1.0 - d)
        for mine, theirs in zip(self.model.buffers(), model.buffers()):
            mine.copy_(theirs)
        self.updates += 1
