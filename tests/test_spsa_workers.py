"""Worker pools for the SPSA layer: results, shared memory, crashes, hangs, Ray.

Everything renders through real LV2 plugins. The chain here is ``mastering``
at 22,050 Hz: its LSP Graphic EQ keeps round-off state across activations, so
only windows that really start from fresh plugins render bit-identically on
every worker and in every order.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from rt_host.errors import ChainError
from rt_host.lv2 import Chain, ChainSpec
from rt_host.signals import unmastered_mix
from training.spsa.jobs import Task
from training.spsa.renderer import Renderer, RenderSettings
from training.spsa.shm import SharedArrays
from training.spsa.workers import InProcessPool, LocalPool, WorkerError, create_pool

RATE = 22050
N = 4096
BATCH = 4


@pytest.fixture(scope="module")
def settings() -> RenderSettings:
    return RenderSettings.for_chain("mastering-v1", RATE)


@pytest.fixture(scope="module")
def batch() -> tuple[np.ndarray, np.ndarray]:
    x = np.stack([unmastered_mix(1.0, RATE, seed=i)[:, 2000 : 2000 + N] for i in range(BATCH)])
    u = np.random.default_rng(0).uniform(size=(BATCH, 53))
    return x.astype(np.float32), u


@pytest.fixture(scope="module")
def reference(settings, batch) -> np.ndarray:
    """Every window rendered in this process by a new Chain: what workers must match."""
    x, u = batch
    return np.stack([Chain.load("mastering-v1")(x[b], RATE, params=u[b]) for b in range(BATCH)])


@pytest.fixture(scope="module")
def pool(settings):
    with LocalPool(settings, 2, task_timeout=60) as p:
        yield p


def test_local_pool_renders_like_a_new_chain_bit_for_bit(pool, batch, reference):
    x, u = batch
    assert pool.n_workers == 2
    assert np.array_equal(pool.forward(x, u), reference)
    # again, now that the workers have rendered other windows: no history leaks in
    assert np.array_equal(pool.forward(x[::-1], u[::-1]), reference[::-1])


def test_in_process_pool_gives_the_same_gradients(pool, settings, batch):
    x, u = batch
    rng = np.random.default_rng(1)
    dy = rng.standard_normal((BATCH, 2, N)).astype(np.float32)
    delta = rng.choice([-1.0, 1.0], size=(BATCH, 3, 53))
    seeds = rng.integers(0, 1000, size=(BATCH, 1))
    kwargs = dict(epsilon=0.03, delta=delta, input_epsilon=1e-3, input_seeds=seeds)
    with InProcessPool(settings) as local:
        want = local.gradients(x, u, dy, **kwargs)
    got = pool.gradients(x, u, dy, **kwargs)
    assert got.draws.shape == (BATCH, 3, 53)
    np.testing.assert_allclose(got.draws, want.draws, rtol=1e-12)
    np.testing.assert_allclose(got.params, want.draws.mean(axis=1), rtol=1e-12)
    assert np.array_equal(got.inputs, want.inputs)
    assert np.abs(got.params).max() > 0


def test_fixed_parameters_get_exactly_zero(pool, batch):
    x, u = batch
    dy = np.random.default_rng(2).standard_normal((BATCH, 2, N)).astype(np.float32)
    delta = np.random.default_rng(3).choice([-1.0, 1.0], size=(BATCH, 2, 53)).astype(np.float32)
    delta[:, :, 10:] = 0  # only the first ten parameters move
    g = pool.gradients(x, u, dy, epsilon=0.03, delta=delta).draws
    assert np.all(g[:, :, 10:] == 0)
    assert np.all(g[:, :, :10] != 0)


def test_finite_differences_only_for_the_parameters_asked(pool, batch):
    x, u = batch
    dy = np.random.default_rng(4).standard_normal((BATCH, 2, N)).astype(np.float32)
    asked = [2, 40]  # mbc.makeup0 and geq.g_21: both change every window
    g = pool.gradients(x[:2], u[:2], dy[:2], epsilon=0.03, fd_params=asked).params
    assert g.shape == (2, 53)
    assert np.all(g[:, asked] != 0)
    assert np.count_nonzero(g) == 4


LIMITER_TOML = """
name = "delay"
channels = 1
[[stage]]
plugin = "http://lsp-plug.in/plugins/lv2/limiter_mono"
fixed = { th = 1.0, boost = 0, alr = 0, lk = 5.0, ovs = 0, dith = 0, g_in = 1.0, g_out = 1.0 }
"""


@pytest.mark.parametrize("start", ["fresh", "continue"])
def test_window_start_policies(start):
    """Below its threshold the limiter only delays (look-ahead): what a window's head holds
    shows where it started — silence after a fresh start, the previous window's end otherwise."""
    renderer = Renderer(RenderSettings(chain_toml=LIMITER_TOML, sample_rate=RATE, window_start=start))
    a, b = (np.random.default_rng(s).uniform(-0.1, 0.1, (1, N)).astype(np.float32) for s in (1, 2))
    renderer.render(a, np.zeros(0))
    y = renderer.render(b, np.zeros(0))
    lag = renderer.latency
    assert lag > 0
    assert np.array_equal(y[:, lag:], b[:, :-lag])
    head = np.zeros((1, lag), np.float32) if start == "fresh" else a[:, -lag:]
    assert np.array_equal(y[:, :lag], head)


