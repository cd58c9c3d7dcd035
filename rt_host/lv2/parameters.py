"""Predicted parameters: the map between a model's [0, 1] outputs and port values.

DeepAFx predicts every parameter in [0, 1]; each one maps onto its port's
range, or onto a narrower "new range" the chain file gives, linearly or on a
log curve (the port's own ``logarithmic`` property unless the file says).
Integer, toggled and enumeration ports are rounded after mapping.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from rt_host.errors import ChainError
from rt_host.lv2.plugin import Port
from rt_host.lv2.spec import PredictSpec


@dataclass(frozen=True)
class Parameter:
    """One predicted control port of a chain, named ``"stage.symbol"``."""

    name: str
    stage: str
    symbol: str
    port: Port
    minimum: float
    maximum: float
    scale: str  # "linear" or "log"
    default: float

    @property
    def rounded(self) -> bool:
        return self.port.integer or self.port.toggled or self.port.enumeration

    @classmethod
    def build(cls, stage: str, port: Port, spec: PredictSpec) -> Parameter:
        name = f"{stage}.{port.symbol}"
        if not port.is_control_input:
            raise ChainError(f"{name}: only control inputs can be predicted ({port.kind} {port.direction})")
        lo = spec.minimum if spec.minimum is not None else port.minimum
        hi = spec.maximum if spec.maximum is not None else port.maximum
        if lo is None or hi is None:
            raise ChainError(f"{name}: the plugin gives no range; set min and max in the chain file")
        if not lo < hi:
            raise ChainError(f"{name}: min ({lo:g}) must be below max ({hi:g})")
        if port.minimum is not None and lo < port.minimum or port.maximum is not None and hi > port.maximum:
            raise ChainError(
                f"{name}: range {lo:g} … {hi:g} leaves the port's {port.minimum:g} … {port.maximum:g}"
            )
        scale = spec.scale or ("log" if port.logarithmic and lo > 0 else "linear")
        if scale == "log" and lo <= 0:
            raise ChainError(f'{name}: a log scale needs min > 0 (got {lo:g}); set min or scale = "linear"')
        default = spec.default if spec.default is not None else port.default
        if default is None:
            default = lo
        default = min(max(default, lo), hi)
        return cls(name, stage, port.symbol, port, float(lo), float(hi), scale, float(default))

    def to_value(self, u):
        """Port value(s) for normalized ``u`` (scalar or array, clipped to [0, 1])."""
        u = np.clip(np.asarray(u, dtype=np.float64), 0.0, 1.0)
        if self.scale == "log":
            v = self.minimum * (self.maximum / self.minimum) ** u
        else:
            v = self.minimum + u * (self.maximum - self.minimum)
        if self.rounded:
            v = np.round(v)
        return v

    def to_normalized(self, value):
        """The inverse of :meth:`to_value` (values outside the range clip to 0 or 1)."""
        v = np.clip(np.asarray(value, dtype=np.float64), self.minimum, self.maximum)
        if self.scale == "log":
            u = np.log(v / self.minimum) / math.log(self.maximum / self.minimum)
        else:
            u = (v - self.minimum) / (self.maximum - self.minimum)
        return np.clip(u, 0.0, 1.0)

    def describe(self) -> str:
        return f"{self.name:<24} {self.minimum:g} … {self.maximum:g} ({self.scale}), default {self.default:g}"
