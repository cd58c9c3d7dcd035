"""Predicted parameters: the map between a model's [0, 1] outputs and port values.

DeepAFx predicts every parameter in [0, 1]; each one maps onto its port's
range, or onto a narrower "new range" the chain file gives, linearly or on a
log curve (the port's own ``logarithmic`` property unless the file says).
Integer, toggled and enumeration ports are rounded after mapping, and
frequency ports stay below 0.45 × the sample rate once a rate is known.

The mapping is one compiled kernel (:func:`to_port`, :func:`to_normalized`)
on one row per parameter of a :class:`ParameterTable`. Everything that turns
normalized values into port values uses it: :class:`Parameter`, ``Chain``,
the real-time block of the live host, the offline automation and the MIDI and
web controls — so they cannot disagree.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numba
import numpy as np

from rt_host.errors import ChainError
from rt_host.lv2.plugin import Port
from rt_host.lv2.spec import PredictSpec

HZ_LIMIT = 0.45  # frequency controls stay below this fraction of the sample rate

# columns of a parameter table row
LO, HI, LOG, ROUND, LIMIT = range(5)
COLUMNS = 5


@numba.njit(cache=True, nogil=True)
def to_port(u: float, row: np.ndarray) -> float:
    """The port value of normalized ``u`` for one table ``row``; ``u`` is clipped to [0, 1] (NaN → 0)."""
    if not u >= 0.0:  # also NaN: a port never receives NaN
        u = 0.0
    elif u > 1.0:
        u = 1.0
    lo, hi = row[LO], row[HI]
    if row[LOG] != 0.0:
        v = lo * (hi / lo) ** u
    else:
        v = lo + u * (hi - lo)
    if row[ROUND] != 0.0:
        v = np.rint(v)
    return min(v, row[LIMIT])


@numba.njit(cache=True, nogil=True)
def to_normalized(v: float, row: np.ndarray) -> float:
    """The normalized value of port value ``v`` (clipped to the range; NaN → 0)."""
    lo, hi = row[LO], row[HI]
    if not v >= lo:
        v = lo
    elif v > hi:
        v = hi
    if row[LOG] != 0.0:
        u = math.log(v / lo) / math.log(hi / lo)
    else:
        u = (v - lo) / (hi - lo)
    return min(max(u, 0.0), 1.0)


@numba.njit(cache=True, nogil=True)
def _to_port_rows(u, table, out):
    for i in range(u.shape[0]):
        for j in range(u.shape[1]):
            out[i, j] = to_port(u[i, j], table[j])


@numba.njit(cache=True, nogil=True)
def _to_normalized_rows(v, table, out):
    for i in range(v.shape[0]):
        for j in range(v.shape[1]):
            out[i, j] = to_normalized(v[i, j], table[j])


class ParameterTable:
    """The kernel's view of a list of parameters: a float64 ``(n, 5)`` array (lo, hi, log, round, limit).

    ``sample_rate`` sets the frequency limit (:data:`HZ_LIMIT`); without it
    the values are the nominal ones of the chain file.
    """

    def __init__(self, parameters: Sequence[Parameter], sample_rate: float | None = None) -> None:
        self.parameters = list(parameters)
        self.sample_rate = sample_rate
        self.table = np.zeros((len(self.parameters), COLUMNS), dtype=np.float64)
        for j, p in enumerate(self.parameters):
            self.table[j] = p.row(sample_rate)

    def __len__(self) -> int:
        return len(self.parameters)

    def to_port(self, u) -> np.ndarray:
        """Port values for normalized ``u`` shaped ``(..., n)`` (float64)."""
        u = np.asarray(u, dtype=np.float64)
        if u.shape[-1:] != (len(self.parameters),):
            raise ValueError(f"expected {len(self.parameters)} parameters, got shape {u.shape}")
        if u.size == 0:
            return u.copy()
        flat = np.ascontiguousarray(u.reshape(-1, len(self.parameters)))
        out = np.empty_like(flat)
        _to_port_rows(flat, self.table, out)
        return out.reshape(u.shape)

    def to_normalized(self, values) -> np.ndarray:
        """Normalized values for port values shaped ``(..., n)`` (the inverse of :meth:`to_port`)."""
        v = np.asarray(values, dtype=np.float64)
        if v.shape[-1:] != (len(self.parameters),):
            raise ValueError(f"expected {len(self.parameters)} parameters, got shape {v.shape}")
        if v.size == 0:
            return v.copy()
        flat = np.ascontiguousarray(v.reshape(-1, len(self.parameters)))
        out = np.empty_like(flat)
        _to_normalized_rows(flat, self.table, out)
        return out.reshape(v.shape)


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

    @property
    def unit(self) -> str:
        """A short unit label for people ("Hz", "dB", "ms", … or "" when the plugin gives none)."""
        return self.port.unit_label

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
        # lilv gives float32 ranges: 0.001 in a chain file is the port's 0.0010000000475, not below it
        if (port.minimum is not None and np.float32(lo) < np.float32(port.minimum)) or (
            port.maximum is not None and np.float32(hi) > np.float32(port.maximum)
        ):
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

    def row(self, sample_rate: float | None = None) -> np.ndarray:
        """This parameter's row of a :class:`ParameterTable` (the Hz limit only with a rate)."""
        limit = HZ_LIMIT * sample_rate if (sample_rate and self.port.is_hz) else np.inf
        return np.array(
            [self.minimum, self.maximum, self.scale == "log", self.rounded, limit], dtype=np.float64
        )

    def to_value(self, u):
        """Port value(s) for normalized ``u`` (scalar or array, clipped to [0, 1])."""
        row = self.row()
        a = np.asarray(u, dtype=np.float64)
        out = np.array([to_port(float(x), row) for x in a.reshape(-1)]).reshape(a.shape)
        return out if a.ndim else float(out)

    def to_normalized(self, value):
        """The inverse of :meth:`to_value` (values outside the range clip to 0 or 1)."""
        row = self.row()
        a = np.asarray(value, dtype=np.float64)
        out = np.array([to_normalized(float(x), row) for x in a.reshape(-1)]).reshape(a.shape)
        return out if a.ndim else float(out)

    def describe(self) -> str:
        return f"{self.name:<24} {self.minimum:g} … {self.maximum:g} ({self.scale}), default {self.default:g}"
