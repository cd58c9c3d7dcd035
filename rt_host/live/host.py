"""The live host: a JACK client whose callback runs an LV2 chain a model steers.

Life of a run (:meth:`LiveHost.run`):

1. check everything that can be checked before touching JACK — the bundle
   (refused with a reason), the chain, every output path, the file to play;
2. open the client (a clear error when no server answers), prepare the chain
   at the server's rate and block size, register ports, install the latency
   report, then freeze and disable Python's garbage collector (a collection
   holds the GIL for 5–40 ms: measured here, it overruns 128-frame periods);
3. activate, connect ports, start the controller and the recorder;
4. watch: status line, reconnections, the end of the played file, signals,
   the server going away;
5. stop the controller, deactivate, finish the recording, write the
   parameter log and the automation plot; exit 0, or 1 if JACK died.
"""

from __future__ import annotations

import difflib
import gc
import logging
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import jack
import numpy as np
import soundfile as sf

from rt_host import audio as audio_io
from rt_host.bundle import Bundle, load_bundle
from rt_host.errors import DeepAFxError
from rt_host.live import shared
from rt_host.live.controller import Controller, ControllerGeometry
from rt_host.live.latency import LatencyReporter
from rt_host.live.realtime import RealtimeChain
from rt_host.live.server import JackServerError
from rt_host.live.stats import memory_mb
from rt_host.lv2.chain import Chain
from rt_host.plots import plot_automation, write_automation_csv

log = logging.getLogger("rt_host")

CALLBACK_RING = 1 << 16  # callback durations kept for the status line and the bench
RECORD_RING_S = 8.0


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
    smoothing_s: float = 0.1
    controller: str = "process"
    duration: float | None = None  # stop after this many seconds (None: until the file ends or a signal)
    tail_s: float = 0.5  # keep running after the played file ends, so the chain's tail is recorded
    status: bool = True
    trace_blocks: int = 0  # keep the applied parameters of this many blocks (tests)
    map_channels: str = "auto"
    midi: bool = True  # a MIDI input (virtual port, or --midi-in) with the task's map
    midi_in: str | None = None  # connect to this source (name or part of it)
    midi_map: Path | None = None  # None: the map shipped with the bundle or chain, if any
    midi_learn: str | None = None  # bind this parameter to the first CC that moves


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
    predictions: int = 0
    callback_us: np.ndarray = field(default_factory=lambda: np.zeros(0))
    inference_ms: np.ndarray = field(default_factory=lambda: np.zeros(0))
    dsp_load: list = field(default_factory=list)
    trace: np.ndarray | None = None
    record: Path | None = None
    played: np.ndarray | None = None
    memory_mb: dict = field(default_factory=dict)
    midi: dict = field(default_factory=dict)
    midi_latency_us: np.ndarray = field(default_factory=lambda: np.zeros(0))


