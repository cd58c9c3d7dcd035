"""Held parameters: predicted ports a training recipe holds at one value, played at it everywhere.

A recipe may hold some of a chain's predicted ports (``[chain] held`` in
``training/configs/TASK.toml``, in **port units**: ``"gate.freq1" = 1000.0``
is 1 kHz). The encoder still outputs every parameter, so a bundle's
output count always matches its chain, but training, evaluation, offline
render and the live host all replace those outputs with the held values.
Bundles write them to ``[held]`` in port units too (bundle format 2); format 1
bundles held normalized values, which :meth:`HeldParameters.from_normalized`
still reads.

"Held" is not "fixed": a chain file's ``fixed`` ports are never predicted at
all, and are not in the encoder's output.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from rt_host.errors import ChainError
from rt_host.lv2.parameters import Parameter


class HeldParameters:
    """Which predicted parameters are held, at which port values (and their normalized values)."""

    def __init__(
        self, parameters: Sequence[Parameter], values: Mapping[str, float], where: str = "held"
    ) -> None:
        self.names = [p.name for p in parameters]
        by_name = {p.name: p for p in parameters}
        self.port: dict[str, float] = {}
        self.normalized: dict[str, float] = {}
        for name, value in values.items():
            p = by_name.get(name)
            if p is None:
                raise ChainError(f"{where}: {name!r} is not a predicted parameter of the chain")
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ChainError(f"{where}: {name} must be a finite number in port units, not {value!r}")
            if not p.minimum <= value <= p.maximum:
                raise ChainError(
                    f"{where}: {name} = {value:g} is outside its range {p.minimum:g} … {p.maximum:g} "
                    "(held values are in port units)"
                )
            self.port[name] = float(value)
            self.normalized[name] = float(p.to_normalized(value))
        self.indices = np.array([self.names.index(n) for n in self.port], dtype=np.int64)
        self.values = np.array(list(self.normalized.values()), dtype=np.float64)

    @classmethod
    def from_normalized(
        cls, parameters: Sequence[Parameter], normalized: Mapping[str, float], where: str = "held"
    ) -> HeldParameters:
        """Held values given normalized, in [0, 1] (bundles of format 1)."""
        by_name = {p.name: p for p in parameters}
        port = {}
        for name, u in normalized.items():
            if name not in by_name:
                raise ChainError(f"{where}: {name!r} is not a predicted parameter of the chain")
            if isinstance(u, bool) or not isinstance(u, int | float) or not 0.0 <= u <= 1.0:
                raise ChainError(f"{where}: {name} must be a normalized value in [0, 1], not {u!r}")
            port[name] = float(by_name[name].to_value(u))
        return cls(parameters, port, where)

    def __bool__(self) -> bool:
        return bool(self.port)

    def __contains__(self, name: str) -> bool:
        return name in self.port

    def apply(self, u: np.ndarray) -> np.ndarray:
        """``u`` (``(..., n_params)``, changed in place) with the held parameters at their values."""
        if len(self.indices):
            u[..., self.indices] = self.values
        return u

    def free_names(self) -> list[str]:
        """The predicted parameters that are not held."""
        return [n for n in self.names if n not in self.port]
