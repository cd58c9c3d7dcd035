"""The controller: every hop, the newest window through the model.

It reads the capture ring (mono, JACK rate), resamples the newest window to
the model's rate with soxr, runs the ONNX encoder and publishes the normalized
parameters to the callback through the shared double buffer. It runs as a
separate process by default: a probe on this machine saw a controller *thread*
cause xruns at 128 frames (the GIL, ~19 in 45 s) and a process with shared
memory not; ``deepafx-rt bench live`` measures both.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import sys
import threading
import time
from pathlib import Path

import numpy as np
import soxr

from rt_host.bundle import Bundle, load_bundle
from rt_host.errors import DeepAFxError
from rt_host.live import shared


class ControllerGeometry:
    """Window and hop of a bundle, at the JACK rate."""

    def __init__(self, bundle: Bundle, jack_rate: int) -> None:
        self.jack_rate = jack_rate
        self.model_rate = bundle.sample_rate
        self.window = bundle.window
        self.window_jack = math.ceil(bundle.window * jack_rate / bundle.sample_rate)
        self.hop_jack = max(1, round(bundle.hop * jack_rate / bundle.sample_rate))

    @property
    def capture_frames(self) -> int:
        return 2 * self.window_jack + 4 * self.hop_jack


def run_controller(bundle: Bundle, state: shared.SharedState, jack_rate: int) -> None:
    """The loop; returns when ``header[STOP]`` is set."""
    geo = ControllerGeometry(bundle, jack_rate)
    session = bundle.session(threads=1)
    raw = np.zeros(geo.window_jack, dtype=np.float32)
    header = state.header
    last = 0
    while header[shared.STOP] == 0:
        header[shared.CONTROLLER_ALIVE] += 1
        captured = int(header[shared.CAPTURED])
        if captured < last:  # the host restarted its counter
            last = 0
        if captured - last < geo.hop_jack:
            wait = (geo.hop_jack - (captured - last)) / jack_rate
            time.sleep(min(max(wait, 0.001), 0.01))
            continue
        last = captured - (captured - last) % geo.hop_jack
        state.newest_capture(geo.window_jack, raw)
        window = soxr.resample(raw, jack_rate, geo.model_rate, quality="HQ")
        window = np.ascontiguousarray(_fit(window, geo.window), dtype=np.float32)
        start = time.perf_counter()
        params = bundle.predict(session, window)
        elapsed_ms = (time.perf_counter() - start) * 1e3
        if np.all(np.isfinite(params)):
            state.publish_params(np.clip(params, 0.0, 1.0))
        n = int(header[shared.INFERENCES])
        state.inference_ms[n % shared.INFERENCE_RING] = elapsed_ms
        header[shared.INFERENCES] = n + 1


def _fit(x: np.ndarray, n: int) -> np.ndarray:
    if len(x) >= n:
        return x[-n:]
    return np.concatenate([np.zeros(n - len(x), dtype=x.dtype), x])


def _process_main(bundle_path: str, shm_name: str, layout: shared.Layout, jack_rate: int) -> None:
    state = shared.SharedState.attach(shm_name, layout)
    try:
        run_controller(load_bundle(bundle_path), state, jack_rate)
    except Exception as exc:  # report in one line; the host holds the last parameters
        state.header[shared.CONTROLLER_ERROR] = 1
        print(f"deepafx-rt: error: controller stopped: {exc}", file=sys.stderr)
    finally:
        state.close()


class Controller:
    """Runs :func:`run_controller` in a thread or a separate process."""

    def __init__(self, bundle: Bundle, state: shared.SharedState, jack_rate: int, mode: str) -> None:
        if mode not in ("process", "thread"):
            raise ValueError("controller mode must be 'process' or 'thread'")
        if mode == "process" and state.shm_name is None:
            raise ValueError("a controller process needs state in shared memory")
        self.bundle, self.state, self.jack_rate, self.mode = bundle, state, jack_rate, mode
        self._worker: threading.Thread | mp.Process | None = None

    def start(self, timeout: float = 30.0) -> None:
        """Start, and wait until the model is loaded and the loop runs.

        Done before the JACK client activates: the first seconds of audio should
        not run without the model, and loading it competes for the CPU.
        """
        self.state.header[shared.STOP] = 0
        self.state.header[shared.CONTROLLER_ALIVE] = 0
        if self.mode == "thread":
            self._worker = threading.Thread(target=self._thread_main, name="deepafx-controller", daemon=True)
        else:
            ctx = mp.get_context("spawn")  # never fork a process that hosts JACK threads
            self._worker = ctx.Process(
                target=_process_main,
                args=(str(Path(self.bundle.path)), self.state.shm_name, self.state.layout, self.jack_rate),
                name="deepafx-controller",
                daemon=True,
            )
        self._worker.start()
        deadline = time.monotonic() + timeout
        while self.state.header[shared.CONTROLLER_ALIVE] == 0:
            if not self._worker.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise DeepAFxError("the controller did not start (see the message above)")
            time.sleep(0.01)

    def _thread_main(self) -> None:
        try:
            run_controller(self.bundle, self.state, self.jack_rate)
        except Exception as exc:
            self.state.header[shared.CONTROLLER_ERROR] = 1
            print(f"deepafx-rt: error: controller stopped: {exc}", file=sys.stderr)

    @property
    def alive(self) -> bool:
        return self._worker is not None and self._worker.is_alive()

    def stop(self, timeout: float = 5.0) -> None:
        self.state.header[shared.STOP] = 1
        if self._worker is not None:
            self._worker.join(timeout)
            if isinstance(self._worker, mp.process.BaseProcess) and self._worker.is_alive():
                self._worker.terminate()
                self._worker.join(1.0)
        self._worker = None

    def inference_ms(self) -> np.ndarray:
        n = int(self.state.header[shared.INFERENCES])
        k = min(n, shared.INFERENCE_RING)
        return np.array(self.state.inference_ms[:k], dtype=np.float64)
