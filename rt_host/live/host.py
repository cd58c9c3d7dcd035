"""The live host: an LV2 chain a model steers, run by an audio backend (JACK).

This module is the *run* side; the audio side is :mod:`rt_host.live.jack_backend`
and the seam between them is :class:`~rt_host.live.block.RealtimeChain`.
Life of a run (:meth:`LiveHost.run`):

1. check everything that can be checked before touching JACK — the bundle
   (refused with a reason), the chain, every output path, the file to play,
   the MIDI map;
2. open the backend (a clear error when no server answers), prepare the chain
   at its rate and block size (the played file becomes part of the block: it
   starts at the first cycle, frame 0 of the steering geometry);
3. start the controller (the model), the MIDI receiver and the web server
   (other processes, sharing :mod:`rt_host.live.shared`), then the audio and
   the recorder;
4. watch: status line, reconnections, the end of the played file, signals, the
   server going away; drain the per-block parameter trace (the log is
   frame-exact, the same rows ``render --task`` writes);
5. stop the audio first, then everything else, finish the recording, write the
   parameter log and the automation plot; exit 0, or 1 if JACK died.

The audio callback is native (:mod:`rt_host.live.jack_process`): it never takes
the GIL, so nothing this process does can delay it.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from rt_host import audio as audio_io
from rt_host.bundle import Bundle, load_bundle
from rt_host.errors import AudioFileError, DeepAFxError
from rt_host.live import shared
from rt_host.live.block import RECORD_RING_S, TRACE_POS, RealtimeChain
from rt_host.live.controller import Controller, capture_frames
from rt_host.live.jack_backend import JackBackend
from rt_host.live.stats import memory_mb
from rt_host.lv2.chain import Chain
from rt_host.plots import plot_automation, write_automation_csv
from rt_host.steer import kernel
from rt_host.steer.automation import log_rows

log = logging.getLogger("rt_host")

GAIN_REDUCTION_METERS = ("limiter.grlm_l",)  # a meter the web page and status show when a chain has it


@dataclass
class LiveOptions:
    bundle: str | Path | None = None  # folder or task name; None: chain at defaults
    chain: str | None = None  # used when there is no bundle
    client_name: str = "deepafx-rt"
    inputs: list[str] | None = None  # None: physical capture ports, if any
    outputs: list[str] | None = None  # None: physical playback ports, if any
    play: Path | None = None
    record: Path | None = None
    params_log: Path | None = None
    plot: Path | None = None
    freeze: bool = False
    smoothing_s: float = kernel.DEFAULT_SMOOTHING_S
    delay_s: float | None = None  # None: the steering default (rt_host.steer.geometry)
    controller: str = "process"
    duration: float | None = None  # stop after this many seconds (None: until the file ends or a signal)
    tail_s: float = 0.5  # keep running after the played file ends, so the chain's tail is recorded
    status: bool = True
    keep_trace: bool = False  # keep every block's applied parameters in the report (tests)
    map_channels: str = "auto"
    midi: bool = True  # a MIDI input (virtual port, or --midi-in) with the task's map
    midi_in: str | None = None  # connect to this source (name or part of it)
    midi_map: Path | None = None  # None: the map shipped with the bundle or chain, if any
    midi_learn: str | None = None  # bind this parameter to the first CC that moves
    web: str | None = None  # "[HOST:]PORT": serve the control page
    web_token: str | None = None


@dataclass
class LiveReport:
    exit_code: int
    reason: str
    seconds: float = 0.0
    xruns: int = 0
    callback_errors: int = 0
    nonfinite_out: int = 0
    latency: int = 0
    sample_rate: int = 0
    block: int = 0
    predictions: int = 0  # published by the controller
    steering: dict = field(default_factory=dict)  # received / applied / late predictions, port writes
    dropped_predictions: int = 0  # NaN/Inf: not published
    skipped_windows: int = 0  # the controller fell behind the capture ring
    callback_us: np.ndarray = field(default_factory=lambda: np.zeros(0))  # wall clock per callback
    callback_cpu_us: np.ndarray = field(default_factory=lambda: np.zeros(0))  # the thread's CPU time in it
    xrun_cycles: list = field(default_factory=list)  # callbacks run when each xrun was reported
    inference_ms: np.ndarray = field(default_factory=lambda: np.zeros(0))
    dsp_load: list = field(default_factory=list)
    trace: np.ndarray | None = None  # (blocks, n_params) applied normalized parameters, with keep_trace
    record: Path | None = None
    played: np.ndarray | None = None
    memory_mb: dict = field(default_factory=dict)
    midi: dict = field(default_factory=dict)
    midi_latency_us: np.ndarray = field(default_factory=lambda: np.zeros(0))
    recorder_overflows: int = 0
    controller_cpu_s: float | None = None  # CPU time of the controller process


class LiveHost:
    """One run of the live host; see the module docstring."""

    def __init__(self, options: LiveOptions) -> None:
        self.opt = options
        self.bundle: Bundle | None = None
        self._stop = threading.Event()
        self._stop_reason = "stopped"
        self._trace_rows: list[np.ndarray] = []
        self._trace_read = 0
        self._log_times: list[np.ndarray] = []
        self._log_rows: list[np.ndarray] = []
        self._last_row: np.ndarray | None = None
        self._warned: set[str] = set()
        self._learned = False
        self.midi = None
        self.web = None

    # --- 1. checks before JACK ---------------------------------------------
    def _prepare_inputs(self) -> Chain:
        opt = self.opt
        if opt.bundle is not None:
            self.bundle = load_bundle(opt.bundle)
            chain = Chain(self.bundle.chain_spec)
        else:
            chain = Chain.load(opt.chain or "mastering")
        for path in (opt.record, opt.params_log, opt.plot):
            if path is not None:
                _check_output(Path(path), opt.play)
        self.midi_map = None
        if opt.midi:
            from rt_host.live.midi import MidiError, MidiMap, default_map_path

            path = opt.midi_map
            if path is not None and not Path(path).is_file() and opt.midi_learn:
                self.midi_map = MidiMap(path=Path(path))  # learning starts a new map
            else:
                path = path or default_map_path(chain.name, self.bundle.path if self.bundle else None)
                self.midi_map = MidiMap.load(path, chain.parameter_names) if path else MidiMap()
            if opt.midi_learn is not None:
                if opt.midi_learn not in chain.parameter_names:
                    raise MidiError(f"--midi-learn {opt.midi_learn!r} is not a predicted parameter")
                if self.midi_map.path is None:
                    self.midi_map.path = Path("midi-map.toml")
                _check_output(self.midi_map.path, None)
        self._play_file = None
        if opt.play is not None:
            audio, rate = audio_io.read_audio(opt.play)
            audio = audio_io.sanitize(audio, Path(opt.play).name)
            self._play_file = (audio_io.map_channels(audio, chain.channels, opt.map_channels), rate)
        if opt.web is not None:
            from rt_host.live.web import parse_bind

            parse_bind(opt.web, opt.web_token)  # a bad address is an error before anything starts
        return chain

    def run(self) -> LiveReport:
        handlers = self._install_signal_handlers()  # a signal during start-up stops cleanly too
        try:
            chain = self._prepare_inputs()
            backend = JackBackend(self.opt.client_name, self.opt.inputs, self.opt.outputs,
                                  playing=self.opt.play is not None)  # fmt: skip
            rate, block = backend.open()
            try:
                return self._run(backend, chain, rate, block)
            finally:
                backend.stop()
        finally:
            _restore_signal_handlers(handlers)

    # --- 2./3. set-up --------------------------------------------------------
    def _run(self, backend: JackBackend, chain: Chain, rate: int, block: int) -> LiveReport:
        opt = self.opt
        geometry = self.bundle.geometry(rate, opt.delay_s) if self.bundle is not None else None
        ring = capture_frames(geometry) if geometry is not None else rate
        state = shared.SharedState.create(shared.Layout(ring, chain.n_params))
        try:
            return self._run_with(backend, chain, state, rate, block, geometry)
        finally:
            state.close(unlink=True)

    def _run_with(
        self, backend: JackBackend, chain: Chain, state, rate: int, block: int, geometry
    ) -> LiveReport:
        opt = self.opt
        play = None
        if self._play_file is not None:
            audio, file_rate = self._play_file
            play = audio_io.resample(audio, file_rate, rate)
        gr = next(
            (m for m in GAIN_REDUCTION_METERS if m.split(".")[0] in [s.name for s in chain.stages]), None
        )
        self.rtc = rtc = RealtimeChain(
            chain, rate, block, state, held=self.bundle.held if self.bundle else None,
            smoothing_s=opt.smoothing_s, freeze=opt.freeze,
            record_frames=int(RECORD_RING_S * rate) if opt.record else 0, play=play, gain_reduction=gr,
        )  # fmt: skip
        midi = None
        if self.midi_map is not None:
            from rt_host.live.midi import MidiInput, resolve_port

            port = resolve_port(opt.midi_in) if opt.midi_in else None
            midi = MidiInput(state, chain, self.midi_map, port, f"{opt.client_name}-midi", opt.midi_learn)
        self.midi = midi
        controller = Controller(self.bundle, state, geometry, opt.controller) if self.bundle else None
        recorder = _Recorder(opt.record, rtc, rate) if opt.record else None
        latency = chain.latency
        started = time.monotonic()
        memory: dict = {}
        controller_cpu = None
        try:
            if controller is not None:
                controller.start()
            if midi is not None:
                midi.start()
            if opt.web is not None:
                from rt_host.live.web import WebServer

                self.web = WebServer(opt.web, opt.web_token, state, chain, rate, bundle=self.bundle)
                self.web.start()
            if recorder is not None:
                recorder.open()
            backend.start(rtc, latency, on_gone=self._stop.set)
            started = time.monotonic()  # durations count from here, not from model loading
            if recorder is not None:
                recorder.start()
            self._watch(backend, chain, state, controller, started, play)
            memory = memory_mb()  # while the client still maps the server's memory (the callback is native)
            controller_cpu = controller.cpu_seconds() if controller is not None else None
        finally:
            backend.stop()  # the audio first: nothing below can disturb it any more
            if controller is not None:
                controller.stop()
            if midi is not None:
                midi.stop()
            if self.web is not None:
                self.web.stop()
            if recorder is not None:
                recorder.stop()
        self._drain_trace()
        seconds = time.monotonic() - started
        if backend.server_gone.is_set():
            self._stop_reason = f"the JACK server went away ({backend.gone_reason})"
        report = LiveReport(
            exit_code=1 if backend.server_gone.is_set() else 0,
            reason=self._stop_reason,
            seconds=seconds,
            xruns=backend.xruns,
            callback_errors=backend.bad_cycles,
            nonfinite_out=int(rtc.counters[1]),
            latency=latency,
            sample_rate=rate,
            block=block,
            predictions=int(state.header[shared.PRED_SEQ]),
            steering=rtc.counts,
            dropped_predictions=int(state.header[shared.PRED_DROPPED]),
            skipped_windows=int(state.header[shared.PRED_SKIPPED]),
            callback_us=backend.callback_us(),
            callback_cpu_us=backend.callback_us(cpu=True),
            xrun_cycles=list(backend.xrun_cycles),
            inference_ms=controller.inference_ms() if controller else np.zeros(0),
            dsp_load=self._dsp_load,
            trace=np.concatenate(self._trace_rows) if (opt.keep_trace and self._trace_rows) else None,
            record=opt.record,
            played=play,
            memory_mb=memory,
            midi=midi.counts() if midi else {},
            midi_latency_us=state.event_latencies_us(),
            recorder_overflows=recorder.overflows if recorder else 0,
            controller_cpu_s=controller_cpu,
        )
        if report.dropped_predictions:
            log.warning("the model predicted NaN/Inf %d time(s); those predictions were dropped and the "
                        "parameters held", report.dropped_predictions)  # fmt: skip
        self._write_outputs(chain, rate)
        return report

    # --- 4. the watch loop ----------------------------------------------------
    def _watch(self, backend: JackBackend, chain: Chain, state, controller, started: float, play) -> None:
        opt = self.opt
        rtc = self.rtc
        next_status = next_connect = next_load = next_stats = started
        self._dsp_load = []
        end_frames = None
        if play is not None:
            end_frames = play.shape[1] + int(opt.tail_s * rtc.sample_rate) + chain.latency
        while not self._stop.is_set():
            now = time.monotonic()
            if opt.duration is not None and now - started >= opt.duration:
                self._stop_reason = f"ran for {opt.duration:g} s"
                break
            if end_frames is not None and int(rtc.live[0]) >= end_frames:
                self._stop_reason = f"played {Path(opt.play).name} to the end"
                break
            self._drain_trace()
            if controller is not None and not controller.alive:
                self._warn_once("controller", "the controller stopped; parameters are held where they were")
            if self.midi is not None and not self.midi.alive:
                self._warn_once("midi", "the MIDI receiver stopped; MIDI control is off")
            if self.web is not None and not self.web.alive and "web" not in self._warned:
                state.control[shared.CTL_BYPASS] = 0.0  # nobody could switch the A/B back any more
                self._warn_once("web", "the web control page stopped; the A/B bypass is off")
            if now >= next_load:
                self._dsp_load.append(backend.cpu_load())
                next_load = now + 0.5
            if now >= next_connect:
                backend.connect()
                next_connect = now + 0.5
            if self.midi is not None and opt.midi_learn and not self._learned:
                got = self.midi.learned()
                if got is not None:
                    self.midi_map.bind(got[0], got[1], opt.midi_learn)
                    self.midi_map.save(self.midi_map.path)
                    self._learned = True
                    log.info("learned channel %d CC %d → %s (saved to %s)", got[0], got[1],
                             opt.midi_learn, self.midi_map.path)  # fmt: skip
            if now >= next_stats:
                self._publish_stats(backend, state, controller, now - started)
                next_stats = now + 0.25
            if opt.status and now >= next_status:
                self._print_status(backend, chain, state, controller, now - started)
                next_status = now + (0.5 if sys.stderr.isatty() else 5.0)
            self._stop.wait(0.02)
        if opt.status and sys.stderr.isatty():
            print(file=sys.stderr)

    def _publish_stats(self, backend: JackBackend, state, controller, elapsed: float) -> None:
        """Figures of the run for the web page (shared memory; the page's process reads them)."""
        st, cb = state.stats, backend.callback_us()
        recent = cb[-2000:]
        counts = self.rtc.counts
        inf = controller.inference_ms() if controller else np.zeros(0)
        st[shared.STAT_DSP_LOAD] = backend.cpu_load()
        st[shared.STAT_XRUNS] = backend.xruns
        st[shared.STAT_CB_P99_US] = np.percentile(recent, 99) if len(recent) else np.nan
        st[shared.STAT_CB_MAX_US] = recent.max() if len(recent) else np.nan
        st[shared.STAT_CB_OVER] = int(np.sum(cb > backend.period_us))
        st[shared.STAT_PERIOD_US] = backend.period_us
        st[shared.STAT_INFER_P50_MS] = np.percentile(inf[-100:], 50) if len(inf) else np.nan
        st[shared.STAT_LATENCY] = self.rtc.chain.latency
        st[shared.STAT_PREDICTIONS] = counts["applied"]
        st[shared.STAT_LATE] = counts["late"]
        st[shared.STAT_SECONDS] = elapsed
        st[shared.STAT_RATE] = self.rtc.sample_rate
        st[shared.STAT_BLOCK] = self.rtc.block

    def _drain_trace(self) -> None:
        """Copy the callback's new per-block parameter rows out of its ring (keeping the log's rows)."""
        rtc = self.rtc
        written = int(rtc.live[TRACE_POS])
        ring = rtc.trace.shape[0]
        if written - self._trace_read > ring:  # fell behind (only if the host stalled for ~40 s)
            self._warn_once("trace", "the parameter log fell behind; some rows were lost")
            self._trace_read = written - ring
        if written == self._trace_read:
            return
        idx = np.arange(self._trace_read, written)
        rows = rtc.trace[idx % ring].copy()
        times, kept = log_rows(rows, rtc.block, rtc.sample_rate, self._trace_read, previous=self._last_row)
        self._last_row = rows[-1]
        self._log_times.append(times)
        self._log_rows.append(kept)
        if self.opt.keep_trace:
            self._trace_rows.append(rows)
        self._trace_read = written

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            log.warning(message)
            self._warned.add(key)

    def _print_status(self, backend: JackBackend, chain: Chain, state, controller, elapsed: float) -> None:
        cb = backend.callback_us()[-2000:]
        inf = controller.inference_ms() if controller else np.zeros(0)
        parts = [
            f"{elapsed:6.1f}s",
            f"DSP {backend.cpu_load():4.1f}%",
            f"xruns {backend.xruns}",
            f"cb p99 {np.percentile(cb, 99):.0f}/{backend.period_us:.0f}µs" if len(cb) else "cb -",
        ]
        if controller is not None:
            counts = self.rtc.counts
            parts.append(
                f"infer p50 {np.percentile(inf, 50):.1f} ms, {counts['applied']} predictions"
                + (f" ({counts['late']} late)" if counts["late"] else "")
                if len(inf) else "infer -"
            )  # fmt: skip
            dropped = int(state.header[shared.PRED_DROPPED])
            if dropped:
                parts.append(f"{dropped} dropped (NaN)")
        if self.opt.freeze:
            parts.append("FROZEN")
        held = [p.name for p, h in zip(chain.parameters, state.held) if h]
        if held:
            parts.append("held: " + ",".join(held[:4]) + ("…" if len(held) > 4 else ""))
        values = chain.denormalize(self.rtc.applied)
        key = [(p.name, v) for p, v in zip(chain.parameters, values)][-2:]
        parts.append(" ".join(f"{n}={v:.3g}" for n, v in key))
        if self.rtc.counters[1]:
            parts.append(f"muted {int(self.rtc.counters[1])} NaN samples")
        line = " | ".join(parts)
        print(("\r" + line) if sys.stderr.isatty() else line, end="" if sys.stderr.isatty() else "\n",
              file=sys.stderr, flush=True)  # fmt: skip

    # --- 5. outputs ------------------------------------------------------------
    def _write_outputs(self, chain: Chain, rate: int) -> None:
        opt = self.opt
        if not self._log_times:
            return
        times = np.concatenate(self._log_times)
        rows = np.concatenate(self._log_rows)
        if opt.params_log:
            write_automation_csv(chain, times, rows, Path(opt.params_log))
        if opt.plot:
            plot_automation(chain, times, rows, Path(opt.plot))

    # --- signals --------------------------------------------------------------
    def _install_signal_handlers(self):
        if threading.current_thread() is not threading.main_thread():
            return None

        def stop(signum, _frame):
            self._stop_reason = f"stopped by {signal.Signals(signum).name}"
            self._stop.set()

        return {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}


def _restore_signal_handlers(handlers) -> None:
    for sig, handler in (handlers or {}).items():
        signal.signal(sig, handler)


def _check_output(path: Path, play: Path | None) -> None:
    if play is not None and path.resolve() == Path(play).resolve():
        raise DeepAFxError(f"refusing to overwrite the played file {path}")
    if path.suffix.lower() in (".wav", ".flac", ".ogg", ".aiff"):
        audio_io.check_writable(path)
    else:  # the parameter log, the plot
        audio_io.check_output_path(path)


class _Recorder:
    """Drains the callback's recording ring into a sound file (a non-real-time thread)."""

    def __init__(self, path: Path, rtc: RealtimeChain, rate: int) -> None:
        self.path, self.rtc, self.rate = Path(path), rtc, rate
        self._done = threading.Event()
        self._read = 0
        self.overflows = 0
        self._file = None
        self._thread = threading.Thread(target=self._loop, name="deepafx-recorder", daemon=True)

    def open(self) -> None:
        """Open the file now (before the audio starts): a path that cannot be written is one clear error."""
        try:
            self._file = sf.SoundFile(
                str(self.path), "w", samplerate=self.rate, channels=self.rtc.record.shape[0],
                subtype="FLOAT" if self.path.suffix.lower() == ".wav" else None,
            )  # fmt: skip
        except (sf.LibsndfileError, RuntimeError, OSError) as exc:
            raise AudioFileError(f"cannot write the recording {self.path}: {exc}") from None

    def start(self) -> None:
        self._thread.start()

    def _drain(self) -> None:
        ring = self.rtc.record
        length = ring.shape[1]
        from rt_host.live.block import REC_POS

        written = int(self.rtc.live[REC_POS])
        if written - self._read > length:  # fell behind: keep the newest audio
            self.overflows += 1
            self._read = written - length
        while self._read < written:
            start = self._read % length
            n = min(written - self._read, length - start)
            self._file.write(ring[:, start : start + n].T)
            self._read += n

    def _loop(self) -> None:
        while not self._done.wait(0.05):
            self._drain()

    def stop(self) -> None:
        if self._file is None:
            return
        self._done.set()
        if self._thread.is_alive():
            self._thread.join()
        self._drain()
        self._file.close()
        self._file = None
        if self.overflows:
            log.warning("the recorder fell behind %d time(s); some audio was lost", self.overflows)
