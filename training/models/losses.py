"""The training loss: spectral distance after cross-correlation alignment, plus an optional event term.

The chain delays its output (a limiter's look-ahead), so before comparing, the
lag that maximises the cross-correlation of the mono mixes is found per example
(FFT, within ±``max_lag`` samples; no gradient flows through the choice), the
output shifted by it, and ``max_lag`` samples dropped from both ends so no
wrapped-around audio is scored. Then
``Σ_fft [spectral convergence + log_weight · mean |log |Y| − log |T||] + l1_weight · mean |y − t|``,
plus, with ``event_weight`` > 0, the *event term*: on the frames where the
input holds more than the target (the residual ``input − target`` is louder
than the target there: nonspeech's breaths and clicks), how much louder the
output is than the target, ``mean max(0, ln E_out − ln E_target)`` over those
frames (1 ≈ 4.3 dB left over).

**Level apart from timbre and dynamics** (``level_match``, ``loudness_weight``;
off by default). A mastering chain makes music louder, and a loss that sees the
raw pair rewards loudness so much that a model learns to squash bands to get it
(issue 14: a plain gain beat the v1 model's processing). With ``level_match``
the output is scaled, per example, to the target's K-weighted energy before the
spectral and L1 terms (the gain is part of the graph, so those terms cannot
be lowered by level at all: they judge timbre and dynamics only), and
``loudness_weight · mean |ΔL|`` adds the level error in LU, ``ΔL = 10·log10(E_out
/ E_target)`` with ``E`` the energy of the aligned pair through BS.1770's
K-weighting (the weighting of :func:`rt_host.loudness.loudness`, applied as its
magnitude response on a 4096-point STFT; ungated — a training window is 1.9 s).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import keras

LOUDNESS_FFT = 4096  # STFT of the loudness term: 93 ms at 44.1 kHz, bins 10.8 Hz apart (K's 38 Hz high-pass)


class AlignedSpectralLoss(keras.losses.Loss):
    """Multi-scale spectral distance + ``l1_weight`` · time-domain L1, after cross-correlation alignment.

    ``y_true``/``y_pred`` are ``(batch, samples, channels)``. See the module
    docstring for the formula. :attr:`traced_in_graph` records whether the
    loss was ever traced into a graph (``tf.function``), which tests use to
    check that ``model.fit`` does not fall back to eager execution.
    """

    traced_in_graph = False

    def __init__(
        self,
        max_lag: int,
        fft_sizes: Sequence[int] = (4096, 1024, 256),
        l1_weight: float = 10.0,
        log_weight: float = 1.0,
        event_weight: float = 0.0,
        event_frame: int = 1024,
        level_match: bool = False,
        loudness_weight: float = 0.0,
        sample_rate: int = 44100,
        **kw,
    ) -> None:
        super().__init__(name=kw.pop("name", "aligned_spectral"), **kw)
        # with event_weight > 0, y_true holds the target's C channels, then the residual's C
        self.event_weight, self.event_frame = float(event_weight), int(event_frame)
        self.max_lag, self.fft_sizes, self.l1_weight = int(max_lag), tuple(fft_sizes), float(l1_weight)
        # the log-magnitude term weighs quiet bins like loud ones; < 1 lets a task care about the loud
        # parts (nonspeech: gating the room floor around a breath costs it as much as harming speech)
        self.log_weight = float(log_weight)
        # level vs timbre/dynamics (module docstring): the rate only sets the K-weighting's response
        self.level_match, self.loudness_weight = bool(level_match), float(loudness_weight)
        self.sample_rate = int(sample_rate)
        self._k_power = None  # |K(f)|² on the loudness STFT's bins, made on first use

    @classmethod
    def from_recipe(cls, max_lag: int, loss: dict, sample_rate: int) -> AlignedSpectralLoss:
        """The loss a recipe's ``[loss]`` table describes (every key optional but ``fft_sizes``)."""
        return cls(
            max_lag,
            loss["fft_sizes"],
            float(loss.get("l1_weight", 10.0)),
            float(loss.get("log_weight", 1.0)),
            float(loss.get("event_weight", 0.0)),
            int(loss.get("event_frame", 1024)),
            level_match=bool(loss.get("level_match", False)),
            loudness_weight=float(loss.get("loudness_weight", 0.0)),
            sample_rate=int(sample_rate),
        )

    def call(self, y_true, y_pred):
        import tensorflow as tf

        if not tf.executing_eagerly():
            AlignedSpectralLoss.traced_in_graph = True
        y_true = tf.cast(y_true, tf.float32)
        y_pred = tf.cast(y_pred, tf.float32)
        channels = y_pred.shape[-1]
        residual = None
        if self.event_weight > 0:
            y_true, residual = y_true[..., :channels], y_true[..., channels:]
        t, p = align(y_true, y_pred, self.max_lag)
        level_term = 0.0
        if self.level_match or self.loudness_weight > 0:
            e_t, e_p = self._k_energy(t), self._k_energy(p)  # (B,)
            level_term = self.loudness_weight * tf.reduce_mean(
                tf.abs(10.0 * (tf.math.log(e_p) - tf.math.log(e_t)) / math.log(10.0))
            )
            if self.level_match:  # the output at the target's level: spectral terms see no level
                p = p * tf.sqrt(e_t / e_p)[:, None, None]
        # spectral terms on every channel: (B, T, C) → (B·C, T)
        tc = tf.reshape(tf.transpose(t, (0, 2, 1)), (-1, t.shape[1]))
        pc = tf.reshape(tf.transpose(p, (0, 2, 1)), (-1, p.shape[1]))
        total = 0.0
        for n in self.fft_sizes:
            st, sp = _magnitude(tc, n), _magnitude(pc, n)
            sc = tf.norm(st - sp) / (tf.norm(st) + 1e-7)
            lm = tf.reduce_mean(tf.abs(tf.math.log(st + 1e-5) - tf.math.log(sp + 1e-5)))
            total += sc + self.log_weight * lm
        l1 = tf.reduce_mean(tf.abs(t - p))
        total += self.l1_weight * l1 + level_term
        if residual is not None:
            lag = self.max_lag
            r = residual[:, lag : residual.shape[1] - lag] if lag > 0 else residual
            total += self.event_weight * event_excess(t, p, r, self.event_frame)
        # one value per batch (Keras averages per-example values; this loss is batch-level)
        return tf.fill((tf.shape(y_true)[0],), total)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "max_lag": self.max_lag,
            "fft_sizes": list(self.fft_sizes),
            "l1_weight": self.l1_weight,
            "log_weight": self.log_weight,
            "event_weight": self.event_weight,
            "event_frame": self.event_frame,
            "level_match": self.level_match,
            "loudness_weight": self.loudness_weight,
            "sample_rate": self.sample_rate,
        }

    def _k_energy(self, x):
        """Per example, the mean K-weighted power of ``x`` ``(B, N, C)`` (channels summed), + 1e-10."""
        import tensorflow as tf

        n = int(x.shape[1])
        n_fft = min(LOUDNESS_FFT, 1 << (n.bit_length() - 1))  # short (test) windows: a shorter STFT
        if self._k_power is None or self._k_power.shape[0] != n_fft // 2 + 1:
            from training.evaluation.mastering import k_weighting_power

            self._k_power = k_weighting_power(n_fft, self.sample_rate).astype("float32")
        b = tf.shape(x)[0]
        xc = tf.reshape(tf.transpose(x, (0, 2, 1)), (-1, n))  # (B·C, N)
        power = tf.square(_magnitude(xc, n_fft))  # (B·C, frames, bins)
        weighted = tf.reduce_mean(tf.reduce_sum(power * tf.constant(self._k_power), axis=-1), axis=-1)
        return tf.reduce_sum(tf.reshape(weighted, (b, -1)), axis=1) + 1e-10


