"""Training: encoders learn to drive plugin chains through SPSA gradients (TensorFlow, CPU).

Entry points (scripts): ``train.py``, ``evaluate.py``, ``export.py``, and
``python -m training.data TASK``. Packages, one concern each:

* :mod:`training.data` — the data sets: the shared builder and one module per task;
* :mod:`training.spsa` — the chain as a Keras layer (:class:`~training.spsa.layer.LV2Layer`),
  its plugin worker pools, the jobs they run, the gradient estimators, shared memory,
  gradient logging and ``deepafx-rt bench spsa``; only ``layer`` imports TensorFlow;
* :mod:`training.models` — encoders and the loss;
* :mod:`training.evaluation` — metrics and baselines;
* :mod:`training.studies` — one-off chain studies.

What the product shares with training (the encoder's view of audio, window
geometry, held parameters, the smoother, predict → automation) lives in
:mod:`rt_host.steer`; the product never imports this package.
``from training import LV2Layer`` imports TensorFlow on first use only.
"""

from __future__ import annotations

__all__ = ["LV2Layer"]


def __getattr__(name: str):
    if name == "LV2Layer":
        from training.spsa.layer import LV2Layer

        return LV2Layer
    raise AttributeError(f"module 'training' has no attribute {name!r}")
