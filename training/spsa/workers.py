"""Worker pools that render plugin chains for training, behind one interface.

Training speed is bounded by plugin renders (forward + 2 per SPSA draw per
example), so they run in persistent worker processes, each owning its own
plugin chain (:class:`~training.spsa.renderer.Renderer`) — never in the TensorFlow
process, whose ``numpy_function`` holds the GIL. One chain per worker serves
the forward, + and − renders alike: every render starts from freshly
instantiated plugins, so separate instances per role would hold no state worth
keeping apart.

Backends (pick one with :func:`create_pool` or the layer's ``workers=``):

* :class:`LocalPool` (default; ``workers=N``) — ``N`` local processes, default
  one per core. Started as plain ``python -c`` subprocesses talking over a
  socket pair, not through ``multiprocessing``'s spawn, which would re-import
  the caller's ``__main__`` (and TensorFlow with it) in every worker. Audio
  moves through :class:`~training.spsa.shm.SharedArrays`; messages carry only task
  descriptions.
* :class:`RayPool` (``workers="ray"`` starts a local Ray; ``"ray://HOST:PORT"``
  joins a cluster) — one Ray actor per CPU; the batch goes into Ray's object
  store once (shared memory on each node). Every node needs deepafx-rt and the
  chain's plugins installed.
* :class:`InProcessPool` (``workers=0``) — the same tasks, serially, in this
  process: the benchmark's baseline and a debugging aid.

**How examples map to workers**: dynamically. A batch becomes one task per
render pair (see :mod:`training.spsa.jobs`); the parent keeps every worker holding
at most :data:`PREFETCH` tasks and hands out the next one whenever a worker
answers. Any worker can take any example (all inputs are in shared memory and
windows start from fresh plugins), so a slow example, a slow plugin setting or
a core busy with TensorFlow never leaves another worker idle at the end of a
batch; the message round trip (~0.1 ms) is small beside a render (≥ 1 ms).

**Failures never hang**: a worker that dies (its socket closes / Ray reports
the actor dead) is restarted and its tasks are handed out again; a task that
kills ``1 + retries`` workers, a task that raises, a task running longer than
``task_timeout`` (the worker is killed) or a worker that cannot start ends the
call with a one-line :class:`WorkerError`.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref
from abc import ABC, abstractmethod
from collections import OrderedDict, deque
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path

import numpy as np

from rt_host.errors import DeepAFxError
from rt_host.lv2 import Chain
from training.spsa.jobs import Task, execute, input_layout, store
from training.spsa.renderer import Renderer, RenderSettings
from training.spsa.shm import SharedArrays

log = logging.getLogger(__name__)

PREFETCH = 2  # tasks queued per worker: the next one is waiting when a render ends
POLL_SECONDS = 0.5  # how often a waiting parent checks for hung workers
ARENA_CACHE = 4  # batch layouts whose shared memory is kept for reuse
_PROJECT_ROOT = str(Path(__file__).resolve().parents[1])
# A worker is one core's worth of work. Left alone, OpenBLAS gives every process a
# thread per core that spins after each call: with 2 workers on 2 cores the
# dot products of the gradient estimates made renders 45 % slower (measured).
SINGLE_THREADED = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


class WorkerError(DeepAFxError):
    """A worker died, hung, could not start, or failed a task."""


def default_workers() -> int:
    """One worker per core this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@dataclass
class GradientResult:
    """What :meth:`WorkerPool.gradients` returns (all float32 or float64 numpy)."""

    params: np.ndarray  # (B, P) mean estimate of ∂L/∂u (0 for fixed parameters)
    draws: np.ndarray | None  # (B, K, P) every SPSA draw (None for finite differences)
    inputs: np.ndarray | None  # (B, C, preroll + N) mean estimate of ∂L/∂x, if asked


