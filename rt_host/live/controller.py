"""The controller: the model hears each window as it completes, and says when its answer may steer.

Prediction ``k`` hears the captured frames that end at ``geometry.end(k)`` —
every hop of frames since the first cycle, exactly the windows offline
rendering uses (:mod:`rt_host.steer.geometry`) — through the one encoder view
(:func:`rt_host.steer.encoder_view`) and the bundle's encoder (onnxruntime),
with the held parameters at their values. It publishes the prediction with
its apply frame, ``end(k) + delay``; the callback lets it steer from the first
block that starts there, or counts it late if it arrives after. A prediction
with NaN/Inf is dropped (the parameters hold) and counted. If the controller
falls so far behind that a window has left the capture ring (the machine
stalled), it skips to the newest complete window and counts the skipped ones.

It runs as a separate process by default: a probe on this machine saw a
controller *thread* cause xruns at 128 frames (the GIL, ~19 in 45 s) when the
audio callback was Python; the callback is native now, but a process also
keeps inference off the host's own core scheduling and is niced below it.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

from rt_host.bundle import Bundle, load_bundle
from rt_host.errors import DeepAFxError
from rt_host.lifeline import stop_child
from rt_host.live import shared
from rt_host.steer.geometry import Geometry
from rt_host.steer.view import encoder_view

NICE = 5  # the controller yields the CPU to the audio thread and the host


def capture_frames(geometry: Geometry) -> int:
    """Capture ring length: a window plus room for the controller to be a few hops late."""
    return geometry.window_frames + 8 * geometry.hop_frames


def run_controller(bundle: Bundle, state: shared.SharedState, geometry: Geometry) -> None:
    """The loop; returns when ``header[STOP]`` is set."""
    predict = bundle.predictor(bundle.session(threads=1))
    held = bundle.held
    raw = np.zeros(geometry.window_frames, dtype=np.float32)
    header = state.header
    k = 0
    while header[shared.STOP] == 0:
        header[shared.CONTROLLER_ALIVE] += 1
        end = geometry.end(k)
        captured = int(header[shared.CAPTURED])
        if captured < end:
            wait = (end - captured) / geometry.rate
            time.sleep(min(max(wait, 0.0005), 0.01))
            continue
        if not state.capture_window(end, raw):  # fell behind the ring: take the newest window
            newest = captured // geometry.hop_frames - 1
            header[shared.PRED_SKIPPED] += newest - k
            k = newest
            continue
        view = encoder_view(raw[np.newaxis, :], geometry.rate, geometry.model_rate, geometry.window)
        start = time.perf_counter()
        u = predict(view[np.newaxis, :])[0].astype(np.float64)
        elapsed_ms = (time.perf_counter() - start) * 1e3
        n = int(header[shared.INFERENCES])
        state.inference_ms[n % shared.INFERENCE_RING] = elapsed_ms
        header[shared.INFERENCES] = n + 1
        if held:
            held.apply(u)
        if np.all(np.isfinite(u)):
            state.publish_prediction(np.clip(u, 0.0, 1.0), geometry.apply_frame(k))
        else:
            header[shared.PRED_DROPPED] += 1
        k += 1


def _process_main(bundle_path: str, shm_name: str, layout: shared.Layout, geometry: Geometry) -> None:
    from rt_host.lifeline import become_child

    become_child(NICE)
    state = shared.SharedState.attach(shm_name, layout)
    try:
        run_controller(load_bundle(bundle_path), state, geometry)
    except Exception as exc:  # report in one line; the host holds the last parameters
        state.header[shared.CONTROLLER_ERROR] = 1
        print(f"deepafx-rt: error: controller stopped: {exc}", file=sys.stderr)
    finally:
        state.close()


class Controller:
    """Runs :func:`run_controller` in a thread or a separate process."""

    def __init__(
        self, bundle: Bundle, state: shared.SharedState, geometry: Geometry, mode: str = "process"
    ) -> None:
        if mode not in ("process", "thread"):
            raise ValueError("controller mode must be 'process' or 'thread'")
        if mode == "process" and state.shm_name is None:
            raise ValueError("a controller process needs state in shared memory")
        self.bundle, self.state, self.geometry, self.mode = bundle, state, geometry, mode
        self._worker: threading.Thread | mp.Process | None = None

    @classmethod
    def geometry_for(cls, bundle: Bundle, rate: int, delay_s: float | None = None) -> Geometry:
        return bundle.geometry(rate, delay_s)

    def start(self, timeout: float = 30.0) -> None:
        """Start, and wait until the model is loaded and the loop runs.

        Done before the audio starts: the first seconds should not run without
        the model, and loading it competes for the CPU.
        """
        self.state.header[shared.STOP] = 0
        self.state.header[shared.CONTROLLER_ALIVE] = 0
        if self.mode == "thread":
            self._worker = threading.Thread(target=self._thread_main, name="deepafx-controller", daemon=True)
        else:
            ctx = mp.get_context("spawn")  # never fork a process that hosts JACK threads
            self._worker = ctx.Process(
                target=_process_main,
                args=(str(Path(self.bundle.path)), self.state.shm_name, self.state.layout, self.geometry),
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
            run_controller(self.bundle, self.state, self.geometry)
        except Exception as exc:
            self.state.header[shared.CONTROLLER_ERROR] = 1
            print(f"deepafx-rt: error: controller stopped: {exc}", file=sys.stderr)

    @property
    def alive(self) -> bool:
        return self._worker is not None and self._worker.is_alive()

    def stop(self, timeout: float = 5.0) -> None:
        self.state.header[shared.STOP] = 1
        if isinstance(self._worker, mp.process.BaseProcess):
            stop_child(self._worker, timeout)
        elif self._worker is not None:
            self._worker.join(timeout)
        self._worker = None

    def cpu_seconds(self) -> float | None:
        """CPU time (user + system) the controller process has used so far; None for a thread."""
        if not isinstance(self._worker, mp.process.BaseProcess) or self._worker.pid is None:
            return None
        try:
            fields = Path(f"/proc/{self._worker.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime

    def inference_ms(self) -> np.ndarray:
        n = int(self.state.header[shared.INFERENCES])
        k = min(n, shared.INFERENCE_RING)
        return np.array(self.state.inference_ms[:k], dtype=np.float64)