def event_excess(t, p, r, frame: int):
    """``mean max(0, ln E_p − ln E_t)`` over the frames where the residual ``r`` is louder than the
    target ``t`` (all ``(B, N, C)``, aligned; frames of ``frame`` samples, hop ``frame // 2``); 0 when
    no frame qualifies. Energies get a floor of 1e-10 (−100 dBFS) so silence does not dominate."""
    import tensorflow as tf

    def energy(x):
        frames = tf.signal.frame(tf.transpose(x, (0, 2, 1)), frame, frame // 2)  # (B, C, F, frame)
        return tf.reduce_mean(tf.square(frames), axis=-1) + 1e-10

    et, ep, er = energy(t), energy(p), energy(r)
    mask = tf.cast(er > et, tf.float32)
    excess = tf.nn.relu(tf.math.log(ep) - tf.math.log(et))
    return tf.math.divide_no_nan(tf.reduce_sum(mask * excess), tf.reduce_sum(mask))


def _magnitude(x, n_fft: int):
    """``|STFT|`` of ``(batch, samples)`` with a periodic Hann, hop n/4; √(re² + im² + tiny) keeps the
    gradient finite at exact zeros, where ``tf.abs`` of a complex number divides 0 by 0."""
    import tensorflow as tf

    s = tf.signal.stft(x, n_fft, n_fft // 4, n_fft, window_fn=tf.signal.hann_window)
    return tf.sqrt(tf.math.real(s) ** 2 + tf.math.imag(s) ** 2 + 1e-12)


def align(y_true, y_pred, max_lag: int):
    """Shift ``y_pred`` onto ``y_true`` by the lag of best cross-correlation, per example.

    Both ``(batch, N, channels)`` with a static ``N``. The lag ``d`` ∈
    [−max_lag, max_lag] maximises ``Σ_t pred[t + d] · true[t]`` over the mono
    mixes (an FFT of length 2N: no circular wrap); returns
    ``(true[L : N − L], pred[L + d : N − L + d])`` with ``L = max_lag``, so both
    are ``N − 2L`` long and hold real samples only. The lag is a constant for
    the gradient (``stop_gradient``): the loss is differentiable in the audio.
    """
    import tensorflow as tf

    n = int(y_true.shape[1])
    lag = int(max_lag)
    if lag <= 0:
        return y_true, y_pred
    if n <= 2 * lag:
        raise ValueError(f"windows of {n} samples are too short for a lag search of ±{lag}")
    a = tf.reduce_mean(y_pred, axis=-1)
    b = tf.reduce_mean(y_true, axis=-1)
    fa = tf.signal.rfft(a, [2 * n])
    fb = tf.signal.rfft(b, [2 * n])
    r = tf.signal.irfft(fa * tf.math.conj(fb), [2 * n])  # r[d] = Σ_t a[t + d] b[t]; r[2n − d] = lag −d
    window = tf.concat([r[:, 2 * n - lag :], r[:, : lag + 1]], axis=1)  # lags −L … L
    d = tf.stop_gradient(tf.argmax(window, axis=1, output_type=tf.int32) - lag)
    idx = lag + d[:, None] + tf.range(n - 2 * lag)[None, :]
    return y_true[:, lag : n - lag], tf.gather(y_pred, idx, batch_dims=1)
