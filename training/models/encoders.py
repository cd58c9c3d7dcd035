"""Encoders: a raw audio window in, normalized plugin parameters out (Keras 3).

    model = build_encoder(53)                       # MobileNetV2 α 0.35, 40,960 samples at 22,050 Hz
    model = build_encoder(23, backbone="inception", window=8192)
    u = model(audio)                                # (batch, window) float32 → (batch, 53) in (0, 1)

Everything the encoder needs is *inside* the model, so the exported ONNX file
takes the same raw mono window the live controller has at hand — no
spectrogram code is duplicated on the host side:

1. :class:`LogMelSpectrogram` — framing (1024-point FFT, hop 256, periodic
   Hann), a real-valued DFT, power, a 128-band mel bank and a log. Built only
   from reshapes, slices, matmuls and element-wise ops, because
   ``tf.signal.stft`` converts to an ONNX ``ComplexAbs`` that onnxruntime
   rejects when the batch is dynamic (see ``../shared/FACTS.md``).
2. ``BatchNormalization`` over the mel bands: a learned input normalization,
   so the backbone sees roughly zero-mean, unit-variance features whatever the
   log's offset.
3. A backbone: ``keras.applications.MobileNetV2`` (``weights=None``, width
   ``alpha``) or a small Inception-style CNN (:func:`inception_backbone`),
   both ending in global average pooling.
4. ``Dense(n_params)`` with a sigmoid: one normalized value in (0, 1) per
   predicted port, in the order of ``Chain.parameter_names``.

**The DFT, and why it is folded.** A frame's real DFT is ``frame @ [w·cos |
−w·sin]`` with a ``1024 × 2K`` matrix (``K`` bins). Stored as float32 that is
4.2 MB of every ONNX file, and over 80 % of the encoder's multiply-adds with
MobileNetV2 α 0.35 (164 M of ~200 M). The periodic Hann window is symmetric (``w[N−n] = w[n]``),
``cos`` is even and ``sin`` odd about ``N/2``, so with ``s[n] = x[n] + x[N−n]``
and ``d[n] = x[n] − x[N−n]`` the same sums need only the rows ``n ≤ N/2``::

    Re X[k] = Σ_{n=0..N/2}   w[n] cos(2πnk/N) · s[n]     (s[0] = x[0], s[N/2] = x[N/2])
    Im X[k] = Σ_{n=1..N/2−1} −w[n] sin(2πnk/N) · d[n]

— exactly the ``[hann·cos | −hann·sin]`` matmul, half the matrix and half the
work. Only the bins the mel bank actually touches get a column (511 of 513
here: 0 Hz and Nyquist carry no weight), so the front end stores
``(513 + 511) × 511`` DFT plus ``511 × 128`` mel weights: 2.35 MB instead of
~4.5 MB. The matrices live on the layer as numpy arrays and become constants
inside :meth:`LogMelSpectrogram.call`: a ``tf.constant`` held by the layer can
turn into an extra required ONNX input.

**Scale.** The DFT is scaled by ``2 / Σw``, so a sine of amplitude ``A``
peaks at ``A²`` in power; the mel triangles have unit peak (no area
normalization), so a band's value is the power it collects. The log adds a
floor of ``1e-8`` (−80 dB re full scale): it keeps silence finite and sits far
above the float32 rounding noise of the DFT (~−140 dB re full scale), so the
log never amplifies rounding differences between TensorFlow and onnxruntime
on quiet inputs (their log-mels agreed exactly in our measurements; what
differences remain come from the backbone's convolutions).

Models round-trip through ``model.save("x.keras")`` / ``keras.models.load_model``
as long as this module is imported (its layer is registered under
``deepafx_rt>LogMelSpectrogram``); nothing but the weights is stored, the
matrices are recomputed from the config.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import layers, ops

BACKBONES = ("mobilenetv2", "inception")
MODEL_RATE = 22050
MODEL_WINDOW = 40960
N_FFT = 1024
STFT_HOP = 256
N_MELS = 128
LOG_FLOOR = 1e-8
MOBILENET_MIN_SIZE = 32  # keras.applications refuses smaller images


# --- mel bank (numpy) ---------------------------------------------------------------------
def hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    """Slaney's mel scale (librosa's default): linear below 1 kHz, logarithmic above."""
    f = np.asarray(f, dtype=np.float64)
    lin = f / (200.0 / 3.0)
    log = 15.0 + np.log(np.maximum(f, 1e-12) / 1000.0) / (math.log(6.4) / 27.0)
    return np.where(f >= 1000.0, log, lin)


def mel_to_hz(m: np.ndarray | float) -> np.ndarray:
    """Inverse of :func:`hz_to_mel`."""
    m = np.asarray(m, dtype=np.float64)
    lin = m * (200.0 / 3.0)
    log = 1000.0 * np.exp((m - 15.0) * (math.log(6.4) / 27.0))
    return np.where(m >= 15.0, log, lin)


def mel_filterbank(
    sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None
) -> np.ndarray:
    """Triangular mel filters, ``(n_fft // 2 + 1, n_mels)`` float64, unit peak.

    Band ``m`` rises from the mel point ``m`` to ``m + 1`` and falls to
    ``m + 2`` (``n_mels + 2`` points evenly spaced in mel between ``fmin`` and
    ``fmax``). Raises ``ValueError`` if a band catches no FFT bin — too many
    mels for the FFT size — because an all-zero band would be a constant
    ``log(floor)`` feature.
    """
    fmax = sample_rate / 2.0 if fmax is None else float(fmax)
    if not 0.0 <= fmin < fmax <= sample_rate / 2.0:
        raise ValueError(f"need 0 ≤ fmin < fmax ≤ {sample_rate / 2:g} Hz, got fmin={fmin}, fmax={fmax}")
    bins_hz = np.arange(n_fft // 2 + 1) * sample_rate / n_fft
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    f = bins_hz[:, np.newaxis]
    rising = (f - lower) / (centre - lower)
    falling = (upper - f) / (upper - centre)
    bank = np.maximum(0.0, np.minimum(rising, falling))
    empty = np.flatnonzero(bank.sum(axis=0) == 0.0)
    if empty.size:
        raise ValueError(
            f"{empty.size} of {n_mels} mel bands catch no FFT bin (first: band {empty[0]}); "
            f"use fewer mels or a longer FFT than {n_fft}"
        )
    return bank


def periodic_hann(n: int) -> np.ndarray:
    """The periodic Hann window (``scipy.signal.get_window("hann", n)``): ``w[n − k] = w[k]``."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)


# --- the audio front end ------------------------------------------------------------------
@keras.saving.register_keras_serializable(package="deepafx_rt")
class LogMelSpectrogram(layers.Layer):
    """Raw audio ``(batch, samples)`` → log-mel ``(batch, frames, n_mels)``; no trainable weights.

    Frames are ``n_fft`` long, ``hop`` apart, without padding ("valid"):
    ``frames = 1 + (samples − n_fft) // hop``. When the samples do not fill
    the last hop exactly, the *oldest* samples are dropped, because the newest
    audio is what a live controller's window ends with. ``n_fft`` must be a
    multiple of ``hop`` (framing is a reshape into hops and a concatenation of
    ``n_fft / hop`` shifted views — ops every ONNX runtime has).
    """

    def __init__(
        self,
        sample_rate: int = MODEL_RATE,
        n_fft: int = N_FFT,
        hop: int = STFT_HOP,
        n_mels: int = N_MELS,
        fmin: float = 0.0,
        fmax: float | None = None,
        floor: float = LOG_FLOOR,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if n_fft % 2 or n_fft < 4:
            raise ValueError(f"n_fft must be even and ≥ 4, got {n_fft}")
        if hop <= 0 or n_fft % hop:
            raise ValueError(f"n_fft ({n_fft}) must be a positive multiple of hop ({hop})")
        if floor <= 0:
            raise ValueError(f"floor must be positive, got {floor}")
        self.sample_rate, self.n_fft, self.hop, self.n_mels = int(sample_rate), int(n_fft), int(hop), n_mels
        self.fmin, self.fmax, self.floor = float(fmin), fmax, float(floor)

        bank = mel_filterbank(self.sample_rate, n_fft, n_mels, fmin, fmax)
        used = np.flatnonzero(bank.sum(axis=1) > 0.0)  # bins some band listens to
        self.first_bin, self.last_bin = int(used[0]), int(used[-1])
        k = np.arange(self.first_bin, self.last_bin + 1)
        half = n_fft // 2
        n = np.arange(half + 1)[:, np.newaxis]
        w = periodic_hann(n_fft)[: half + 1, np.newaxis]
        # (n·k) mod N in integers first: cos of a huge float angle would lose ~1e-4 rad
        angle = 2.0 * np.pi * ((n * k[np.newaxis, :]) % n_fft) / n_fft
        scale = 2.0 / periodic_hann(n_fft).sum()  # a sine of amplitude A → |X| ≈ A at its bin
        # numpy on purpose (float32 copies made constant in call(), see the module docstring)
        self.dft_even = (scale * w * np.cos(angle)).astype(np.float32)  # rows n = 0 … N/2
        self.dft_odd = (-scale * w * np.sin(angle))[1:half].astype(np.float32)  # rows n = 1 … N/2 − 1
        self.mel_matrix = bank[self.first_bin : self.last_bin + 1].astype(np.float32)
        self.mirror_index = np.arange(n_fft - 1, half, -1, dtype=np.int32)  # N−1 … N/2+1

    @property
    def n_bins(self) -> int:
        """DFT bins computed: only those the mel bank uses."""
        return self.last_bin - self.first_bin + 1

    def n_frames(self, samples: int) -> int:
        if samples < self.n_fft:
            raise ValueError(f"a window of {samples} samples is shorter than one FFT frame ({self.n_fft})")
        return 1 + (samples - self.n_fft) // self.hop

    def call(self, audio):
        samples = audio.shape[-1]
        if samples is None:
            raise ValueError("LogMelSpectrogram needs a fixed window length (the input's last axis)")
        frames_n = self.n_frames(samples)
        per_frame = self.n_fft // self.hop
        used = self.n_fft + (frames_n - 1) * self.hop
        x = audio[:, samples - used :]
        hops = ops.reshape(x, (-1, frames_n + per_frame - 1, self.hop))
        frames = ops.concatenate([hops[:, i : i + frames_n, :] for i in range(per_frame)], axis=-1)

        half = self.n_fft // 2
        head = frames[:, :, : half + 1]  # x[0] … x[N/2]
        # x[N−n] for n = 1 … N/2−1. A Gather with constant indices: ops.flip becomes ONNX
        # ReverseSequence with transposes around it, measurably slower in onnxruntime here
        mirror = ops.take(frames, ops.convert_to_tensor(self.mirror_index), axis=2)
        middle = head[:, :, 1:half]
        even = ops.concatenate([head[:, :, :1], middle + mirror, head[:, :, half:]], axis=-1)
        odd = middle - mirror
        real = ops.matmul(even, ops.convert_to_tensor(self.dft_even))
        imag = ops.matmul(odd, ops.convert_to_tensor(self.dft_odd))
        power = real * real + imag * imag
        mel = ops.matmul(power, ops.convert_to_tensor(self.mel_matrix))
        return ops.log(mel + self.floor)

    def compute_output_shape(self, input_shape):
        samples = input_shape[-1]
        frames_n = None if samples is None else self.n_frames(samples)
        return (input_shape[0], frames_n, self.n_mels)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            sample_rate=self.sample_rate,
            n_fft=self.n_fft,
            hop=self.hop,
            n_mels=self.n_mels,
            fmin=self.fmin,
            fmax=self.fmax,
            floor=self.floor,
        )
        return config


def log_mel_reference(audio: np.ndarray, layer: LogMelSpectrogram) -> np.ndarray:
    """The same log-mel as ``layer`` computed the plain way (numpy ``rfft``), for tests.

    ``audio`` is ``(batch, samples)``; returns float64 ``(batch, frames, n_mels)``.
    """
    audio = np.asarray(audio, dtype=np.float64)
    samples = audio.shape[-1]
    frames_n = layer.n_frames(samples)
    start = samples - (layer.n_fft + (frames_n - 1) * layer.hop)
    idx = start + np.arange(frames_n)[:, None] * layer.hop + np.arange(layer.n_fft)[None, :]
    w = periodic_hann(layer.n_fft)
    spec = np.fft.rfft(audio[:, idx] * w, axis=-1) * (2.0 / w.sum())
    power = np.abs(spec[..., layer.first_bin : layer.last_bin + 1]) ** 2
    return np.log(power @ layer.mel_matrix.astype(np.float64) + layer.floor)


# --- backbones ------------------------------------------------------------------------------
def _conv_bn(x, filters: int, kernel: tuple[int, int], strides: int = 1, name: str = ""):
    conv = layers.Conv2D(
        filters, kernel, strides=strides, padding="same", use_bias=False, name=f"{name}_conv"
    )
    x = conv(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def _inception_block(x, filters: int, name: str):
    """Four parallel branches — 1×1, 3×3, 5×5 (as two 3×3) and pool → 1×1 — concatenated."""
    reduce = max(8, filters // 2)
    b1 = _conv_bn(x, filters, (1, 1), name=f"{name}_1x1")
    b3 = _conv_bn(x, reduce, (1, 1), name=f"{name}_3x3_reduce")
    b3 = _conv_bn(b3, filters, (3, 3), name=f"{name}_3x3")
    b5 = _conv_bn(x, reduce // 2, (1, 1), name=f"{name}_5x5_reduce")
    b5 = _conv_bn(b5, filters // 2, (3, 3), name=f"{name}_5x5a")
    b5 = _conv_bn(b5, filters // 2, (3, 3), name=f"{name}_5x5b")
    bp = layers.MaxPooling2D((3, 3), strides=1, padding="same", name=f"{name}_pool")(x)
    bp = _conv_bn(bp, filters // 2, (1, 1), name=f"{name}_pool_proj")
    return layers.Concatenate(name=f"{name}_concat")([b1, b3, b5, bp])


def inception_backbone(x, widths: tuple[int, ...] = (24, 48, 64)):
    """A small Inception-style CNN on ``(batch, frames, mels, 1)``: ~0.1 M weights, pooled features.

    A strided 3×3 stem, then one :func:`_inception_block` per entry of
    ``widths`` with 2×2 max pooling between them (time and frequency halve each
    time), then global average pooling. Works for any image of at least 1×1
    after the stem, so short windows need no padding.
    """
    x = _conv_bn(x, 24, (3, 3), strides=2, name="stem")
    for i, width in enumerate(widths):
        if i:
            x = layers.MaxPooling2D((2, 2), padding="same", name=f"block{i}_downsample")(x)
        x = _inception_block(x, width, name=f"block{i}")
    return layers.GlobalAveragePooling2D(name="pool")(x)


def mobilenet_backbone(x, alpha: float = 0.35):
    """``keras.applications.MobileNetV2`` (random weights, width ``alpha``) with average pooling.

    MobileNetV2 accepts one input channel when ``weights=None``, so the log-mel
    image goes in as it is; it refuses images smaller than 32×32, so a short
    window's few frames are zero-padded in time (zeros are the mean after the
    input normalization, i.e. "nothing unusual").
    """
    frames, mels = x.shape[1], x.shape[2]
    pad_t = max(0, MOBILENET_MIN_SIZE - frames)
    pad_f = max(0, MOBILENET_MIN_SIZE - mels)
    if pad_t or pad_f:
        x = layers.ZeroPadding2D(
            ((pad_t // 2, pad_t - pad_t // 2), (pad_f // 2, pad_f - pad_f // 2)), name="min_size_pad"
        )(x)
    net = keras.applications.MobileNetV2(
        input_shape=tuple(x.shape[1:]), alpha=alpha, include_top=False, weights=None, pooling="avg"
    )
    return net(x)


def build_encoder(
    n_params: int,
    *,
    window: int = MODEL_WINDOW,
    sample_rate: int = MODEL_RATE,
    backbone: str = "mobilenetv2",
    alpha: float = 0.35,
    n_fft: int = N_FFT,
    stft_hop: int = STFT_HOP,
    n_mels: int = N_MELS,
    dropout: float = 0.0,
    bn_momentum: float = 0.99,
    name: str = "encoder",
) -> keras.Model:
    """A Keras model ``(batch, window)`` float32 audio → ``(batch, n_params)`` in (0, 1).

    ``window`` samples of mono audio at ``sample_rate`` (the encoder's rate,
    not the chain's: DeepAFx's 40,960 at 22,050 Hz is 1.86 s). ``backbone`` is
    ``"mobilenetv2"`` (width ``alpha``; 0.35 keeps the ONNX bundle ~4 MB) or
    ``"inception"``. ``dropout`` > 0 adds dropout before the last layer
    (training only). The input is named ``audio`` and the output layer
    ``params``; the model has no other inputs, so it exports as-is.

    ``bn_momentum`` is set on *every* batch-norm layer, MobileNetV2's too
    (keras.applications hard-codes 0.999): the moving statistics that
    inference uses then follow the data within a few hundred steps instead of
    thousands — a CPU run of a few thousand SPSA steps would otherwise
    validate and export a network still normalizing with its initial
    statistics. :func:`calibrate_batch_norm` before training starts them right.
    """
    if n_params < 1:
        raise ValueError(f"n_params must be ≥ 1, got {n_params}")
    if backbone not in BACKBONES:
        raise ValueError(f"backbone must be one of {', '.join(BACKBONES)}, not {backbone!r}")
    audio = keras.Input(shape=(window,), dtype="float32", name="audio")
    spec = LogMelSpectrogram(sample_rate, n_fft, stft_hop, n_mels, name="log_mel")(audio)
    spec = layers.BatchNormalization(axis=-1, name="input_norm")(spec)  # per mel band
    image = layers.Reshape((spec.shape[1], n_mels, 1), name="to_image")(spec)
    if backbone == "mobilenetv2":
        features = mobilenet_backbone(image, alpha)
    else:
        features = inception_backbone(image)
    if dropout > 0:
        features = layers.Dropout(dropout, name="dropout")(features)
    params = layers.Dense(n_params, activation="sigmoid", name="params")(features)
    model = keras.Model(audio, params, name=name)
    for bn in batch_norm_layers(model):
        bn.momentum = bn_momentum
    return model


def batch_norm_layers(model: keras.Model) -> list[layers.BatchNormalization]:
    """Every ``BatchNormalization`` layer of ``model``, nested models included."""
    found = []
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            found.append(layer)
        elif isinstance(layer, keras.Model):
            found.extend(batch_norm_layers(layer))
    return found


def calibrate_batch_norm(model: keras.Model, audio: np.ndarray) -> None:
    """Set every batch-norm layer's moving statistics to those of ``audio`` (one forward pass).

    A freshly built encoder keeps batch norm's initial statistics (mean 0,
    variance 1), which are wildly off for log-mel features: in inference mode
    an untrained MobileNetV2 then outputs exactly 0.5 for every input, and a
    TF-vs-ONNX parity check on it proves nothing. One training-mode pass with
    momentum 0 makes inference mode behave like the network on real data.
    Useful for tests, benchmarks and as a better starting point for training.
    """
    norms = batch_norm_layers(model)
    saved = [bn.momentum for bn in norms]
    try:
        for bn in norms:
            bn.momentum = 0.0  # moving = momentum · moving + (1 − momentum) · batch
        model(np.asarray(audio, dtype=np.float32), training=True)
    finally:
        for bn, momentum in zip(norms, saved):
            bn.momentum = momentum


def describe(model: keras.Model) -> dict:
    """What a model card should say about an encoder built by :func:`build_encoder`."""
    front = model.get_layer("log_mel")
    backbone = "inception" if any(layer.name == "block0_concat" for layer in model.layers) else "mobilenetv2"
    info = {
        "backbone": backbone,
        "window": int(model.input_shape[-1]),
        "sample_rate": front.sample_rate,
        "n_fft": front.n_fft,
        "stft_hop": front.hop,
        "n_mels": front.n_mels,
        "dft_bins": front.n_bins,
        "frames": front.n_frames(int(model.input_shape[-1])),
        "n_params": int(model.output_shape[-1]),
        "weights": int(model.count_params()),
    }
    if backbone == "mobilenetv2":
        nets = [layer for layer in model.layers if layer.name.startswith("mobilenetv2")]
        if nets:
            info["alpha"] = float(nets[0].name.split("_")[1])
    return info
