"""How a model steers a chain — one contract for training, evaluation, offline render and the live host.

* :mod:`~rt_host.steer.view` — what the encoder hears: :func:`encoder_view` (mono, soxr, the newest
  ``window`` samples at the model's rate);
* :mod:`~rt_host.steer.geometry` — which frames a prediction hears and from which frame it steers
  (:class:`Geometry`: causal windows every hop, applied a fixed delay after the window's end);
* :mod:`~rt_host.steer.held` — parameters a recipe holds at a value, in port units (:class:`HeldParameters`);
* :mod:`~rt_host.steer.kernel` — the per-block step: predictions taking over, the one smoother,
  people's overrides, the amount, bounded port writes;
* :mod:`~rt_host.steer.automation` — :func:`predict_automation` over a file with any predictor
  (onnxruntime in the product, Keras in evaluation) and :func:`render_steered`.

The normalized ↔ port-units mapping is the compiled kernel of :mod:`rt_host.lv2.parameters`
(:class:`~rt_host.lv2.parameters.ParameterTable`), which the chain, this package, the live block and
the MIDI and web controls all call.
"""

from rt_host.lv2.parameters import ParameterTable
from rt_host.steer.automation import Automation, Predictor, predict_automation, render_steered
from rt_host.steer.geometry import DEFAULT_DELAY_S, Geometry
from rt_host.steer.held import HeldParameters
from rt_host.steer.kernel import DEFAULT_SMOOTHING_S, SteerState
from rt_host.steer.view import RESAMPLER_QUALITY, encoder_view

__all__ = [
    "DEFAULT_DELAY_S",
    "DEFAULT_SMOOTHING_S",
    "RESAMPLER_QUALITY",
    "Automation",
    "Geometry",
    "HeldParameters",
    "ParameterTable",
    "Predictor",
    "SteerState",
    "encoder_view",
    "predict_automation",
    "render_steered",
]