class WorkerPool(ABC):
    """Renders batches of windows through one chain; see the module docstring.

    All arrays are numpy, channels first: ``x`` ``(B, C, preroll + N)`` float32,
    ``u`` ``(B, n_params)`` normalized in [0, 1] (every parameter of the chain),
    ``dy`` ``(B, C, N)``. Calls from several threads are serialized.
    """

    n_workers: int

    def __init__(self, settings: RenderSettings) -> None:
        self.settings = settings
        chain = Chain(settings.spec())  # checks the chain here, with a clear error, before any worker starts
        self.n_params = chain.n_params
        self.channels = chain.channels
        self.parameter_names = chain.parameter_names
        self.restarts = 0  # workers restarted after dying or hanging, over the pool's life
        self._lock = threading.Lock()
        self._closed = False

    # --- the one primitive ----------------------------------------------------
    def run(
        self,
        tasks: list[Task],
        inputs: dict[str, np.ndarray],
        outputs: dict[str, tuple[tuple[int, ...], str]],
    ) -> dict[str, np.ndarray]:
        """Do ``tasks`` on the batch ``inputs``; returns new arrays shaped as ``outputs``."""
        if self._closed:
            raise WorkerError("this worker pool is closed; create a new one")
        with self._lock:
            return self._run(tasks, inputs, outputs)

    @abstractmethod
    def _run(self, tasks, inputs, outputs) -> dict[str, np.ndarray]: ...

    # --- batch helpers -------------------------------------------------------
    def _check(self, x, u, dy=None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        x = np.ascontiguousarray(x, dtype=np.float32)
        u = np.ascontiguousarray(u, dtype=np.float64)
        if x.ndim != 3 or x.shape[1] != self.channels:
            raise ValueError(
                f"audio must be (batch, {self.channels} channel(s), samples) for this chain; got {x.shape}"
            )
        if x.shape[2] <= self.settings.preroll:
            raise ValueError(
                f"windows of {x.shape[2]} samples leave nothing after the pre-roll of "
                f"{self.settings.preroll}; make them longer or the pre-roll shorter"
            )
        if u.shape != (x.shape[0], self.n_params):
            raise ValueError(f"parameters must be (batch={x.shape[0]}, {self.n_params}); got {u.shape}")
        if not np.all(np.isfinite(u)):
            raise ValueError("parameters contain NaN or Inf; check the layer that predicts them")
        if dy is not None:
            dy = np.ascontiguousarray(dy, dtype=np.float32)
            want = (x.shape[0], x.shape[1], x.shape[2] - self.settings.preroll)
            if dy.shape != want:
                raise ValueError(f"output gradient must be {want}; got {dy.shape}")
        return x, np.clip(u, 0.0, 1.0), dy

    def forward(self, x: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Render every window at its parameters: float32 ``(B, C, N)``."""
        x, u, _ = self._check(x, u)
        b, c, n = x.shape
        tasks = [Task("forward", i) for i in range(b)]
        out = self.run(tasks, {"x": x, "u": u}, {"y": ((b, c, n - self.settings.preroll), "float32")})
        return out["y"]

    def gradients(
        self,
        x: np.ndarray,
        u: np.ndarray,
        dy: np.ndarray,
        *,
        epsilon: float,
        delta: np.ndarray | None = None,
        fd_params: list[int] | None = None,
        input_epsilon: float | None = None,
        input_seeds: np.ndarray | None = None,
    ) -> GradientResult:
        """Estimate ``∂L/∂u`` (and ``∂L/∂x``) for a batch in one round of tasks.

        Give ``delta`` ``(B, K, P)`` in {−1, 0, +1} for SPSA with ``K`` draws, or
        ``fd_params`` (parameter indices) for central finite differences. Give
        ``input_epsilon`` and ``input_seeds`` ``(B, Kx)`` for the input gradient.
        """
        x, u, dy = self._check(x, u, dy)
        b, c, n = x.shape
        if not 0.0 < epsilon <= 0.5:
            raise ValueError(f"epsilon must be in (0, 0.5] (a step in normalized units), not {epsilon}")
        if (delta is None) == (fd_params is None):
            raise ValueError("give either delta (SPSA) or fd_params (finite differences)")
        inputs: dict[str, np.ndarray] = {"x": x, "u": u, "dy": dy}
        outputs: dict[str, tuple[tuple[int, ...], str]] = {}
        tasks: list[Task] = []
        if delta is not None:
            delta = np.ascontiguousarray(delta, dtype=np.float32)
            if delta.ndim != 3 or delta.shape[0] != b or delta.shape[2] != self.n_params:
                raise ValueError(f"delta must be (batch={b}, draws, {self.n_params}); got {delta.shape}")
            k = delta.shape[1]
            inputs["delta"] = delta
            outputs["g"] = ((b, k, self.n_params), "float64")
            tasks += [Task("spsa", i, j, epsilon) for i in range(b) for j in range(k)]
        else:
            bad = [j for j in fd_params if not 0 <= j < self.n_params]
            if bad:
                raise ValueError(f"fd_params {bad} are not parameter indices (0 … {self.n_params - 1})")
            outputs["g"] = ((b, self.n_params), "float64")
            tasks += [Task("fd", i, j, epsilon) for i in range(b) for j in fd_params]
        if input_epsilon is not None:
            seeds = np.asarray(input_seeds, dtype=np.int64)
            if seeds.ndim != 2 or seeds.shape[0] != b:
                raise ValueError(f"input_seeds must be (batch={b}, draws); got {seeds.shape}")
            outputs["gx"] = ((b, seeds.shape[1], c, n), "float32")
            tasks += [
                Task("input", i, j, input_epsilon, int(seeds[i, j]))
                for i in range(b)
                for j in range(seeds.shape[1])
            ]
        out = self.run(tasks, inputs, outputs)
        if delta is not None:
            draws = out["g"]
            params = draws.mean(axis=1)
        else:
            draws, params = None, out["g"]
        gx = out["gx"].mean(axis=1) if "gx" in out else None
        return GradientResult(params=params, draws=draws, inputs=gx)

    # --- life cycle ----------------------------------------------------------
    def close(self) -> None:
        self._closed = True

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --- in this process ---------------------------------------------------------
class InProcessPool(WorkerPool):
    """The same tasks, one after another, in this process (no workers)."""

    def __init__(self, settings: RenderSettings) -> None:
        super().__init__(settings)
        self.n_workers = 0
        self.renderer = Renderer(settings)

    def _run(self, tasks, inputs, outputs):
        if any(t.kind == "exit" for t in tasks):
            raise ValueError("an exit task would end this process; it is for worker pools only")
        out = {k: np.zeros(shape, dtype=dt) for k, (shape, dt) in outputs.items()}
        for task in tasks:
            store(out, task, execute(self.renderer, task, inputs))
        return out

    def close(self) -> None:
        if not self._closed:
            self.renderer.close()
        super().close()


# --- a scheduler shared by the process and Ray backends --------------------------
class _ScheduledPool(WorkerPool):
    """Hands tasks to workers dynamically; restarts dead ones; never waits forever.

    Backends implement the hooks: ``_launch(i)`` (start worker ``i`` without
    waiting), ``_submit(i, tid, task, ctx)``, ``_events(timeout)`` → list of
    ``(worker, kind, tid, payload)`` with kind in ready/fail/done/error/died,
    ``_kill(i)``, ``_stage``/``_collect``/``_abandon`` for a batch's arrays.
    """

    def __init__(
        self,
        settings: RenderSettings,
        n_workers: int,
        *,
        task_timeout: float,
        retries: int,
        start_timeout: float,
    ) -> None:
        super().__init__(settings)
        if n_workers < 1:
            raise ValueError(f"a worker pool needs at least 1 worker, not {n_workers}")
        if task_timeout <= 0:
            raise ValueError("task_timeout must be > 0 seconds")
        self.n_workers = n_workers
        self.task_timeout = float(task_timeout)
        self.retries = int(retries)
        self.start_timeout = float(start_timeout)
        self._state = ["dead"] * n_workers  # starting | ready | dead
        self._started_at = [0.0] * n_workers
        self._inflight: list[dict[int, int]] = [{} for _ in range(n_workers)]  # worker → {tid: task index}
        self._busy_since = [0.0] * n_workers
        self._why_dead = [""] * n_workers
        self._next_tid = 0

    # backend hooks
    @abstractmethod
    def _launch(self, i: int) -> None: ...

    @abstractmethod
    def _submit(self, i: int, tid: int, task: Task, ctx) -> None: ...

    @abstractmethod
    def _events(self, timeout: float) -> list[tuple[int, str, int, object]]: ...

    @abstractmethod
    def _kill(self, i: int) -> None: ...

    @abstractmethod
    def _stage(self, inputs, outputs): ...

    @abstractmethod
    def _collect(self, ctx, outputs, task: Task, payload) -> None: ...

    @abstractmethod
    def _finish(self, ctx, outputs) -> dict[str, np.ndarray]: ...

    def _abandon(self, ctx) -> None:  # noqa: B027 - optional hook
        """A batch ended early; its tasks may still be running."""

    # start-up
    def _start_all(self) -> None:
        for i in range(self.n_workers):
            self._start(i)
        deadline = time.monotonic() + self.start_timeout
        while "starting" in self._state:
            left = deadline - time.monotonic()
            if left <= 0:
                self.close()
                raise WorkerError(
                    f"{self._state.count('starting')} worker(s) did not start within "
                    f"{self.start_timeout:g} s; is the machine overloaded? (start_timeout=… waits longer)"
                )
            for event in self._events(min(left, POLL_SECONDS)):
                self._handle_lifecycle(event)

    def _start(self, i: int) -> None:
        self._state[i] = "starting"
        self._started_at[i] = time.monotonic()
        self._inflight[i] = {}
        self._why_dead[i] = ""
        self._launch(i)

    def _handle_lifecycle(self, event) -> bool:
        """Handle ready/fail/died-while-starting; True if the event was one of those."""
        i, kind, _tid, payload = event
        if kind == "ready":
            self._state[i] = "ready"
            return True
        if kind == "fail":
            self.close()
            raise WorkerError(f"worker {i} could not set up the chain: {payload}")
        if kind == "died" and self._state[i] == "starting":
            self._state[i] = "dead"
            reason = self._why_dead[i] or payload
            self.close()
            raise WorkerError(
                f"worker {i} died while starting ({reason}); run the chain in-process (workers=0) to see why"
            )
        return False

    # the scheduling loop
    def _run(self, tasks, inputs, outputs):
        for i in range(self.n_workers):
            if self._state[i] == "dead":
                self._restart(i, self._why_dead[i] or "it died during an earlier batch")
        ctx = self._stage(inputs, outputs)
        queue = deque(range(len(tasks)))
        attempts = [0] * len(tasks)
        left = len(tasks)
        try:
            while left:
                now = time.monotonic()
                for i in range(self.n_workers):
                    if self._state[i] != "ready":
                        continue
                    while queue and len(self._inflight[i]) < PREFETCH:
                        t = queue.popleft()
                        tid = self._next_tid
                        self._next_tid += 1
                        if not self._inflight[i]:
                            self._busy_since[i] = now
                        self._inflight[i][tid] = t
                        self._submit(i, tid, tasks[t], ctx)
                for event in self._events(POLL_SECONDS):
                    i, kind, tid, payload = event
                    if self._handle_lifecycle(event):
                        continue
                    self._busy_since[i] = time.monotonic()  # any word from a worker is progress
                    if kind == "done" and tid in self._inflight[i]:
                        t = self._inflight[i].pop(tid)
                        self._collect(ctx, outputs, tasks[t], payload)
                        left -= 1
                    elif kind == "error" and tid in self._inflight[i]:
                        t = self._inflight[i].pop(tid)
                        raise WorkerError(f"worker {i} failed {tasks[t].describe()}: {payload}")
                    elif kind == "died":
                        lost = list(self._inflight[i].values())  # oldest first: it was running
                        reason = self._why_dead[i] or payload
                        self._state[i] = "dead"
                        if lost:
                            attempts[lost[0]] += 1  # the others were only queued behind it
                            if attempts[lost[0]] > self.retries:
                                raise WorkerError(
                                    f"{tasks[lost[0]].describe()} killed {attempts[lost[0]]} worker(s) "
                                    f"(last: {reason}); the plugin chain may crash at these parameters"
                                )
                        queue.extendleft(reversed(lost))
                        self._restart(i, reason)
                self._check_hung()
        except BaseException:
            self._abandon(ctx)
            for i in range(self.n_workers):
                self._inflight[i] = {}
            raise
        return self._finish(ctx, outputs)

    def _restart(self, i: int, reason: str) -> None:
        """Start worker ``i`` again, and say so: a restart costs a plugin set-up and hints at a crash."""
        self.restarts += 1
        log.warning(
            "plugin worker %d restarted (%s); %d restart(s) in this pool so far", i, reason, self.restarts
        )
        self._start(i)

    def _check_hung(self) -> None:
        now = time.monotonic()
        for i in range(self.n_workers):
            if (
                self._state[i] == "ready"
                and self._inflight[i]
                and now - self._busy_since[i] > self.task_timeout
            ):
                self._why_dead[i] = f"no answer for {self.task_timeout:g} s, killed"
                self._kill(i)
            elif self._state[i] == "starting" and now - self._started_at[i] > self.start_timeout:
                self._why_dead[i] = f"not started after {self.start_timeout:g} s, killed"
                self._kill(i)


# --- local processes ------------------------------------------------------------
class LocalPool(_ScheduledPool):
    """``n_workers`` local worker processes (default: one per core).

    >>> with LocalPool(RenderSettings.for_chain("distortion"), 2) as pool:
    ...     y = pool.forward(x, u)        # x (B, 1, N) float32, u (B, 28) in [0, 1]
    """

    def __init__(
        self,
        settings: RenderSettings,
        n_workers: int | None = None,
        *,
        task_timeout: float = 600.0,
        retries: int = 1,
        start_timeout: float = 120.0,
    ) -> None:
        n = default_workers() if n_workers is None else int(n_workers)
        super().__init__(settings, n, task_timeout=task_timeout, retries=retries, start_timeout=start_timeout)
        self._procs: list[subprocess.Popen | None] = [None] * n
        self._conns: list[Connection | None] = [None] * n
        self._arenas: OrderedDict[tuple, SharedArrays] = OrderedDict()
        self.busy_seconds = 0.0  # time workers spent on tasks (renders, estimates), summed
        self._finalizer = weakref.finalize(self, _close_local, self._procs, self._conns, self._arenas)
        self._start_all()

    @property
    def pids(self) -> list[int]:
        """Process ids of the live workers (for monitoring, and for tests that kill one)."""
        return [p.pid for p, s in zip(self._procs, self._state) if p is not None and s != "dead"]

    def _launch(self, i: int) -> None:
        self._reap(i)
        parent, child = socket.socketpair()
        env = {**os.environ, **SINGLE_THREADED}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PROJECT_ROOT, env.get("PYTHONPATH")) if p)
        proc = subprocess.Popen(
            [sys.executable, "-c", f"from training.spsa.workers import serve; serve({child.fileno()})"],
            pass_fds=(child.fileno(),),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,  # plugins' chatter; errors come back as messages
            env=env,
            start_new_session=True,  # Ctrl-C reaches the parent only, which then closes the pool
        )
        child.close()
        conn = Connection(parent.detach())
        conn.send_bytes(pickle.dumps(self.settings))
        self._procs[i], self._conns[i] = proc, conn

    def _reap(self, i: int) -> None:
        conn, proc = self._conns[i], self._procs[i]
        if conn is not None:
            conn.close()
            self._conns[i] = None
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            self._procs[i] = None

    def _submit(self, i, tid, task, ctx) -> None:
        try:
            self._conns[i].send((tid, task, ctx.handle))
        except OSError:
            pass  # it died; the closed socket reports that as an event

    def _events(self, timeout):
        live = {c: i for i, c in enumerate(self._conns) if c is not None and self._state[i] != "dead"}
        events = []
        for conn in wait(list(live), timeout):
            i = live[conn]
            try:
                while conn.poll():
                    msg = conn.recv()
                    events.append((i, msg[0], msg[1], msg[2]))
            except (EOFError, OSError):
                events.append((i, "died", -1, self._exit_status(i)))
        return events

    def _exit_status(self, i: int) -> str:
        proc = self._procs[i]
        try:
            code = proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            return "stopped answering"
        if code < 0:
            return f"killed by {signal.Signals(-code).name}"
        return f"exited with status {code}"

    def _kill(self, i: int) -> None:
        proc = self._procs[i]
        if proc is not None and proc.poll() is None:
            proc.kill()

    def _stage(self, inputs, outputs):
        layout = {**input_layout(inputs), **outputs}
        key = tuple((k, tuple(s), d) for k, (s, d) in layout.items())
        arena = self._arenas.pop(key, None) or SharedArrays(layout)
        self._arenas[key] = arena
        while len(self._arenas) > ARENA_CACHE:
            _, old = self._arenas.popitem(last=False)
            old.close()
            old.unlink()
        for k, v in inputs.items():
            arena[k][...] = v
        for k in outputs:
            arena[k][...] = 0
        return arena

    def _collect(self, ctx, outputs, task, payload) -> None:
        # the worker wrote its result into shared memory before answering
        self.busy_seconds += payload

    def _finish(self, ctx, outputs):
        return {k: ctx[k].copy() for k in outputs}

    def _abandon(self, ctx) -> None:
        # Workers may still be writing into this block: never hand it out again.
        for key, arena in list(self._arenas.items()):
            if arena is ctx:
                del self._arenas[key]
                arena.unlink()

    def close(self) -> None:
        if not self._closed:
            self._finalizer()
        super().close()


def _close_local(procs, conns, arenas) -> None:
    for conn in conns:
        if conn is not None:
            try:
                conn.send(None)  # please exit
            except OSError:
                pass
    deadline = time.monotonic() + 2.0
    for i, proc in enumerate(procs):
        if proc is None:
            continue
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        procs[i] = None
    for i, conn in enumerate(conns):
        if conn is not None:
            conn.close()
            conns[i] = None
    for arena in arenas.values():
        arena.close()
        arena.unlink()
    arenas.clear()


def serve(fd: int) -> None:
    """A local worker's main loop (runs in the child process; no TensorFlow here)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    conn = Connection(fd)
    try:
        settings = pickle.loads(conn.recv_bytes())
        renderer = Renderer(settings)
        renderer.warm_up()
    except Exception as exc:
        conn.send(("fail", -1, _one_line(exc)))
        return
    conn.send(("ready", -1, os.getpid()))
    arenas: OrderedDict[str, SharedArrays] = OrderedDict()
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return  # the parent is gone
        if msg is None:
            return
        tid, task, handle = msg
        try:
            arena = arenas.pop(handle[0], None) or SharedArrays.attach(handle)
            arenas[handle[0]] = arena
            while len(arenas) > 2 * ARENA_CACHE:
                arenas.popitem(last=False)[1].close()
            start = time.perf_counter()
            store(arena.arrays, task, execute(renderer, task, arena.arrays))
            reply = ("done", tid, time.perf_counter() - start)
        except Exception as exc:
            reply = ("error", tid, _one_line(exc))
        try:
            conn.send(reply)
        except OSError:
            return


# --- Ray -------------------------------------------------------------------------
class RayWorker:
    """A Ray actor's body: one :class:`Renderer` (wrapped by ``ray.remote`` at run time)."""

    def __init__(self, settings: RenderSettings) -> None:
        self.renderer = Renderer(settings)
        self.renderer.warm_up()

    def ready(self) -> int:
        return os.getpid()

    def run(self, task: Task, names: list[str], *arrays: np.ndarray) -> np.ndarray:
        return execute(self.renderer, task, dict(zip(names, arrays)))


class RayPool(_ScheduledPool):
    """Ray actors as workers: a local Ray (``address=None``) or a cluster (``"ray://HOST:PORT"``).

    A local Ray started here gets ``n_workers`` CPUs (default: this machine's
    cores) and is shut down by :meth:`close`; on a cluster the default is one
    actor per CPU of the cluster, and :meth:`close` only disconnects.
    """

    def __init__(
        self,
        settings: RenderSettings,
        n_workers: int | None = None,
        *,
        address: str | None = None,
        task_timeout: float = 600.0,
        retries: int = 1,
        start_timeout: float = 300.0,
    ) -> None:
        try:
            import ray
        except ImportError:
            raise WorkerError(
                "the Ray backend needs the training extra: ./install.sh (or pip install -e '.[training]')"
            ) from None
        Chain(settings.spec())  # a bad chain fails here, before Ray starts
        self._ray = ray
        self._owns_ray = False
        if not ray.is_initialized():
            if address is None:
                ray.init(
                    num_cpus=n_workers or default_workers(),
                    include_dashboard=False,
                    logging_level="WARNING",
                    configure_logging=True,
                )
            else:
                try:
                    ray.init(address=address, logging_level="WARNING")
                except Exception as exc:
                    raise WorkerError(f"cannot join the Ray cluster at {address}: {_one_line(exc)}") from None
            self._owns_ray = True
        if n_workers is None:
            n_workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
        self._actor_class = ray.remote(num_cpus=1, max_restarts=0, runtime_env={"env_vars": SINGLE_THREADED})(
            RayWorker
        )
        self._actors: list = [None] * n_workers
        self._pending: dict = {}  # object ref → (worker, kind, tid)
        super().__init__(
            settings, n_workers, task_timeout=task_timeout, retries=retries, start_timeout=start_timeout
        )
        try:
            self._start_all()
        except BaseException:
            self.close()
            raise

    def _launch(self, i: int) -> None:
        actor = self._actor_class.remote(self.settings)
        self._actors[i] = actor
        self._pending[actor.ready.remote()] = (i, "ready", -1)

    def _submit(self, i, tid, task, ctx) -> None:
        names, refs = ctx
        ref = self._actors[i].run.remote(task, names, *refs)
        self._pending[ref] = (i, "done", tid)

    def _events(self, timeout):
        ray = self._ray
        if not self._pending:
            time.sleep(timeout)
            return []
        refs = list(self._pending)
        ready, _ = ray.wait(refs, num_returns=1, timeout=timeout)
        if ready:
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        events = []
        for ref in ready:
            item = self._pending.pop(ref, None)
            if item is None:
                continue  # dropped with its dead actor below
            i, kind, tid = item
            try:
                value = ray.get(ref)
                events.append((i, kind, tid, value))
            except ray.exceptions.RayTaskError as exc:
                events.append((i, "fail" if kind == "ready" else "error", tid, _one_line(exc.cause or exc)))
            except (
                ray.exceptions.RayActorError,
                ray.exceptions.WorkerCrashedError,
                ray.exceptions.ObjectLostError,
            ) as exc:
                if kind == "ready" and getattr(exc, "cause", None) is not None:  # __init__ raised
                    events.append((i, "fail", tid, _one_line(exc.cause)))
                    continue
                # one "died" per dead actor: drop its other pending refs
                for other, (j, _k, _t) in list(self._pending.items()):
                    if j == i:
                        del self._pending[other]
                events.append((i, "died", tid, "the Ray actor died"))
        return events

    def _kill(self, i: int) -> None:
        if self._actors[i] is not None:
            self._ray.kill(self._actors[i], no_restart=True)

    def _stage(self, inputs, outputs):
        names = list(inputs)
        return names, [self._ray.put(inputs[k]) for k in names]

    def _collect(self, ctx, outputs, task, payload) -> None:
        store(self._batch_out, task, payload)

    def _run(self, tasks, inputs, outputs):
        self._batch_out = {k: np.zeros(shape, dtype=dt) for k, (shape, dt) in outputs.items()}
        return super()._run(tasks, inputs, outputs)

    def _finish(self, ctx, outputs):
        out, self._batch_out = self._batch_out, None
        return out

    def _abandon(self, ctx) -> None:
        for ref, (_i, kind, _tid) in list(self._pending.items()):
            if kind == "done":
                del self._pending[ref]  # results of an abandoned batch are never read

    def close(self) -> None:
        if self._closed:
            return
        for i, actor in enumerate(getattr(self, "_actors", [])):
            if actor is not None:
                try:
                    self._ray.kill(actor, no_restart=True)
                except Exception:
                    pass
                self._actors[i] = None
        self._pending = {}
        if self._owns_ray:
            self._ray.shutdown()
            self._owns_ray = False
        super().close()


# --- choosing a backend ---------------------------------------------------------
def create_pool(
    settings: RenderSettings,
    workers: int | str | WorkerPool | None = None,
    *,
    n_workers: int | None = None,
    **options,
) -> WorkerPool:
    """A pool from a ``--workers``-style choice.

    ``None`` or ``"local"``: local processes, one per core (or ``n_workers``);
    an int ``N ≥ 1``: ``N`` local processes; ``0`` or ``"inprocess"``: no workers;
    ``"ray"``: a local Ray; ``"ray://HOST:PORT"``: a Ray cluster; a
    :class:`WorkerPool`: used as is (its chain settings must match).
    """
    if isinstance(workers, WorkerPool):
        if workers.settings != settings:
            raise ValueError("the worker pool given renders a different chain or settings than this layer")
        return workers
    if workers is None or workers == "local":
        return LocalPool(settings, n_workers, **options)
    if isinstance(workers, int) and not isinstance(workers, bool):
        if workers < 0:
            raise ValueError(f"workers must be ≥ 0, not {workers}")
        return InProcessPool(settings) if workers == 0 else LocalPool(settings, workers, **options)
    if workers == "inprocess":
        return InProcessPool(settings)
    if workers == "ray":
        return RayPool(settings, n_workers, **options)
    if isinstance(workers, str) and workers.startswith("ray://"):
        return RayPool(settings, n_workers, address=workers, **options)
    raise ValueError(
        f"workers={workers!r}: use a number of local processes, 'local', 'inprocess', 'ray' or 'ray://HOST:PORT'"
    )
