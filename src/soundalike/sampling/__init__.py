"""Autoregressive generation from models with a step-wise interface.

`generate` is the fast engine (`engine.py`); `reference.generate` the plain one it is tested against.
"""

from .engine import Sampler, Stepper, generate, make_stepper
from .reference import NOISE_BLOCK, NoiseStream
from .reference import generate as reference_generate

__all__ = ["NOISE_BLOCK", "NoiseStream", "Sampler", "Stepper", "generate", "make_stepper", "reference_generate"]
