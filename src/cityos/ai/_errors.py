"""Errors of the AI engine.

The hierarchy::

    AIError                     root of every error of cityos.ai (a CityOSError)
    ├── FeatureSpecError        a feature spec names an unknown dataset or field, or is inconsistent
    ├── HorizonError            a horizon longer than the model or the data allows
    ├── NotFittedError          predict / save before fit
    ├── ShapeError              inputs whose shape or nodes do not match what the model was fitted on
    ├── UnknownModel            a model family not in the zoo's registry
    └── RegistryError           the model registry refused an operation
        └── VersionNotFound     no such registered model or version

Messages name what was wrong, where, and what to do.
"""

from __future__ import annotations

from cityos.errors import CityOSError

__all__ = [
    "AIError",
    "FeatureSpecError",
    "HorizonError",
    "NotFittedError",
    "RegistryError",
    "ShapeError",
    "UnknownModel",
    "VersionNotFound",
]


class AIError(CityOSError):
    """Root of every error raised by :mod:`cityos.ai`."""


class FeatureSpecError(AIError, ValueError):
    """A feature spec names an unknown dataset or field, or its options are inconsistent."""


class HorizonError(AIError, ValueError):
    """A horizon longer than the model was trained for or than the data allows."""


class NotFittedError(AIError):
    """A model was asked to predict or save before it was fitted."""


class ShapeError(AIError, ValueError):
    """Inputs whose shape, channels or nodes differ from what the model was fitted on."""


class UnknownModel(AIError, KeyError):
    """A model family that is not in the zoo's registry."""

    def __str__(self) -> str:
        return str(self.args[0])


class RegistryError(AIError):
    """The model registry refused an operation (nothing was changed)."""


class VersionNotFound(RegistryError, KeyError):
    """No registered model of that name, or no such version of it."""

    def __str__(self) -> str:
        return str(self.args[0])
