"""The unit of work a worker does: one :class:`Task` on one example of a batch.

A batch is a few named arrays (see :func:`input_layout`), the same for every
backend; tasks name the example they work on, so any worker can take any task.

===========  ======================================  =====  ==============
kind         work                                    renders result
===========  ======================================  =====  ==============
forward      ``y[b] = f(x[b], u[b])``                1      ``y[b]``
spsa         SPSA draw ``k`` with ``delta[b, k]``    2      ``g[b, k]``
fd           central difference along param ``j``    2      ``g[b, j]``
input        input-gradient draw ``k`` (``seed``)    2      ``gx[b, k]``
===========  ======================================  =====  ==============

Arrays: ``x`` float32 ``(B, C, preroll + N)``, ``u`` float64 ``(B, P)`` (every
parameter of the chain, normalized), ``dy`` float32 ``(B, C, N)``, ``delta``
float32 ``(B, K, P)`` in {−1, 0, +1}.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from training.spsa import estimators
from training.spsa.renderer import Renderer

KINDS = ("forward", "spsa", "fd", "input", "exit")


@dataclass(frozen=True)
class Task:
    """One piece of work; small and picklable (the audio stays in the batch arrays)."""

    kind: str
    example: int
    index: int = 0  # SPSA / input draw k, or the parameter j of a finite difference
    epsilon: float = 0.0
    seed: int = 0

    def describe(self) -> str:
        what = {
            "forward": "the forward render",
            "spsa": f"SPSA draw {self.index}",
            "fd": f"the finite difference of parameter {self.index}",
            "input": f"input-gradient draw {self.index}",
            "exit": "a worker exit (test hook)",
        }[self.kind]
        return f"{what} of example {self.example}"


def execute(renderer: Renderer, task: Task, a: dict[str, np.ndarray]) -> np.ndarray:
    """Do ``task`` with the batch arrays ``a``; returns the result piece."""
    b = task.example
    if task.kind == "forward":
        return renderer.render(a["x"][b], a["u"][b])
    if task.kind == "spsa":
        return estimators.spsa_gradient(
            renderer.render, a["x"][b], a["u"][b], a["dy"][b], a["delta"][b, task.index], task.epsilon
        )
    if task.kind == "fd":
        return np.float64(
            estimators.fd_gradient(
                renderer.render, a["x"][b], a["u"][b], a["dy"][b], task.epsilon, task.index
            )
        )
    if task.kind == "input":
        shift = renderer.latency - renderer.settings.preroll
        return estimators.input_gradient(
            renderer.render, a["x"][b], a["u"][b], a["dy"][b], task.epsilon, task.seed, shift
        )
    if task.kind == "exit":
        # Only for tests of crash handling: die like a plugin that segfaults.
        os._exit(70)
    raise ValueError(f"unknown task kind {task.kind!r}; expected one of {', '.join(KINDS)}")


def store(out: dict[str, np.ndarray], task: Task, result: np.ndarray) -> None:
    """Put a task's result where it belongs in the batch's output arrays."""
    if task.kind == "forward":
        out["y"][task.example] = result
    elif task.kind == "input":
        out["gx"][task.example, task.index] = result
    else:  # spsa → g[b, k, :], fd → g[b, j]
        out["g"][task.example, task.index] = result


def input_layout(arrays: dict[str, np.ndarray]) -> dict[str, tuple[tuple[int, ...], str]]:
    return {k: (v.shape, str(v.dtype)) for k, v in arrays.items()}
