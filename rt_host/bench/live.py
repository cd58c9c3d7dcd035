"""``deepafx-rt bench live``: our JACK client against three chained ``jalv``.

For each block size, one dummy ``jackd`` at 48 kHz and a player client looping
music run throughout; then, one after another, for ``--seconds`` each:

* **idle** — the server and the player alone: the baseline;
* **ours (process)** — ``deepafx-rt live`` with the model in a controller
  process, predicting every hop;
* **ours (thread)** — the same with the controller as a thread in the audio
  process (the GIL shares one lock with the callback);
* **jalv ×3** — ``jalv`` hosting each plugin of the chain, with the chain's
  fixed values and default parameters, chained in the same graph (the C
  reference).

A monitor client samples the server's DSP load (``jack_cpu_load``) every 0.1 s
and counts xruns; our client reports its own callback times, inference times
and RSS. The model is the shipped mastering model (``exported_models/mastering``)
with its hop shortened to 4,096 samples at 22,050 Hz (186 ms, 2.7× as many
predictions as it ships with: a harder test); without it, a stand-in bundle at
the same geometry with a spectral-projection front end (~1 ms).
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
from rt_host.signals import unmastered_mix

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


def _ours(monitor, env, bundle: Path, mode: str, seconds: float, tmp: Path, progress) -> dict:
    stats = tmp / f"ours-{mode}.json"
    cmd = [sys.executable, "-m", "rt_host", "-q", "live", "--bundle", str(bundle),
           "--controller", mode, "--in", "player:out_1", "player:out_2", "--out",
           "--stats-json", str(stats)]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_port(monitor.client, "deepafx-rt:out_1")
        time.sleep(1.0)  # the controller's first predictions
        result = monitor.measure(seconds, progress)
    finally:
        _stop(proc)
    out, err = proc.communicate()
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


def _jalv(monitor, env, chain: Chain, seconds: float, progress) -> dict:
    procs, names = [], []
    for stage in chain.stages:
        values = dict(chain._fixed[chain.stages.index(stage)])
        for p in chain.parameters:
            if p.stage == stage.name:
                values[p.symbol] = p.default
        cmd = ["jalv", "-n", f"jalv-{stage.name}"]
        for sym, val in values.items():
            cmd += ["-c", f"{sym}={val:g}"]
        cmd.append(stage.plugin.uri)
        # jalv quits when stdin closes: keep an open pipe for as long as it runs
        procs.append(subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))  # fmt: skip
        names.append(f"jalv-{stage.name}")
    try:
        upstream = ["player:out_1", "player:out_2"]
        for stage, name in zip(chain.stages, names):
            ins = [f"{name}:{p.symbol}" for p in stage.plugin.audio_inputs]
            outs = [f"{name}:{p.symbol}" for p in stage.plugin.audio_outputs]
            _wait_port(monitor.client, outs[-1])
            for src, dst in zip(upstream, ins):
                connect_when_active(monitor.client, src, dst)
            upstream = outs
        time.sleep(1.0)
        result = monitor.measure(seconds, progress)
        mems = [memory_mb(p.pid) for p in procs]
        result["memory_mb"] = {
            "rss": sum(m["rss"] or 0 for m in mems),
            "rss_without_jack": sum(m["rss_without_jack"] or 0 for m in mems),
        }
        return result
    finally:
        for proc in procs:
            proc.stdin.close()
            _stop(proc)


def bench_block(block: int, seconds: float, tmp: Path, bundle: Path, music: Path, progress) -> dict:
    name = "deepafx-bench"  # a fixed name: JACK2 reclaims a dead server's slot only by name
    env = dict(os.environ, JACK_DEFAULT_SERVER=name)
    old = os.environ.get("JACK_DEFAULT_SERVER")
    os.environ["JACK_DEFAULT_SERVER"] = name
    try:
        with DummyServer(RATE, block, name=name):
            player = subprocess.Popen([sys.executable, "-m", "rt_host.bench.player", str(music)], env=env)
            with _quiet_libjack():
                monitor = Monitor()
            try:
                _wait_port(monitor.client, "player:out_1")
                time.sleep(1.0)
                rows = {"idle": monitor.measure(seconds, progress)}
                rows["ours_process"] = _ours(monitor, env, bundle, "process", seconds, tmp, progress)
                rows["ours_thread"] = _ours(monitor, env, bundle, "thread", seconds, tmp, progress)
                rows["jalv_x3"] = _jalv(monitor, env, Chain.load("mastering"), seconds, progress)
                rows["ours_midi_flood"] = _flood(monitor, env, bundle, min(seconds, 10.0), tmp, progress)
                rows["midi_transport"] = _transport_latency()
            finally:
                monitor.close()
                _stop(player)
    finally:
        if old is None:
            os.environ.pop("JACK_DEFAULT_SERVER", None)
        else:
            os.environ["JACK_DEFAULT_SERVER"] = old
    idle = rows["idle"]
    for key in ("ours_process", "ours_thread", "jalv_x3", "ours_midi_flood"):
        rows[key]["dsp_added"] = rows[key]["dsp_mean"] - idle["dsp_mean"]
        rows[key]["xruns_over_idle"] = rows[key]["xruns"] - idle["xruns"]
    jalv_added = rows["jalv_x3"]["dsp_added"]
    for key in ("ours_process", "ours_thread"):
        rows[key]["dsp_ratio_to_jalv"] = rows[key]["dsp_added"] / jalv_added if jalv_added > 0 else None
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
            path, ChainSpec.load("mastering"), task="mastering-standin",
            window=40960, hop=BENCH_HOP, front_end=True,
        )  # fmt: skip
        return path, "stand-in (level follower with a spectral front end)"
    shutil.copytree(shipped.path, path)
    manifest = tomllib.loads((path / "manifest.toml").read_text(encoding="utf-8"))
    manifest["hop"] = BENCH_HOP
    (path / "manifest.toml").write_text(tomli_w.dumps(manifest), encoding="utf-8")
    return path, f"exported_models/mastering, hop {BENCH_HOP}"


def _exit_on_sigterm(signum, frame) -> None:
    raise SystemExit(128 + signum)


def run(blocks: list[int], seconds: float, json_path: Path | None) -> dict:
    # SIGTERM's default ends Python without running ``finally``: the server, the player, jalv and our
    # client would outlive the benchmark and disturb the next run. As SystemExit, they are stopped.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    results = {"rate": RATE, "seconds": seconds, "baseline": "idle server + player; jalv ×3", "blocks": {}}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        music = tmp / "music.wav"
        audio_io.write_audio(music, unmastered_mix(30.0, 44100, peak_dbfs=-3.0), 44100, "FLOAT")
        bundle, results["model"] = bench_bundle(tmp / "bundle")
        total = int(len(blocks) * (4 * seconds + min(seconds, 10.0)))
        with tqdm(total=total, desc="bench live", unit="s", leave=False) as progress:
            for block in blocks:
                results["blocks"][str(block)] = bench_block(block, seconds, tmp, bundle, music, progress)
    print_report(results)
    write_results(results, json_path)
    return results


def print_report(results: dict) -> None:
    print(
        f"Live host vs three chained jalv — dummy jackd {results['rate']} Hz, {results['seconds']:g} s each; "
        f"model: {results.get('model', '?')}"
    )
    for block, rows in results["blocks"].items():
        period = 1e6 * int(block) / results["rate"]
        print(f"\nblock {block} (period {period:.0f} µs)")
        print(
            f"  {'case':<14} {'DSP mean':>8} {'max':>6} {'added':>6} {'vs jalv':>7} {'xruns':>5} {'+idle':>5}"
        )
        for key in ("idle", "ours_process", "ours_thread", "jalv_x3"):
            r = rows[key]
            added = f"{r['dsp_added']:6.2f}" if "dsp_added" in r else "     -"
            ratio = r.get("dsp_ratio_to_jalv")
            ratio_s = f"{ratio:7.2f}" if ratio is not None else "      -"
            over = f"{r['xruns_over_idle']:5d}" if "xruns_over_idle" in r else "    -"
            load = f"{r['dsp_mean']:7.2f}% {r['dsp_max']:5.1f}%"
            print(f"  {key:<14} {load} {added} {ratio_s} {r['xruns']:5d} {over}")
        for key in ("ours_process", "ours_thread"):
            c = rows[key]["client"]
            cb, inf = c["callback_us"], c["inference_ms"]
            hop_ms = 1e3 * BENCH_HOP / 22050
            print(
                f"  {key}: callback mean {cb['mean']:.0f} p99 {cb['p99']:.0f} p99.9 {cb['p99.9']:.0f} "
                f"max {cb['max']:.0f} µs ({c['callbacks_over_period']} over the period); inference "
                f"p50 {inf['p50']:.2f} p99 {inf['p99']:.2f} ms "
                f"= {100 * inf['p99'] / hop_ms:.1f} % of the hop; "
                f"RSS {c['memory_mb']['rss']:.0f} MB, {c['memory_mb']['rss_without_jack']:.0f} MB without "
                f"JACK's shared memory (controller process peak "
                f"{c['peak_rss_mb_controller_process']:.0f} MB); "
                f"tensorflow imported: {c['tensorflow_imported']}"
            )
        f = rows["ours_midi_flood"]
        m, lat = f["client"]["midi"], f["client"]["midi_latency_us"]
        t = rows["midi_transport"]
        print(
            f"  MIDI flood: {f['sent']} CC in {f['flood_s']:.1f} s ({f['rate']:.0f}/s) while the model "
            f"predicts: received {m['received']}, lost {f['sent'] - m['received']}, dropped {m['dropped']}, "
            f"applied {m['applied']}; xruns {f['xruns']} ({f['xruns_over_idle']:+d} over idle), "
            f"DSP {f['dsp_mean']:.1f}%"
        )
        print(
            f"  CC → port: arrival → port write p50 {lat['p50'] / 1e3:.2f} p99 {lat['p99'] / 1e3:.2f} ms "
            f"(+ transport rtmidi→JACK→rtmidi p50 {t['p50_us'] / 1e3:.2f} p99 {t['p99_us'] / 1e3:.2f} ms)"
        )
        j = rows["jalv_x3"]["memory_mb"]
        print(f"  jalv_x3: RSS of the three {j['rss']:.0f} MB, {j['rss_without_jack']:.0f} MB without JACK's")
