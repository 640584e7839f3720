"""Autoregressive generation from models with a step-wise interface."""

from .reference import generate

__all__ = ["generate"]
