"""Training: plugin chains as layers of a Keras model, with SPSA gradients.

* :mod:`training.layer` — :class:`LV2Layer`, the Keras layer (imports TensorFlow).
* :mod:`training.workers` — worker pools (local processes, Ray) that render for it.
* :mod:`training.renderer`, :mod:`training.tasks`, :mod:`training.estimators`,
  :mod:`training.shm` — what workers run; none of them imports TensorFlow, so
  workers start fast and the live host can share them.
* :mod:`training.gradlog` — optional gradient logging (CSV + PNG).
* :mod:`training.bench_spsa` — ``deepafx-rt bench spsa``.

``from training import LV2Layer`` imports TensorFlow on first use only.
"""

from __future__ import annotations

__all__ = ["LV2Layer"]


def __getattr__(name: str):
    if name == "LV2Layer":
        from training.layer import LV2Layer

        return LV2Layer
    raise AttributeError(f"module 'training' has no attribute {name!r}")