class LiveHost:
    """One run of the live host; see the module docstring."""

    def __init__(self, options: LiveOptions) -> None:
        self.opt = options
        self.bundle: Bundle | None = None
        self._stop = threading.Event()
        self._stop_reason = "stopped"
        self._server_gone = threading.Event()
        self.xruns = 0
        self.callback_errors = 0
        self.bad_blocks = 0
        self.nonfinite_out = 0
        self._cb_times = np.zeros(CALLBACK_RING, dtype=np.int64)
        self._cb_count = 0
        self._play: np.ndarray | None = None
        self._play_pos = 0
        self._automation: list[tuple[float, np.ndarray]] = []
        self._controller_warned = False
        self._learned = False

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
        if opt.play is not None:
            audio, rate = audio_io.read_audio(opt.play)
            audio = audio_io.sanitize(audio, Path(opt.play).name)
            self._play_file = (audio_io.map_channels(audio, chain.channels, opt.map_channels), rate)
        return chain

    # --- 2. the client ------------------------------------------------------
    def _open_client(self) -> jack.Client:
        from rt_host.live.server import _quiet_libjack

        with _quiet_libjack():
            try:
                return jack.Client(self.opt.client_name, no_start_server=True)
            except jack.JackOpenError:
                raise JackServerError(
                    "no JACK server is running; start one (e.g. `jackd -d dummy -r 48000 -p 128`) "
                    "or run `deepafx-rt demo`, which starts its own"
                ) from None

    def run(self) -> LiveReport:
        handlers = self._install_signal_handlers()  # a signal during start-up stops cleanly too
        try:
            chain = self._prepare_inputs()
            client = self._open_client()
            try:
                return self._run(client, chain)
            finally:
                gc.enable()
                gc.unfreeze()
        finally:
            _restore_signal_handlers(handlers)

    def _run(self, client: jack.Client, chain: Chain) -> LiveReport:
        opt = self.opt
        rate = client.samplerate
        if self.bundle is not None:
            geo = ControllerGeometry(self.bundle, rate)
            layout = shared.Layout(geo.capture_frames, chain.n_params)
        else:
            layout = shared.Layout(rate, chain.n_params)
        use_process = self.bundle is not None and opt.controller == "process"
        midi_port = None
        if self.midi_map is not None and opt.midi_in:
            from rt_host.live.midi import resolve_port

            midi_port = resolve_port(opt.midi_in)
        state = shared.SharedState.create(layout)  # the controller and MIDI may be other processes
        try:
            return self._run_with(client, chain, state, use_process, midi_port)
        finally:
            state.close(unlink=True)

    def _run_with(self, client, chain: Chain, state, use_process: bool, midi_port) -> LiveReport:
        opt = self.opt
        rate, block = client.samplerate, client.blocksize
        midi = None
        if self.midi_map is not None:
            from rt_host.live.midi import MidiInput

            name = f"{opt.client_name}-midi"
            midi = MidiInput(state, chain, self.midi_map, midi_port, name, opt.midi_learn)
        self.midi = midi
        record_frames = int(RECORD_RING_S * rate) if opt.record else 0
        self.rtc = rtc = RealtimeChain(
            chain, rate, block, state,
            smoothing_s=opt.smoothing_s, trace_blocks=opt.trace_blocks, record_frames=record_frames,
        )  # fmt: skip
        if opt.play is not None:
            audio, file_rate = self._play_file
            audio = audio_io.resample(audio, file_rate, rate)
            self._play = np.ascontiguousarray(audio, dtype=np.float32)
        channels = chain.channels
        self.inports = [client.inports.register(f"in_{c + 1}") for c in range(channels)]
        self.outports = [client.outports.register(f"out_{c + 1}") for c in range(channels)]
        latency = chain.latency
        self.latency_reporter = LatencyReporter(client, self.inports, self.outports, latency)
        client.set_process_callback(self._process)
        client.set_xrun_callback(self._on_xrun)
        client.set_shutdown_callback(self._on_shutdown)
        controller = (
            Controller(self.bundle, state, rate, "process" if use_process else "thread")
            if (self.bundle is not None)
            else None
        )
        if opt.freeze:
            rtc.freeze[0] = 0  # the first prediction is taken, then held (see _watch)
        recorder = _Recorder(opt.record, rtc, rate) if opt.record else None
        gc.collect()
        gc.freeze()  # set-up objects stay out of any later collection
        gc.disable()
        started = time.monotonic()
        memory = {}
        try:
            if controller is not None:
                controller.start()
            if midi is not None:
                midi.start()
            client.activate()
            started = time.monotonic()  # durations count from here, not from model loading
            self._connect(client, initial=True)
            if recorder is not None:
                recorder.start()
            self._watch(client, chain, state, controller, started)
            memory = memory_mb()  # while the client still maps the server's memory
        finally:
            if controller is not None:
                controller.stop()
            if midi is not None:
                midi.stop()
            try:
                client.deactivate()
            except jack.JackError:
                pass
            client.close()
            if recorder is not None:
                recorder.stop()
        seconds = time.monotonic() - started
        report = LiveReport(
            exit_code=1 if self._server_gone.is_set() else 0,
            reason=self._stop_reason,
            seconds=seconds,
            xruns=self.xruns,
            callback_errors=self.callback_errors,
            nonfinite_out=self.nonfinite_out,
            latency=latency,
            sample_rate=rate,
            block=block,
            predictions=int(state.header[shared.PARAMS_SEQ]),
            callback_us=self.callback_us(),
            inference_ms=controller.inference_ms() if controller else np.zeros(0),
            dsp_load=self._dsp_load,
            trace=rtc.trace[: int(rtc.trace_pos[0])].copy() if opt.trace_blocks else None,
            record=opt.record,
            played=self._play,
            memory_mb=memory,
            midi=midi.counts() if midi else {},
            midi_latency_us=state.midi_latencies_us(),
        )
        self._write_outputs(chain)
        return report

    # --- the audio callback -------------------------------------------------
    def _process(self, frames: int) -> None:
        t0 = time.perf_counter_ns()
        try:
            rtc = self.rtc
            if frames != rtc.block:  # JACK changed its block size: stay silent, count
                self.bad_blocks += 1
                for port in self.outports:
                    port.get_array().fill(0.0)
                return
            x = rtc.x
            if self._play is not None:
                p = self._play_pos
                end = p + frames
                n = self._play.shape[1]
                if end <= n:
                    x[:] = self._play[:, p:end]
                else:
                    x.fill(0.0)
                    if p < n:
                        x[:, : n - p] = self._play[:, p:]
                self._play_pos = end
            else:
                for c, port in enumerate(self.inports):
                    x[c] = port.get_array()
            rtc.process(t0)
            self.nonfinite_out += rtc.counters[1]
            y = rtc.y
            for c, port in enumerate(self.outports):
                port.get_array()[:] = y[c]
        except Exception:  # never raise into JACK: mute and count
            self.callback_errors += 1
            try:
                for port in self.outports:
                    port.get_array().fill(0.0)
            except Exception:
                pass
        finally:
            i = self._cb_count
            self._cb_times[i % CALLBACK_RING] = time.perf_counter_ns() - t0
            self._cb_count = i + 1

    def _on_xrun(self, _delay_us: float) -> None:
        self.xruns += 1

    def _on_shutdown(self, _status, reason: str) -> None:
        self._stop_reason = f"the JACK server went away ({reason.strip() or 'no reason given'})"
        self._server_gone.set()
        self._stop.set()

    def callback_us(self) -> np.ndarray:
        n = min(self._cb_count, CALLBACK_RING)
        return self._cb_times[:n].astype(np.float64) / 1e3

    # --- 3./4. the graph and the watch loop ---------------------------------
    def _connect(self, client: jack.Client, initial: bool = False) -> None:
        """Make the wanted connections that are missing (the watch loop calls it twice a second).

        Named ports that disappear are connected again when they come back. With
        no names: the physical capture ports (none while a file plays) and the
        physical playback ports.
        """
        opt = self.opt
        ins, outs = opt.inputs, opt.outputs
        if ins is None:
            physical = client.get_ports(is_audio=True, is_output=True, is_physical=True)
            ins = [] if opt.play is not None else [p.name for p in physical]
        if outs is None:
            outs = [p.name for p in client.get_ports(is_audio=True, is_input=True, is_physical=True)]
        pairs = [(src, mine.name) for src, mine in zip(ins, self.inports)]
        pairs += [(mine.name, dst) for mine, dst in zip(self.outports, outs)]
        if initial:
            # Names are checked once, up front: a typo is an error. A port that
            # vanishes after this check is a client going away, and the watch loop
            # connects it again when it comes back.
            for name in [src for src, _ in pairs] + [dst for _, dst in pairs]:
                try:
                    client.get_port_by_name(name)
                except jack.JackError:
                    known = [p.name for p in client.get_ports(is_audio=True)]
                    near = difflib.get_close_matches(name, known, n=4, cutoff=0.3) or known[:6]
                    hint = f"; ports like it: {', '.join(near)}" if near else "; JACK has no audio ports"
                    raise DeepAFxError(f"there is no JACK port {name!r}{hint}") from None
        for src, dst in pairs:
            try:
                port = client.get_port_by_name(src)
                if dst not in [p.name for p in client.get_all_connections(port)]:
                    client.connect(src, dst)
            except jack.JackError:
                pass  # the port is gone for now; the next pass tries again

    def _watch(self, client, chain: Chain, state, controller, started: float) -> None:
        opt = self.opt
        rtc = self.rtc
        hop_s = (self.bundle.hop / self.bundle.sample_rate) if self.bundle else 0.25
        next_sample = next_status = next_connect = started
        self._dsp_load = []
        end_frames = None
        if self._play is not None:
            end_frames = self._play.shape[1] + int(opt.tail_s * client.samplerate) + chain.latency
        while not self._stop.is_set():
            now = time.monotonic()
            if opt.duration is not None and now - started >= opt.duration:
                self._stop_reason = f"ran for {opt.duration:g} s"
                break
            if end_frames is not None and self._play_pos >= end_frames:
                self._stop_reason = f"played {Path(opt.play).name} to the end"
                break
            if opt.freeze and state.header[shared.PARAMS_SEQ] > 0:
                rtc.freeze[0] = 1  # hold the first prediction
            if controller is not None and not controller.alive and not self._stop.is_set():
                if not self._controller_warned:
                    log.warning("the controller stopped; parameters are held where they were")
                    self._controller_warned = True
            if now >= next_sample:
                self._automation.append((now - started, rtc.applied.copy()))
                self._dsp_load.append(client.cpu_load())
                next_sample = now + hop_s
            if now >= next_connect:
                self._connect(client)
                next_connect = now + 0.5
            if self.midi is not None and opt.midi_learn and not self._learned:
                got = self.midi.learned()
                if got is not None:
                    self.midi_map.bind(got[0], got[1], opt.midi_learn)
                    self.midi_map.save(self.midi_map.path)
                    self._learned = True
                    log.info("learned channel %d CC %d → %s (saved to %s)", got[0], got[1],
                             opt.midi_learn, self.midi_map.path)  # fmt: skip
            if opt.status and now >= next_status:
                self._print_status(client, chain, state, controller, now - started)
                next_status = now + (0.5 if sys.stderr.isatty() else 5.0)
            self._stop.wait(0.02)
        if opt.status and sys.stderr.isatty():
            print(file=sys.stderr)

    def _print_status(self, client, chain: Chain, state, controller, elapsed: float) -> None:
        cb = self.callback_us()[-2000:]
        inf = controller.inference_ms() if controller else np.zeros(0)
        period_us = 1e6 * client.blocksize / client.samplerate
        parts = [
            f"{elapsed:6.1f}s",
            f"DSP {client.cpu_load():4.1f}%",
            f"xruns {self.xruns}",
            f"cb p99 {np.percentile(cb, 99):.0f}/{period_us:.0f}µs" if len(cb) else "cb -",
        ]
        if controller is not None:
            parts.append(
                f"infer p50 {np.percentile(inf, 50):.1f} p99 {np.percentile(inf, 99):.1f} ms"
                if len(inf) else "infer -"
            )  # fmt: skip
        if self.rtc.freeze[0]:
            parts.append("FROZEN")
        held = [p.name for p, h in zip(chain.parameters, state.held) if h]
        if held:
            parts.append("held: " + ",".join(held[:4]) + ("…" if len(held) > 4 else ""))
        values = chain.denormalize(self.rtc.applied)
        key = [(p.name, v) for p, v in zip(chain.parameters, values)][-2:]
        parts.append(" ".join(f"{n}={v:.3g}" for n, v in key))
        if self.callback_errors or self.nonfinite_out:
            parts.append(f"muted {self.callback_errors}+{self.nonfinite_out}")
        line = " | ".join(parts)
        print(("\r" + line) if sys.stderr.isatty() else line, end="" if sys.stderr.isatty() else "\n",
              file=sys.stderr, flush=True)  # fmt: skip

    # --- 5. outputs ------------------------------------------------------------
    def _write_outputs(self, chain: Chain) -> None:
        opt = self.opt
        if not self._automation:
            return
        times = np.array([t for t, _ in self._automation])
        norm = np.stack([u for _, u in self._automation])
        if opt.params_log:
            write_automation_csv(chain, times, norm, Path(opt.params_log))
        if opt.plot:
            plot_automation(chain, times, norm, Path(opt.plot))

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
        self._file = sf.SoundFile(
            str(self.path), "w", samplerate=rate, channels=rtc.record.shape[0],
            subtype="FLOAT" if self.path.suffix.lower() == ".wav" else None,
        )  # fmt: skip
        self._thread = threading.Thread(target=self._loop, name="deepafx-recorder", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _drain(self) -> None:
        ring = self.rtc.record
        length = ring.shape[1]
        written = int(self.rtc.rec_pos[0])
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
        self._done.set()
        self._thread.join()
        self._drain()
        self._file.close()
        if self.overflows:
            log.warning("the recorder fell behind %d time(s); some audio was lost", self.overflows)
