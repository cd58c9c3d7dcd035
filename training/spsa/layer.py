"""A plugin chain as a Keras layer: ``[audio, parameters] → processed audio``.

>>> layer = LV2Layer("distortion", workers=2)            # chains/distortion.toml at 22,050 Hz
>>> audio = keras.Input((40960, 1)); params = keras.Input((layer.n_free,))
>>> model = keras.Model([audio, params], layer([audio, params]))

Shapes are Keras-style, channels last: audio ``(batch, preroll + N, channels)``
float32, parameters ``(batch, n_free)`` in [0, 1] (end the network that predicts
them with a sigmoid; values outside are clipped), output ``(batch, N, channels)``.

How it works (the pattern in ``../shared/FACTS.md``, measured to train with
``model.fit`` in graph mode): a ``tf.custom_gradient`` wraps a
``tf.numpy_function`` for the forward renders and another, ``stateful`` with the
layer's own random generator, for the gradient; static output shapes are set
on both. The numpy functions only hand work to a worker pool
(:mod:`training.spsa.workers`): plugins never run in the TensorFlow process, whose
``numpy_function`` holds the GIL. ``jit_compile`` must stay off (XLA cannot
compile Python functions).

Gradients (see :mod:`training.spsa.estimators`):

* ``gradient="spsa"`` (default) — ``spsa_draws`` two-sided SPSA draws per example
  and step, Rademacher ±1 on the free parameters scaled by ``epsilon``,
  perturbed parameters clipped to [0, 1]: ``2 × spsa_draws`` renders per example.
* ``gradient="fd"`` — central differences, one free parameter at a time
  (``2 × n_free`` renders per example): for checks and small chains.
* ``input_gradient=True`` — also estimate ``∂L/∂audio`` (DeepAFx's per-sample
  perturbation, ``input_epsilon``, latency-aligned), so the layer can follow
  other layers; 2 more renders per draw. Off: the audio gets a zero gradient.
* ``fixed={"stage.symbol": u}`` — parameters held at a normalized value; the
  layer's parameter input has only the others (``free_parameter_names``), and
  they are never perturbed.

``epsilon`` default 0.03: a step of 3 % of each parameter's normalized range.
Measured with central differences at 22,050 Hz: the Calf chains are smooth
(``distortion``: cosine > 0.9999 between ε = 1e-4 and 0.03; ``nonspeech``
bends from 0.03 on: 0.998 against ε = 0.01, 0.75 at 0.1), but LSP's Graphic
EQ is not smooth at fine scale: changing a low band's gain by even 1e-7
changes the output by ~5e-4 (IIR round-off; 3e-3 at 44.1 kHz), so on
``mastering`` differences below ε = 0.01 are mostly that noise (cosine with
ε = 0.01: 0.08 at 1e-4, 0.51 at 1e-3) and steps of 0.03–0.1 agree best
(cosine 0.97). 0.03 serves every shipped chain.

Each window starts from freshly instantiated plugins that have rendered 1024
frames of silence at the window's parameters (``window_start="fresh"``, see
:mod:`training.spsa.renderer`), so the forward and the ± renders see identical
conditions and the output is reproducible bit for bit.
"""

from __future__ import annotations

import threading
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from rt_host.errors import PortNotFound
from rt_host.lv2 import Chain, ChainSpec
from training.spsa.gradlog import GradientLog
from training.spsa.renderer import RenderSettings
from training.spsa.workers import WorkerPool, create_pool

DEFAULT_EPSILON = 0.03
DEFAULT_INPUT_EPSILON = 1e-3
GRADIENTS = ("spsa", "fd")


def _as_spec(chain: str | Path | ChainSpec | Chain) -> ChainSpec:
    if isinstance(chain, Chain):
        return chain.spec
    if isinstance(chain, ChainSpec):
        return chain
    if isinstance(chain, str) and "[[stage]]" in chain:  # TOML text, as get_config() stores it
        return ChainSpec.loads(chain)
    return ChainSpec.load(chain)


