"""The SPSA Keras layer on real plugins: forward, gradients, training, logging.

Layers here share small worker pools; the chains are built from TOML in the
tests where the shipped ones do not fit (a pure gain, a level normalizer).
TensorFlow is imported by the first test that needs it, not at collection, so
the rest of the suite neither waits for it nor runs with it loaded.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from rt_host.errors import PortNotFound
from rt_host.lv2 import Chain, ChainSpec
from rt_host.signals import pink_noise, unmastered_mix
from training.spsa.renderer import RenderSettings
from training.spsa.workers import LocalPool

RATE = 22050

# LSP Limiter far below its threshold: y[n] = g_in · x[n − latency], exactly.
GAIN_TOML = """
name = "gain"
channels = 1
sample_rate = 22050
[[stage]]
name = "lim"
plugin = "http://lsp-plug.in/plugins/lv2/limiter_mono"
fixed = { th = 1.0, boost = 0, alr = 0, lk = 5.0, ovs = 0, dith = 0, g_out = 1.0 }
[stage.predict]
g_in = { min = 0.25, max = 4.0, scale = "log" }
"""

# DeepAFx's "learn to normalize": a gain into a 4:1 compressor (ratio fixed by the layer).
NORMALIZE_TOML = """
name = "normalize"
channels = 1
sample_rate = 22050
[[stage]]
name = "comp"
plugin = "http://calf.sourceforge.net/plugins/MonoCompressor"
fixed = { bypass = 0, attack = 5, release = 50, makeup = 1, knee = 1, mix = 1 }
[stage.predict]
level_in = { min = 0.0625, max = 16.0, scale = "log" }
threshold = { min = 0.01, max = 1.0, scale = "log" }
ratio = { min = 1.0, max = 20.0, scale = "log" }
"""
RATIO_4_TO_1 = float(np.log(4.0) / np.log(20.0))


def mono(seconds: float, seed: int, start: int, n: int) -> np.ndarray:
    return unmastered_mix(seconds, RATE, seed=seed).mean(axis=0)[start : start + n].astype(np.float32)


@pytest.fixture(scope="module")
def tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return pytest.importorskip("tensorflow")


@pytest.fixture(scope="module")
def keras(tf):
    return pytest.importorskip("keras")


@pytest.fixture(scope="module")
def LV2Layer(keras):  # the class itself, named as in the code it stands for
    from training.spsa.layer import LV2Layer

    return LV2Layer


@pytest.fixture(scope="module")
def distortion_pool():
    with LocalPool(RenderSettings.for_chain("distortion-v1"), 2) as pool:
        yield pool


# --- forward ------------------------------------------------------------------
def test_forward_in_a_graph_mode_model_equals_a_direct_render_bit_for_bit(tf, keras, LV2Layer):
    chain = Chain.load("mastering-v1")
    fixed = {"limiter.rt": 0.25, "mbc.freq1": 0.5}
    layer = LV2Layer("mastering-v1", RATE, workers=2, fixed=fixed)
    try:
        n = 8192
        audio = keras.Input((n, 2))
        params = keras.Input((layer.n_free,))
        model = keras.Model([audio, params], layer([audio, params]))
        assert model.output.shape == (None, n, 2)
        x = np.stack([unmastered_mix(1, RATE, seed=s)[:, 1000 : 1000 + n].T for s in range(3)])
        u = np.random.default_rng(0).uniform(size=(3, layer.n_free)).astype(np.float32)
        y = model.predict([x, u], batch_size=3, verbose=0)  # a tf.function: graph mode
        full = layer.full_parameters(u)
        assert np.all(full[:, chain.parameter_names.index("limiter.rt")] == 0.25)
        for b in range(3):
            direct = Chain.load("mastering-v1")(np.ascontiguousarray(x[b].T), RATE, params=full[b])
            assert np.array_equal(y[b], direct.T)
    finally:
        layer.close()


# --- gradients ------------------------------------------------------------------
def test_mean_of_64_spsa_draws_matches_finite_differences(tf, LV2Layer, distortion_pool):
    """Cosine ≥ 0.95 on a smooth setting: four free parameters of the Calf MBC."""
    chain = Chain.load("distortion-v1")
    free = ["mbc.level_in", "mbc.threshold1", "mbc.ratio1", "mbc.makeup1"]
    fixed = {n: float(v) for n, v in zip(chain.parameter_names, chain.default_normalized()) if n not in free}
    spsa = LV2Layer("distortion-v1", workers=distortion_pool, fixed=fixed, spsa_draws=64, seed=0)
    fd = LV2Layer("distortion-v1", workers=distortion_pool, fixed=fixed, gradient="fd")
    assert spsa.free_parameter_names == free
    x = mono(2, 3, RATE // 2, 16384)[None, :, None]
    rng = np.random.default_rng(0)
    u = tf.constant(rng.uniform(0.3, 0.7, (1, 4)), tf.float32)
    target = spsa([x, tf.constant(rng.uniform(0.3, 0.7, (1, 4)), tf.float32)])

    def gradient(layer: LV2Layer) -> np.ndarray:
        with tf.GradientTape() as tape:
            tape.watch(u)
            loss = tf.reduce_mean(tf.square(layer([x, u]) - target))
        return tape.gradient(loss, u).numpy()[0]

    g_spsa, g_fd = gradient(spsa), gradient(fd)
    cosine = float(g_spsa @ g_fd / np.linalg.norm(g_spsa) / np.linalg.norm(g_fd))
    print(f"SPSA (K=64) vs FD cosine: {cosine:.4f}; spsa {g_spsa}, fd {g_fd}")
    assert np.linalg.norm(g_fd) > 0
    assert cosine >= 0.95


def test_gradients_of_a_pure_gain_for_input_and_parameter(tf, LV2Layer):
    """y[n] = g·x[n − L] with g = 0.25·16^u: both gradients are known exactly."""
    layer = LV2Layer(GAIN_TOML, workers=1, input_gradient=True, seed=1)
    try:
        n = 4096
        x = np.random.default_rng(2).uniform(-0.01, 0.01, (1, n, 1)).astype(np.float32)
        w = tf.constant(np.random.default_rng(3).standard_normal((1, n, 1)), tf.float32)
        u = tf.constant([[0.6]], tf.float32)
        xt = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch([xt, u])
            loss = tf.reduce_sum(w * layer([xt, u]))
        gx, gu = (g.numpy() for g in tape.gradient(loss, [xt, u]))
        probe = Chain(ChainSpec.loads(GAIN_TOML))
        probe.prepare(RATE)
        latency = probe.latency
        assert latency > 0  # the estimate must follow the look-ahead delay
        gain = 0.25 * 16**0.6
        want_x = np.zeros(n)
        want_x[: n - latency] = gain * w.numpy()[0, latency:, 0]
        np.testing.assert_allclose(gx[0, :, 0], want_x, rtol=1e-3, atol=1e-6)
        want_u = float(np.sum(w.numpy()[0, latency:, 0] * x[0, : n - latency, 0])) * gain * np.log(16)
        np.testing.assert_allclose(gu[0, 0], want_u, rtol=1e-2)
    finally:
        layer.close()


def test_without_input_gradient_the_audio_gets_zeros(tf, LV2Layer, distortion_pool):
    layer = LV2Layer("distortion-v1", workers=distortion_pool, seed=0)
    x = tf.constant(mono(1, 1, 0, 2048)[None, :, None])
    u = tf.constant(np.full((1, layer.n_free), 0.5), tf.float32)
    with tf.GradientTape() as tape:
        tape.watch([x, u])
        loss = tf.reduce_sum(tf.square(layer([x, u])))
    gx, gu = tape.gradient(loss, [x, u])
    assert np.all(gx.numpy() == 0)
    assert gu.shape == (1, 28) and np.count_nonzero(gu.numpy()) > 0


# --- training -----------------------------------------------------------------------
def test_learn_to_normalize_with_model_fit_in_graph_mode(tf, keras, LV2Layer):
    """Inputs at −40 … −10 dBFS RMS; predict gain and threshold so the output sits at −20 dBFS."""
    n, m, target = 8192, 64, -20.0
    rng = np.random.default_rng(0)
    levels = rng.uniform(-40.0, -10.0, m)
    x = np.stack([pink_noise(n / RATE, RATE, seed=i)[0, :n] for i in range(m)])
    x *= (10 ** (levels / 20) / np.sqrt(np.mean(x**2, axis=1)))[:, None]
    x = x[:, :, None].astype(np.float32)

    def rms_db(a):
        return 10.0 * tf.math.log(tf.reduce_mean(tf.square(a), axis=[1, 2]) + 1e-10) / tf.math.log(10.0)

    keras.utils.set_random_seed(0)  # the Dense layer's starting weights
    layer = LV2Layer(NORMALIZE_TOML, workers=2, fixed={"comp.ratio": RATIO_4_TO_1}, seed=0)
    try:
        assert layer.free_parameter_names == ["comp.level_in", "comp.threshold"]
        audio = keras.Input((n, 1))
        feature = keras.layers.Lambda(lambda a: (tf.expand_dims(rms_db(a), -1) + 25.0) / 15.0)(audio)
        params = keras.layers.Dense(layer.n_free, activation="sigmoid")(feature)
        level = keras.layers.Lambda(lambda a: tf.expand_dims(rms_db(a), -1))(layer([audio, params]))
        model = keras.Model(audio, level)
        model.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse", jit_compile=False)
        assert not model.run_eagerly
        y = np.full((m, 1), target, np.float32)
        before = model.evaluate(x, y, batch_size=16, verbose=0)
        model.fit(x, y, batch_size=8, epochs=15, verbose=0)
        after = model.evaluate(x, y, batch_size=16, verbose=0)
        print(f"learn to normalize: loss {before:.2f} → {after:.3f} dB² ({1 - after / before:.1%} lower)")
        assert after <= 0.1 * before
    finally:
        layer.close()


def test_gradient_log_writes_csv_and_png(tf, LV2Layer, tmp_path, distortion_pool):
    log = tmp_path / "logs" / "grads.csv"
    layer = LV2Layer("distortion-v1", workers=distortion_pool, seed=0, log_gradients=log)
    x = tf.constant(mono(1, 2, 0, 2048)[None, :, None])
    for step in range(3):
        u = tf.constant(np.full((1, layer.n_free), 0.3 + 0.1 * step), tf.float32)
        with tf.GradientTape() as tape:
            tape.watch(u)
            loss = tf.reduce_sum(tf.square(layer([x, u])))
        tape.gradient(loss, u)
    layer.close()
    rows = log.read_text().splitlines()
    assert rows[0].split(",")[:3] == ["step", "mean_norm", "example_norm"]
    assert rows[0].split(",")[3:] == layer.free_parameter_names
    assert len(rows) == 4 and all(float(r.split(",")[1]) > 0 for r in rows[1:])
    assert log.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- configuration and errors ----------------------------------------------------------
def test_config_round_trips(LV2Layer):
    layer = LV2Layer(
        "distortion-v1", epsilon=0.05, spsa_draws=3, fixed={"mbc.knee0": 0.5}, preroll=256, seed=7
    )
    again = LV2Layer.from_config(layer.get_config())
    assert again.settings == layer.settings
    assert (again.epsilon, again.spsa_draws, again.fixed, again.seed) == (0.05, 3, {"mbc.knee0": 0.5}, 7)
    assert again.n_free == 27


def test_a_model_with_the_layer_saves_and_loads(keras, LV2Layer, tmp_path):
    layer = LV2Layer("distortion-v1", workers=0, epsilon=0.05, fixed={"mbc.knee0": 0.5})
    audio, params = keras.Input((2048, 1)), keras.Input((layer.n_free,))
    keras.Model([audio, params], layer([audio, params])).save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    again = next(lay for lay in loaded.layers if isinstance(lay, LV2Layer))
    assert again.settings == layer.settings and again.fixed == {"mbc.knee0": 0.5}
    assert again.epsilon == 0.05 and loaded.output.shape == (None, 2048, 1)


def test_preroll_is_rendered_then_cut(LV2Layer):
    n, pre = 4096, 1024
    layer = LV2Layer("distortion-v1", workers=0, preroll=pre)
    x = mono(1, 4, 0, pre + n)
    u = np.full((1, layer.n_free), 0.4, np.float32)
    y = layer([x[None, :, None], u]).numpy()
    assert y.shape == (1, n, 1)
    direct = Chain.load("distortion-v1")(x[None, :], RATE, params=layer.full_parameters(u)[0])
    assert np.array_equal(y[0, :, 0], direct[0, pre:])
    layer.close()


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"fixed": {"mbc.nope": 0.5}}, PortNotFound, "predicts no parameter 'mbc.nope'"),
        ({"fixed": {"mbc.knee0": 2.0}}, ValueError, r"normalized, in \[0, 1\]"),
        ({"epsilon": 0.0}, ValueError, "epsilon must be in"),
        ({"gradient": "adjoint"}, ValueError, "'spsa' or 'fd'"),
        ({"window_start": "reset"}, ValueError, "window_start must be one of fresh, continue"),
        ({"workers": "threads"}, ValueError, "workers="),
    ],
)
def test_bad_settings_get_one_line_errors(LV2Layer, kwargs, error, match):
    with pytest.raises(error, match=match):
        layer = LV2Layer("distortion-v1", **kwargs)
        layer.pool  # noqa: B018 - the workers choice is checked when the pool starts


def test_bad_shapes_get_one_line_errors(keras, LV2Layer):
    layer = LV2Layer("distortion-v1", workers=0)
    with pytest.raises(ValueError, match="takes 1 channel"):
        layer([keras.Input((1024, 2)), keras.Input((28,))])
    with pytest.raises(ValueError, match="must have 28 columns"):
        layer([keras.Input((1024, 1)), keras.Input((5,))])
    with pytest.raises(ValueError, match="fixed number of samples"):
        layer([keras.Input((None, 1)), keras.Input((28,))])