def test_a_dead_worker_is_restarted(settings, batch, reference):
    x, u = batch
    with LocalPool(settings, 2) as p:
        os.kill(p.pids[0], signal.SIGKILL)
        assert np.array_equal(p.forward(x, u), reference)
        assert p.restarts == 1
        assert len(p.pids) == 2


def test_a_worker_killed_mid_batch_costs_only_a_retry(settings, batch, reference):
    x, u = batch
    many_x, many_u = np.concatenate([x] * 12), np.concatenate([u] * 12)  # 48 windows
    with LocalPool(settings, 2) as p:
        victim = p.pids[1]
        result = {}
        worker = threading.Thread(target=lambda: result.update(y=p.forward(many_x, many_u)))
        worker.start()
        deadline = time.monotonic() + 30
        while not p._inflight[1] and time.monotonic() < deadline:  # wait until it holds work
            time.sleep(0.001)
        os.kill(victim, signal.SIGKILL)
        worker.join(60)
        assert np.array_equal(result["y"], np.concatenate([reference] * 12))
        assert p.restarts == 1 and victim not in p.pids


def test_a_hung_worker_is_killed_after_the_timeout(settings, batch, reference):
    x, u = batch
    with LocalPool(settings, 2, task_timeout=3.0) as p:
        stuck = p.pids[0]
        os.kill(stuck, signal.SIGSTOP)  # alive but silent, like a plugin stuck in a loop
        try:
            y = p.forward(x, u)
        finally:
            try:
                os.kill(stuck, signal.SIGKILL)
            except ProcessLookupError:
                pass
        assert np.array_equal(y, reference)
        assert p.restarts >= 1 and stuck not in p.pids


def test_a_task_that_keeps_killing_workers_fails_with_a_clear_error(settings, batch, reference):
    x, u = batch
    with LocalPool(settings, 2, retries=1) as p:
        with pytest.raises(WorkerError, match=r"example 0 killed 2 worker\(s\).*exited with status 70"):
            p.run([Task("exit", 0)], {"x": x, "u": u}, {"y": ((BATCH, 2, N), "float32")})
        assert np.array_equal(p.forward(x, u), reference)  # the pool still works


def test_a_bad_chain_fails_when_the_pool_is_created():
    spec = ChainSpec.loads(
        'channels = 1\n[[stage]]\nplugin = "http://calf.sourceforge.net/plugins/MonoCompressor"\n'
    )
    spec.stages[0].fixed["no_such_port"] = 1.0
    with pytest.raises(ChainError, match="no_such_port"):
        LocalPool(RenderSettings(chain_toml=spec.dumps(), sample_rate=RATE), 2)


def test_bad_batches_get_one_line_errors(pool, batch):
    x, u = batch
    with pytest.raises(ValueError, match=r"\(batch, 2 channel\(s\), samples\)"):
        pool.forward(x[:, :1], u)
    with pytest.raises(ValueError, match=r"parameters must be \(batch=4, 53\)"):
        pool.forward(x, u[:, :5])
    with pytest.raises(ValueError, match="NaN"):
        pool.forward(x, np.full_like(u, np.nan))
    with pytest.raises(ValueError, match="epsilon"):
        pool.gradients(x, u, np.zeros_like(x), epsilon=0.0, fd_params=[0])
    with pytest.raises(ValueError, match="workers="):
        create_pool(pool.settings, "threads")


def test_shared_memory_is_freed_when_the_pool_closes(settings, batch):
    x, u = batch

    def blocks() -> set[str]:
        return {p.name for p in Path("/dev/shm").glob("dafx-*")}

    before = blocks()
    p = LocalPool(settings, 1)
    p.forward(x[:1], u[:1])
    assert blocks() - before, "the batch should live in shared memory"
    p.close()
    assert blocks() - before == set()


def test_shared_arrays_are_one_memory_in_two_views():
    arena = SharedArrays({"x": ((2, 3), "float32"), "g": ((4,), "float64")})
    try:
        other = SharedArrays.attach(arena.handle)
        arena["x"][:] = 7.0
        other["g"][:] = np.arange(4)
        assert np.all(other["x"] == 7.0) and np.array_equal(arena["g"], np.arange(4.0))
        assert arena["g"].ctypes.data % 64 == 0
        other.close()
    finally:
        arena.close()
        arena.unlink()


def test_workers_never_import_tensorflow():
    code = (
        "import sys, training, training.spsa.workers, training.spsa.renderer, training.spsa.jobs; "
        "print('tensorflow' in sys.modules or 'keras' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_ray_backend_on_a_local_ray(settings, batch, reference):
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        pytest.skip("a Ray session is already running in this process")
    x, u = batch
    rng = np.random.default_rng(5)
    dy = rng.standard_normal((BATCH, 2, N)).astype(np.float32)
    delta = rng.choice([-1.0, 1.0], size=(BATCH, 1, 53))
    with InProcessPool(settings) as local:
        want = local.gradients(x, u, dy, epsilon=0.03, delta=delta)
    p = create_pool(settings, "ray", n_workers=2)
    try:
        assert ray.is_initialized() and p.n_workers == 2
        assert np.array_equal(p.forward(x, u), reference)
        got = p.gradients(x, u, dy, epsilon=0.03, delta=delta)
        np.testing.assert_allclose(got.draws, want.draws, rtol=1e-12)
        ray.kill(p._actors[0], no_restart=True)  # an actor dies: restarted, batch still right
        assert np.array_equal(p.forward(x, u), reference)
        assert p.restarts == 1
    finally:
        p.close()
    assert not ray.is_initialized()  # the Ray this pool started is shut down
