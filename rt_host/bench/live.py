"""``deepafx-rt bench live``: our live host against three chained ``jalv``, the C reference.

For each block size (and each JACK scheduling mode: ``--realtime on|off|both``),
one dummy ``jackd`` at 48 kHz and a player client looping music run
throughout; then, one after another, for ``--seconds`` each:

* **idle** — the server and the player alone: the baseline;
* **ours, static** — ``deepafx-rt live --chain mastering``: the chain, no model;
* **ours, model** — the shipped mastering model predicting every hop (a
  controller process) while a MIDI knob sweeps a parameter (50 CC/s);
* **ours, thread** — the same model with the controller as a thread in the
  audio process;
* **jalv ×3, static** — ``jalv`` hosting each plugin of the chain, chained in
  the same graph, at the chain's fixed and default values;
* **jalv ×3, moving** — the same, fed on its console (``SYMBOL = VALUE``) the
  very stream of port values our host writes for this music (computed with
  :func:`rt_host.steer.predict_automation`, looped with the player);
* a MIDI flood (10,000 CC/s) while the model predicts.

A monitor client samples the server's DSP load (``jack_cpu_load``) every 0.1 s
and counts xruns; our client reports its callback times, inference times,
late predictions, RSS and the controller process's CPU time. ``--soak S`` adds
one long run of "ours, model" (S seconds, e.g. 600) per scheduling mode, next
to an idle baseline of a minute. The model is the shipped mastering model
with its hop shortened to 4,096 samples at 22,050 Hz (186 ms, 2.7× as many
predictions as it ships with: a harder test).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from pathlib import Path

import jack
import numpy as np
from tqdm import tqdm

from rt_host import audio as audio_io
from rt_host.bench import write_results
from rt_host.bundle import BundleError, load_bundle, write_level_follower_bundle
from rt_host.live.server import DummyServer, _quiet_libjack, connect_when_active
from rt_host.live.stats import memory_mb
from rt_host.lv2 import Chain, ChainSpec

RATE = 48000


class Monitor:
    """A passive JACK client: DSP load samples and an xrun count."""

    def __init__(self) -> None:
        self.client = jack.Client("bench-monitor", no_start_server=True)
        self.xruns = 0
        self.client.set_xrun_callback(self._xrun)
        self.client.activate()

    def _xrun(self, _delay) -> None:
        self.xruns += 1

    def measure(self, seconds: float, progress=None) -> dict:
        start_xruns = self.xruns
        loads = []
        end = time.monotonic() + seconds
        next_tick = time.monotonic() + 1.0
        while time.monotonic() < end:
            loads.append(self.client.cpu_load())
            time.sleep(0.1)
            if progress is not None and time.monotonic() >= next_tick:
                progress.update(1)
                next_tick += 1.0
        loads = np.array(loads[5:] or loads)  # the first samples still average the previous phase
        return {"dsp_mean": float(loads.mean()), "dsp_max": float(loads.max()),
                "xruns": self.xruns - start_xruns}  # fmt: skip

    def close(self) -> None:
        self.client.deactivate()
        self.client.close()


def _wait_port(client: jack.Client, name: str, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            client.get_port_by_name(name)
            return
        except jack.JackError:
            time.sleep(0.1)
    raise RuntimeError(f"port {name} did not appear within {timeout:g} s")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


SWEEP_CC, SWEEP_RATE = 27, 50  # the default map's EQ band at 1 kHz (geq.g_9), CC messages per second


def _sweep(stop: threading.Event) -> None:
    """A knob moving up and down on CC 27 (the default map's limiter.th) until ``stop``."""
    import rtmidi

    out = rtmidi.MidiOut(rtapi=rtmidi.API_UNIX_JACK, name="sweep")
    out.open_virtual_port("out")
    try:
        client = jack.Client("sweep-wiring", no_start_server=True)
        try:
            connect_when_active(client, "sweep:out", "deepafx-rt-midi:midi_in", 30)
        finally:
            client.close()
        k = 0
        while not stop.wait(1 / SWEEP_RATE):
            v = k % 254
            out.send_message([0xB0, SWEEP_CC, v if v < 128 else 253 - v])
            k += 1
    finally:
        out.close_port()
        out.delete()


def _ours(monitor, env, seconds: float, tmp: Path, progress, *, name: str, bundle: Path | None,
          mode: str = "process", sweep: bool = False) -> dict:  # fmt: skip
    """Our host as a client between the player and nothing, measured for ``seconds``."""
    stats = tmp / f"{name}.json"
    what = ["--bundle", str(bundle), "--controller", mode] if bundle else ["--chain", "mastering"]
    cmd = [sys.executable, "-m", "rt_host", "-q", "live", *what, "--in", "player:out_1", "player:out_2",
           "--out", "--stats-json", str(stats)]  # fmt: skip
    # output to a file: a pipe nobody drains during a soak could fill and block the client
    log = open(tmp / f"{name}.log", "w+")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    stop = threading.Event()
    sweeper = threading.Thread(target=_sweep, args=(stop,), daemon=True) if sweep else None
    try:
        _wait_port(monitor.client, "deepafx-rt:out_1")
        if sweeper is not None:
            sweeper.start()
        time.sleep(1.0)  # the controller's first predictions
        result = monitor.measure(seconds, progress)
    finally:
        stop.set()
        if sweeper is not None:
            sweeper.join(5)
        _stop(proc)
    log.seek(0)
    err = log.read()
    log.close()
    if not stats.is_file():
        raise RuntimeError(f"our client wrote no statistics: {err.strip()[-300:]}")
    return result | {"client": json.loads(stats.read_text())}


FLOOD_RATE = 10_000  # CC messages per second
FLOOD_CCS = (21, 22, 23, 24, 25, 26, 27, 28)  # the mastering chain's default map


def _flood(monitor, env, bundle: Path, seconds: float, tmp: Path, progress) -> dict:
    """Our client with the model predicting while a controller sends 10,000 mapped CC/s."""
    import rtmidi

    stats = tmp / "ours-flood.json"
    cmd = [sys.executable, "-m", "rt_host", "-q", "live", "--bundle", str(bundle),
           "--in", "player:out_1", "player:out_2", "--out", "--stats-json", str(stats)]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out = rtmidi.MidiOut(rtapi=rtmidi.API_UNIX_JACK, name="flood")
    out.open_virtual_port("out")
    sent = 0
    try:
        _wait_port(monitor.client, "deepafx-rt:out_1")
        _wait_port(monitor.client, "deepafx-rt-midi:midi_in")
        connect_when_active(monitor.client, "flood:out", "deepafx-rt-midi:midi_in")
        time.sleep(1.0)
        result_box = {}
        measure = threading.Thread(target=lambda: result_box.update(monitor.measure(seconds, progress)))
        measure.start()
        start = time.monotonic()
        per_ms = FLOOD_RATE // 1000
        tick = 0
        while time.monotonic() - start < seconds - 0.5:
            for _ in range(per_ms):
                cc = FLOOD_CCS[sent % len(FLOOD_CCS)]
                value = (sent // len(FLOOD_CCS)) % 254
                out.send_message([0xB0, cc, value if value < 128 else 253 - value])  # sweeps up and down
                sent += 1
            tick += 1
            delay = start + tick / 1000 - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        flood_s = time.monotonic() - start
        measure.join()
        time.sleep(0.5)  # let the last events through
    finally:
        out.close_port()
        out.delete()
        _stop(proc)
    _, err = proc.communicate()
    if not stats.is_file():
        raise RuntimeError(f"our client wrote no statistics: {err.strip()[-300:]}")
    client = json.loads(stats.read_text())
    return result_box | {"client": client, "sent": sent, "flood_s": flood_s, "rate": sent / flood_s}


def _transport_latency(n: int = 200) -> dict:
    """rtmidi virtual out → JACK MIDI → rtmidi in, in one process: the transport alone."""
    import rtmidi

    got = []
    midi_in = rtmidi.MidiIn(rtapi=rtmidi.API_UNIX_JACK, name="lat-in")
    midi_in.open_virtual_port("in")
    midi_in.set_callback(lambda ev, _d: got.append(time.monotonic_ns()))
    out = rtmidi.MidiOut(rtapi=rtmidi.API_UNIX_JACK, name="lat-out")
    out.open_virtual_port("out")
    client = jack.Client("lat-wiring", no_start_server=True)
    client.connect("lat-out:out", "lat-in:in")
    sent = []
    for i in range(n):
        sent.append(time.monotonic_ns())
        out.send_message([0xB0, 1, i % 128])
        time.sleep(0.005)
    time.sleep(0.2)
    client.close()
    for port in (out, midi_in):
        port.close_port()
        port.delete()
    lat = (np.array(got[: len(sent)]) - np.array(sent[: len(got)])) / 1e3
    return {
        "received": len(got),
        "sent": n,
        "p50_us": float(np.median(lat)),
        "p99_us": float(np.percentile(lat, 99)),
    }


def jalv_stream(bundle: Path, music: Path, block: int) -> tuple[float, list[list[tuple[float, str]]]]:
    """The port values our host writes for ``music`` (looped by the player), per chain stage, as jalv console
    lines: ``(loop length in s, [[(time s, "SYMBOL = VALUE"), …] per stage])``."""
    from rt_host.steer import predict_automation

    b = load_bundle(bundle)
    chain = Chain(b.chain_spec)
    audio, rate = audio_io.read_audio(music)
    audio = audio_io.map_channels(audio_io.resample(audio, rate, RATE), chain.channels, "auto")
    auto = predict_automation(b.predictor(), audio, RATE, b.geometry(RATE), chain, held=b.held, block=block)
    times, rows = auto.log()
    chain.prepare(RATE, block)
    values = chain.program.table.to_port(rows)
    streams: list[list[tuple[float, str]]] = [[] for _ in chain.stages]
    names = [s.name for s in chain.stages]
    for k in range(1, len(rows)):
        for j, p in enumerate(chain.parameters):
            if values[k, j] != values[k - 1, j]:
                streams[names.index(p.stage)].append((float(times[k]), f"{p.symbol} = {values[k, j]:.9g}"))
    return audio.shape[1] / RATE, streams


def _feed(
    proc: subprocess.Popen, lines: list[tuple[float, str]], loop_s: float, stop: threading.Event
) -> int:
    """Write ``lines`` to jalv's console at their times, looping like the player; returns lines sent."""
    sent = 0
    start = time.monotonic()
    while not stop.is_set() and lines:
        base = start + (sent // len(lines)) * loop_s
        t, line = lines[sent % len(lines)]
        delay = base + t - time.monotonic()
        if delay > 0 and stop.wait(delay):
            break
        try:
            proc.stdin.write(line + "\n")
            proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            break
        sent += 1
    return sent


def _jalv(monitor, env, chain: Chain, seconds: float, progress, stream=None) -> dict:
    """Three jalv chained after the player; with ``stream`` (:func:`jalv_stream`) their controls move."""
    procs, names = [], []
    for stage in chain.stages:
        values = dict(chain.fixed_values(stage.name))
        for p in chain.parameters:
            if p.stage == stage.name:
                values[p.symbol] = p.default
        cmd = ["jalv", "-n", f"jalv-{stage.name}"]
        for sym, val in values.items():
            cmd += ["-c", f"{sym}={val:g}"]
        cmd.append(stage.plugin.uri)
        # jalv reads control changes on its console, and quits when stdin closes: keep the pipe open
        procs.append(
            subprocess.Popen(
                cmd,
                env=env,
                stdin=subprocess.PIPE,
                text=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        names.append(f"jalv-{stage.name}")
    stop = threading.Event()
    feeders, counts = [], {}
    try:
        upstream = ["player:out_1", "player:out_2"]
        for stage, name in zip(chain.stages, names):
            ins = [f"{name}:{p.symbol}" for p in stage.plugin.audio_inputs]
            outs = [f"{name}:{p.symbol}" for p in stage.plugin.audio_outputs]
            _wait_port(monitor.client, outs[-1])
            for src, dst in zip(upstream, ins):
                connect_when_active(monitor.client, src, dst)
            upstream = outs
        if stream is not None:
            loop_s, lines = stream
            for proc, stage_lines, name in zip(procs, lines, names):
                t = threading.Thread(
                    target=lambda p=proc, ls=stage_lines, n=name: counts.__setitem__(
                        n, _feed(p, ls, loop_s, stop)
                    ),
                    daemon=True,
                )
                t.start()
                feeders.append(t)
        time.sleep(1.0)
        result = monitor.measure(seconds, progress)
        mems = [memory_mb(p.pid) for p in procs]
        result["memory_mb"] = {
            "rss": sum(m["rss"] or 0 for m in mems),
            "rss_without_jack": sum(m["rss_without_jack"] or 0 for m in mems),
        }
    finally:
        stop.set()
        for t in feeders:
            t.join(5)
        for proc in procs:
            try:
                proc.stdin.close()
            except OSError:
                pass
            _stop(proc)
    if stream is not None:
        result["console_lines_per_s"] = sum(counts.values()) / (seconds + 1.0)
    return result


def bench_block(block: int, seconds: float, tmp: Path, bundle: Path, music: Path, progress, *,
                realtime: bool = True, soak: float | None = None) -> dict:  # fmt: skip
    name = "deepafx-bench"  # a fixed name: JACK2 reclaims a dead server's slot only by name
    env = dict(os.environ, JACK_DEFAULT_SERVER=name)
    old_env = {k: os.environ.get(k) for k in ("JACK_DEFAULT_SERVER", "DEEPAFX_JACK_NO_RT")}
    os.environ["JACK_DEFAULT_SERVER"] = name
    if realtime:
        os.environ.pop("DEEPAFX_JACK_NO_RT", None)
    else:
        os.environ["DEEPAFX_JACK_NO_RT"] = "1"
    stream = jalv_stream(bundle, music, block) if not soak else None
    try:
        with DummyServer(RATE, block, name=name):
            player = subprocess.Popen([sys.executable, "-m", "rt_host.bench.player", str(music)], env=env)
            with _quiet_libjack():
                monitor = Monitor()
            try:
                _wait_port(monitor.client, "player:out_1")
                time.sleep(1.0)
                if soak:
                    rows = {"idle": monitor.measure(min(60.0, soak), progress)}
                    rows["ours_model"] = _ours(
                        monitor, env, soak, tmp, progress, name="soak", bundle=bundle, sweep=True
                    )
                else:
                    rows = {"idle": monitor.measure(seconds, progress)}
                    rows["ours_static"] = _ours(
                        monitor, env, seconds, tmp, progress, name="static", bundle=None
                    )
                    rows["ours_model"] = _ours(
                        monitor, env, seconds, tmp, progress, name="model", bundle=bundle, sweep=True
                    )
                    rows["ours_thread"] = _ours(
                        monitor,
                        env,
                        seconds,
                        tmp,
                        progress,
                        name="thread",
                        bundle=bundle,
                        mode="thread",
                        sweep=True,
                    )
                    chain = Chain(load_bundle(bundle).chain_spec)  # the model's chain, as ours runs it
                    rows["jalv_static"] = _jalv(monitor, env, chain, seconds, progress)
                    rows["jalv_moving"] = _jalv(monitor, env, chain, seconds, progress, stream)
                    rows["ours_midi_flood"] = _flood(monitor, env, bundle, min(seconds, 10.0), tmp, progress)
                    rows["midi_transport"] = _transport_latency()
            finally:
                monitor.close()
                _stop(player)
    finally:
        for k, v in old_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    idle = rows["idle"]
    for key, r in rows.items():
        if key not in ("idle", "midi_transport"):
            r["dsp_added"] = r["dsp_mean"] - idle["dsp_mean"]
            r["xruns_over_idle"] = r["xruns"] - idle["xruns"]
    if not soak:
        for ours, ref in (("ours_static", "jalv_static"), ("ours_model", "jalv_moving"),
                          ("ours_thread", "jalv_moving")):  # fmt: skip
            added = rows[ref]["dsp_added"]
            rows[ours]["dsp_ratio_to_jalv"] = rows[ours]["dsp_added"] / added if added > 0 else None
            rows[ours]["jalv_reference"] = ref
    return rows


BENCH_HOP = 4096  # samples at the model's 22,050 Hz between predictions


def bench_bundle(path: Path) -> tuple[Path, str]:
    """The shipped mastering model with its hop set to :data:`BENCH_HOP` (or a stand-in), and its name."""
    import tomli_w

    try:
        shipped = load_bundle("mastering")
    except BundleError as exc:
        print(f"bench live: no shipped mastering model ({exc}); using a stand-in bundle")
        write_level_follower_bundle(
            path,
            ChainSpec.load("mastering"),
            task="mastering-standin",
            window=40960,
            hop=BENCH_HOP,
            front_end=True,
        )
        return path, "stand-in (level follower with a spectral front end)"
    shutil.copytree(shipped.path, path)
    manifest = tomllib.loads((path / "manifest.toml").read_text(encoding="utf-8"))
    manifest["hop"] = BENCH_HOP
    (path / "manifest.toml").write_text(tomli_w.dumps(manifest), encoding="utf-8")
    return path, f"exported_models/mastering, hop {BENCH_HOP}"


def _exit_on_sigterm(signum, frame) -> None:
    raise SystemExit(128 + signum)


def run(blocks: list[int], seconds: float, json_path: Path | None, *, realtime: str = "on",
        soak: float | None = None) -> dict:  # fmt: skip
    # SIGTERM's default ends Python without running ``finally``: the server, the player, jalv and our
    # client would outlive the benchmark and disturb the next run. As SystemExit, they are stopped.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    modes = {"on": [True], "off": [False], "both": [True, False]}[realtime]
    results = {"rate": RATE, "seconds": seconds, "soak": soak,
               "baseline": "idle server + player; jalv ×3 static and moving", "runs": {}}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        music = tmp / "music.wav"
        from rt_host import unmaster

        example, _ = unmaster.example(30.0)
        audio_io.write_audio(music, example, 44100, "FLOAT")
        bundle, results["model"] = bench_bundle(tmp / "bundle")
        per = (min(60.0, soak) + soak) if soak else 6 * seconds + min(seconds, 10.0)
        with tqdm(
            total=int(len(modes) * len(blocks) * per), desc="bench live", unit="s", leave=False
        ) as progress:
            for rt in modes:
                for block in blocks:
                    key = f"{'rt' if rt else 'no-rt'} {block}"
                    results["runs"][key] = bench_block(
                        block, seconds, tmp, bundle, music, progress, realtime=rt, soak=soak
                    )
    write_results(results, json_path)  # first: a report that fails to print loses no measurement
    print_report(results)
    return results


def print_report(results: dict) -> None:
    what = f"soak of {results['soak']:g} s" if results.get("soak") else f"{results['seconds']:g} s each"
    print(
        f"Live host vs three chained jalv — dummy jackd {results['rate']} Hz, {what}; "
        f"model: {results.get('model', '?')}"
    )
    for run_key, rows in results["runs"].items():
        block = int(run_key.split()[-1])
        period = 1e6 * block / results["rate"]
        print(
            f"\n{run_key.replace('no-rt', 'no real-time').replace('rt ', 'real-time, ')} frames "
            f"(period {period:.0f} µs)"
        )
        print(
            f"  {'case':<16} {'DSP mean':>8} {'max':>6} {'added':>6} {'vs jalv':>7} {'xruns':>5} {'+idle':>5}"
        )
        for key, r in rows.items():
            if key in ("midi_transport", "ours_midi_flood"):
                continue
            added = f"{r['dsp_added']:6.2f}" if "dsp_added" in r else "     -"
            ratio = r.get("dsp_ratio_to_jalv")
            ratio_s = f"{ratio:7.2f}" if ratio is not None else "      -"
            over = f"{r['xruns_over_idle']:5d}" if "xruns_over_idle" in r else "    -"
            load = f"{r['dsp_mean']:7.2f}% {r['dsp_max']:5.1f}%"
            print(f"  {key:<16} {load} {added} {ratio_s} {r['xruns']:5d} {over}")
        for key, r in rows.items():
            if not key.startswith("ours_") or "client" not in r:
                continue
            c = r["client"]
            cb, inf = c["callback_us"], c["inference_ms"]
            line = (
                f"  {key}: callback mean {cb['mean']:.0f} p99 {cb['p99']:.0f} max {cb['max']:.0f} µs "
                f"({c['callbacks_over_period']} of {c['callbacks']} over the period; its own CPU time: "
                f"max {c['callback_cpu_us']['max'] or 0:.0f} µs, {c['callbacks_cpu_over_period']} over)"
            )
            if inf["p50"] is not None:
                steering = c.get("steering", {})
                line += (
                    f"; inference p50 {inf['p50']:.2f} p99 {inf['p99']:.2f} ms; predictions "
                    f"{steering.get('applied', 0)}, late {steering.get('late', 0)}; "
                )
                share = c.get("controller_cpu_share")
                line += (
                    f"controller CPU {share * 100:.1f} % of a core"
                    if share is not None
                    else "controller in the host process"
                )
            mem = c["memory_mb"]
            line += f"; RSS {mem['rss_without_jack'] or 0:.0f} MB without JACK's shared memory"
            print(line)
        if "jalv_moving" in rows:
            print(
                f"  jalv_moving: {rows['jalv_moving'].get('console_lines_per_s', 0):.0f} console lines/s "
                f"(the port values our host writes)"
            )
        if "ours_midi_flood" in rows:
            f = rows["ours_midi_flood"]
            m, lat = f["client"]["midi"], f["client"]["event_latency_us"]
            t = rows["midi_transport"]
            print(
                f"  MIDI flood: {f['sent']} CC in {f['flood_s']:.1f} s ({f['rate']:.0f}/s) while the model "
                f"predicts: received {m['received']}, lost {f['sent'] - m['received']}, "
                f"applied {m['applied']}; "
                f"xruns {f['xruns']} ({f['xruns_over_idle']:+d} over idle)"
            )
            print(
                f"  CC → port: arrival → port write p50 {(lat['p50'] or 0) / 1e3:.2f} p99 "
                f"{(lat['p99'] or 0) / 1e3:.2f} ms (+ transport p50 {t['p50_us'] / 1e3:.2f} ms)"
            )