@keras.saving.register_keras_serializable(package="deepafx_rt")
class LV2Layer(keras.layers.Layer):
    """Runs an LV2 plugin chain on a batch of windows; differentiable by SPSA or FD.

    ``chain``: a chain name (``chains/``), ``.toml`` path, TOML text,
    :class:`ChainSpec` or :class:`Chain`. ``sample_rate``: defaults to the
    chain's. ``workers``: ``None`` (one local process per core), an int (local
    processes; 0 = in this process), ``"ray"``, ``"ray://HOST:PORT"``, or a
    :class:`~training.spsa.workers.WorkerPool` to share. The pool starts on the
    first batch; :meth:`close` stops it. ``pool_options``: ``task_timeout``
    (s, default 600), ``retries`` (default 1), ``start_timeout`` for
    :func:`~training.spsa.workers.create_pool`. ``log_gradients``: a ``.csv`` path
    for per-step estimates (plus a ``.png``), off by default.
    """

    def __init__(
        self,
        chain: str | Path | ChainSpec | Chain,
        sample_rate: int | None = None,
        *,
        workers: int | str | WorkerPool | None = None,
        n_workers: int | None = None,
        gradient: str = "spsa",
        epsilon: float = DEFAULT_EPSILON,
        spsa_draws: int = 1,
        input_gradient: bool = False,
        input_epsilon: float = DEFAULT_INPUT_EPSILON,
        fixed: dict[str, float] | None = None,
        block_size: int = 1024,
        compensate_latency: bool = False,
        window_start: str = "fresh",
        preroll: int = 0,
        seed: int | None = None,
        log_gradients: str | Path | None = None,
        pool_options: dict | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        spec = _as_spec(chain)
        if gradient not in GRADIENTS:
            raise ValueError(f"gradient must be 'spsa' or 'fd', not {gradient!r}")
        if not 0.0 < epsilon <= 0.5:
            raise ValueError(f"epsilon must be in (0, 0.5] (a step in normalized units), not {epsilon}")
        if not input_epsilon > 0.0:
            raise ValueError(f"input_epsilon must be > 0, not {input_epsilon}")
        if spsa_draws < 1:
            raise ValueError(f"spsa_draws must be ≥ 1, not {spsa_draws}")
        self.settings = RenderSettings.for_chain(
            spec,
            sample_rate,
            block_size=block_size,
            compensate_latency=compensate_latency,
            window_start=window_start,
            preroll=preroll,
        )
        probe = Chain(spec)  # names and channels; nothing is instantiated here
        self.chain_name = spec.name
        self.channels = probe.channels
        self.parameter_names = probe.parameter_names
        self.fixed = self._check_fixed(fixed or {}, probe)
        self.free = [j for j, name in enumerate(self.parameter_names) if name not in self.fixed]
        if not self.free:
            raise ValueError("every parameter is fixed, so the layer has nothing to predict; fix fewer")
        self._fixed_vector = np.zeros(len(self.parameter_names), dtype=np.float64)
        for name, value in self.fixed.items():
            self._fixed_vector[self.parameter_names.index(name)] = value
        self.gradient = gradient
        self.epsilon = float(epsilon)
        self.spsa_draws = int(spsa_draws)
        self.input_gradient = bool(input_gradient)
        self.input_epsilon = float(input_epsilon)
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self._workers = workers
        self._n_workers = n_workers
        self._pool_options = dict(pool_options or {})
        self._pool: WorkerPool | None = workers if isinstance(workers, WorkerPool) else None
        self._owns_pool = self._pool is None
        self._pool_lock = threading.Lock()
        self._rng_lock = threading.Lock()
        self.log_path = None if log_gradients is None else Path(log_gradients)
        self.grad_log: GradientLog | None = None
        if self._pool is not None:
            create_pool(self.settings, self._pool)  # checks it renders this chain

    @staticmethod
    def _check_fixed(fixed: dict[str, float], chain: Chain) -> dict[str, float]:
        out = {}
        for name, value in fixed.items():
            if name not in chain.parameter_names:
                raise PortNotFound(
                    f"fixed: chain {chain.name!r} predicts no parameter {name!r}; "
                    f"its parameters: {', '.join(chain.parameter_names)}"
                )
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"fixed[{name!r}] = {value}: fixed values are normalized, in [0, 1]")
            out[name] = float(value)
        return out

    # --- structure -----------------------------------------------------------
    @property
    def n_free(self) -> int:
        """How many parameters the layer's parameter input has."""
        return len(self.free)

    @property
    def free_parameter_names(self) -> list[str]:
        return [self.parameter_names[j] for j in self.free]

    @property
    def pool(self) -> WorkerPool:
        """The worker pool, started on first use."""
        with self._pool_lock:
            if self._pool is None:
                self._pool = create_pool(
                    self.settings, self._workers, n_workers=self._n_workers, **self._pool_options
                )
            return self._pool

    def full_parameters(self, u_free: np.ndarray) -> np.ndarray:
        """Every chain parameter, normalized: the free ones from ``u_free``, the rest fixed."""
        u_free = np.asarray(u_free, dtype=np.float64)
        full = np.broadcast_to(self._fixed_vector, (*u_free.shape[:-1], len(self._fixed_vector))).copy()
        full[..., self.free] = u_free
        return full

    def _output_shape(self, audio_shape) -> tuple:
        batch, n, c = tuple(audio_shape)
        return (batch, None if n is None else n - self.settings.preroll, c)

    def build(self, input_shape: tuple) -> None:
        audio_shape, params_shape = input_shape
        if len(audio_shape) != 3:
            raise ValueError(f"audio must be (batch, samples, channels); got shape {tuple(audio_shape)}")
        _, n, c = audio_shape
        if c != self.channels:
            raise ValueError(f"chain {self.chain_name!r} takes {self.channels} channel(s); the audio has {c}")
        if n is None:
            raise ValueError(
                "the layer needs a fixed number of samples: keras.Input(shape=(samples, channels))"
            )
        if n <= self.settings.preroll:
            raise ValueError(
                f"windows of {n} samples leave nothing after the pre-roll of {self.settings.preroll}"
            )
        if params_shape[-1] != self.n_free:
            raise ValueError(
                f"the parameter input must have {self.n_free} columns "
                f"({', '.join(self.free_parameter_names)}); got {params_shape[-1]}"
            )
        super().build(input_shape)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return self._output_shape(input_shape[0])

    # --- running -------------------------------------------------------------
    def call(self, inputs: tuple | list) -> tf.Tensor:
        audio, params = inputs
        audio = tf.convert_to_tensor(audio, tf.float32)
        params = tf.cast(params, tf.float32)
        out_shape = self._output_shape(audio.shape)

        @tf.custom_gradient
        def render(x, u):
            y = tf.numpy_function(self._forward, [x, u], tf.float32, stateful=True, name="lv2_forward")
            y.set_shape(out_shape)

            def grad(dy):
                gx, gu = tf.numpy_function(
                    self._backward, [x, u, dy], [tf.float32, tf.float32], stateful=True, name="lv2_gradient"
                )
                gx.set_shape(x.shape)
                gu.set_shape(u.shape)
                return gx, gu

            return y, grad

        return render(audio, params)

    def _forward(self, x: np.ndarray, u: np.ndarray) -> np.ndarray:
        y = self.pool.forward(np.transpose(x, (0, 2, 1)), self.full_parameters(u))
        return np.ascontiguousarray(np.transpose(y, (0, 2, 1)), dtype=np.float32)

    def _backward(self, x: np.ndarray, u: np.ndarray, dy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        batch = x.shape[0]
        u_full = self.full_parameters(u)
        kwargs: dict = {"epsilon": self.epsilon}
        with self._rng_lock:
            if self.gradient == "spsa":
                delta = np.zeros((batch, self.spsa_draws, len(self.parameter_names)), dtype=np.float32)
                signs = self._rng.choice([-1.0, 1.0], size=(batch, self.spsa_draws, self.n_free))
                delta[:, :, self.free] = signs
                kwargs["delta"] = delta
            else:
                kwargs["fd_params"] = self.free
            if self.input_gradient:
                kwargs["input_epsilon"] = self.input_epsilon
                kwargs["input_seeds"] = self._rng.integers(0, 2**62, size=(batch, self.spsa_draws))
        x_cf, dy_cf = np.transpose(x, (0, 2, 1)), np.transpose(dy, (0, 2, 1))  # channels first
        result = self.pool.gradients(x_cf, u_full, dy_cf, **kwargs)
        gu = result.params[:, self.free]
        if self.log_path is not None:
            if self.grad_log is None:
                self.grad_log = GradientLog(self.log_path, self.free_parameter_names)
            self.grad_log.record(gu)
        if result.inputs is None:
            gx = np.zeros_like(x, dtype=np.float32)
        else:
            gx = np.ascontiguousarray(np.transpose(result.inputs, (0, 2, 1)), dtype=np.float32)
        return gx, gu.astype(np.float32)

    def close(self) -> None:
        """Stop the workers (if this layer started them) and write the gradient plot."""
        if self.grad_log is not None:
            self.grad_log.close()
        with self._pool_lock:
            if self._pool is not None and self._owns_pool:
                self._pool.close()
                self._pool = None

    def get_config(self) -> dict:
        config = super().get_config()
        s = self.settings
        config.update(
            chain=s.chain_toml,
            sample_rate=s.sample_rate,
            workers=None if isinstance(self._workers, WorkerPool) else self._workers,
            n_workers=self._n_workers,
            gradient=self.gradient,
            epsilon=self.epsilon,
            spsa_draws=self.spsa_draws,
            input_gradient=self.input_gradient,
            input_epsilon=self.input_epsilon,
            fixed=dict(self.fixed),
            block_size=s.block_size,
            compensate_latency=s.compensate_latency,
            window_start=s.window_start,
            preroll=s.preroll,
            seed=self.seed,
            log_gradients=None if self.log_path is None else str(self.log_path),
            pool_options=dict(self._pool_options),
        )
        return config
