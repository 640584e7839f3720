"""The record that registers a model family (see `soundalike.models.FAMILIES`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import torch


class ModelConfig(Protocol):
    """A family's `model` config section: a dataclass whose fields are its model's constructor arguments
    (all but `q_levels`, which comes from the `data` section), with `heads.HeadConfig`'s among them."""

    family: ClassVar[str]
    output: str
    mixtures: int

    def validate(self, seq_len: int) -> None:
        """Raise a `UserError` naming the key for values that types alone cannot rule out; `seq_len` is
        `train.seq_len`, which a family may constrain."""


@dataclass(frozen=True)
class Family:
    """One model family: its config section, its model, its sampling stepper and its compact-weights rule."""

    config: type  # a `ModelConfig` dataclass
    model: type[torch.nn.Module]  # built from the config's fields and q_levels; exposes `kwargs` and `lookback`
    # (model, device=, dtype=, backend=, weights=) -> its `sampling.engine.Stepper`; imports the stepper's
    # module only when called, so that building and training a model never loads the sampling code.
    stepper: Callable[..., Any]
    # (model, n_samples, batch, temperature, seed, prime, min_p, bias=[, pull=, heard=]) -> (B, n_samples) levels:
    # the plain generator, one step per sample, that the stepper is tested against (`sampling.reference.generate`;
    # pull and heard, the heard tilt, only when one is asked for).
    reference: Callable[..., torch.Tensor]
    # Compact-weights rule (`render --weights bf16|int8`): names (suffixes) of the weight matrices that the
    # stepper keeps exact; every other weight matrix is stored rounded.
    unrounded: tuple[str, ...] = ()
    # The constructor arguments of the same model holding plain weight matrices (reparametrizations such as
    # weight norm folded), which `sampling.engine.with_compact_weights` fills with the rounded values.
    plain_kwargs: Callable[[dict], dict] = dict
    # Pruning (`soundalike.sparsity`): name fragments of the weight matrices the `sparsity` section prunes.
    prunable: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """The family's name, as `model.family` spells it."""
        return self.config.family

    def build(self, cfg: ModelConfig, q_levels: int) -> torch.nn.Module:
        """The model of a config section, with fresh weights."""
        return self.model(**dataclasses.asdict(cfg), q_levels=q_levels)

    def config_keys(self) -> list[str]:
        """The keys of the family's `model` section besides `family`."""
        return [f.name for f in dataclasses.fields(self.config)]
