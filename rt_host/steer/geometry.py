"""Which frames a prediction hears, and from which frame it steers: one rule for every path.

Frames are counted at the chain's rate from the start of the audio (a file, or
the first JACK cycle). Prediction ``k`` (0, 1, 2, …) hears the window of
``window_frames`` frames that *ends* at ``end(k) = (k + 1) · hop_frames``
(frames ``[end − window_frames, end)``; zeros before frame 0), and its
parameters start to steer the chain at the first block that starts at or after
``end(k) + delay``: never before the window's last frame has been heard
(causal), and late enough that the live controller has the answer in time
(resampling and inference take a few milliseconds; a prediction that still
arrives later is applied when it arrives and counted as late).

The bundle gives ``window`` and ``hop`` in samples at the model's rate;
:class:`Geometry` converts them to frames at the chain's rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from rt_host.steer.view import window_frames

DEFAULT_DELAY_S = 0.1  # from a window's end to the first block its prediction steers (≤ half a hop)


@dataclass(frozen=True)
class Geometry:
    """Window, hop and delay of a model at the chain's ``rate``; see the module docstring."""

    rate: int  # the chain's (the host's) sample rate
    model_rate: int  # the encoder's
    window: int  # samples at model_rate
    hop: int  # samples at model_rate
    delay: int  # frames at rate, from a window's end to the first block it may steer

    @classmethod
    def at(cls, rate: int, model_rate: int, window: int, hop: int, delay_s: float | None = None) -> Geometry:
        """The geometry of a model (``model_rate``, ``window``, ``hop``) at the chain's ``rate``.

        ``delay_s`` None: :data:`DEFAULT_DELAY_S`, or half a hop if that is shorter
        (a prediction must take over before the next one arrives).
        """
        if delay_s is None:
            delay_s = min(DEFAULT_DELAY_S, 0.5 * hop / model_rate)
        if not (math.isfinite(delay_s) and delay_s >= 0):
            raise ValueError(f"the prediction delay must be a finite number of seconds ≥ 0, not {delay_s!r}")
        geo = cls(int(rate), int(model_rate), int(window), int(hop), int(round(delay_s * rate)))
        if geo.delay >= geo.hop_frames:
            raise ValueError(
                f"a prediction delay of {delay_s:g} s is not shorter than the hop "
                f"({geo.hop / geo.model_rate:g} s): predictions would queue up"
            )
        return geo

    @property
    def window_frames(self) -> int:
        return window_frames(self.window, self.model_rate, self.rate)

    @property
    def hop_frames(self) -> int:
        return max(1, round(self.hop * self.rate / self.model_rate))

    def end(self, k: int) -> int:
        """The frame after the last frame prediction ``k`` hears."""
        return (k + 1) * self.hop_frames

    def apply_frame(self, k: int) -> int:
        """The earliest frame prediction ``k`` may steer from (a block starting there or later)."""
        return self.end(k) + self.delay

    def ends(self, frames: int) -> np.ndarray:
        """Window ends of every prediction whose window lies within the first ``frames`` frames."""
        return np.arange(self.hop_frames, frames + 1, self.hop_frames, dtype=np.int64)

    def window_of(self, audio: np.ndarray, end: int) -> np.ndarray:
        """The frames ``[end − window_frames, end)`` of ``audio`` ``(channels, n)``, zeros before 0."""
        w = self.window_frames
        start = end - w
        if start >= 0:
            return audio[:, start:end]
        out = np.zeros((audio.shape[0], w), dtype=np.float32)
        out[:, -start:] = audio[:, :end]
        return out
