"""SampleRNN (Mehri et al., ICLR 2017): `config.py` its config section, `model.py` the model, `stepper.py` its
fast sampling stepper, `reference.py` the plain generator that stepper is tested against."""

from __future__ import annotations

from ..family import Family
from .config import SampleRNNConfig
from .model import SampleRNN


def _stepper(model: SampleRNN, **options):
    from .stepper import SampleRNNStepper

    return SampleRNNStepper(model, **options)


def _reference(model: SampleRNN, *args, **kwargs):
    from .reference import generate

    return generate(model, *args, **kwargs)


FAMILY = Family(
    config=SampleRNNConfig, model=SampleRNN, stepper=_stepper, reference=_reference,
    # The stepper folds the embedding and the sample-level input layer into exact lookup tables.
    unrounded=("embedding.weight", "mlp.input.weight"),
    plain_kwargs=lambda kwargs: {**kwargs, "weight_norm": False},
    # The matrices a sample reads the most of: the frame tiers' per frame, the sample-level MLP's per sample.
    prunable=("rnns.", "skip_proj.", "upsample.", "mlp.hidden.", "mlp.output.", "head.fine."),
)
