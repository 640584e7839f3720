"""WaveNet (van den Oord et al., 2016): `config.py` its config section, `model.py` the model with its plain
Fast WaveNet queues, `stepper.py` its fast sampling stepper and the plain generators it is tested against."""

from __future__ import annotations

from ..family import Family
from .config import WaveNetConfig
from .model import WaveNet


def _stepper(model: WaveNet, **options):
    from .stepper import WaveNetStepper

    return WaveNetStepper(model, **options)


def _reference(model: WaveNet, *args, **kwargs):
    from .stepper import reference_generate

    return reference_generate(model, *args, **kwargs)


FAMILY = Family(
    config=WaveNetConfig, model=WaveNet, stepper=_stepper, reference=_reference,
    unrounded=("embedding.weight",),  # a row lookup, not a matrix product: kept exact
    # every layer's dilated convolution and residual projection, the skip projection and the output layers
    prunable=("convs.", "residual.", "skip.", "out_hidden.", "out.", "head.fine."),
)
