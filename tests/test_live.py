"""The live host on a real ``jackd -d dummy`` started by the tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jack
import numpy as np
import pytest
import soundfile as sf

from rt_host.bundle import write_level_follower_bundle
from rt_host.errors import DeepAFxError
from rt_host.live import latency as jack_latency
from rt_host.live.host import LiveOptions
from rt_host.live.server import DummyServer
from rt_host.lv2 import Chain, ChainSpec
from tests.live_support import HostThread, dummy_server, level_steps, unique_server_name

RATE, PERIOD = 48000, 128


@pytest.fixture(scope="module")
def jack_server():
    with dummy_server("main", RATE, PERIOD) as server:
        yield server


@pytest.fixture(scope="module")
def probe_bundle(tmp_path_factory) -> Path:
    spec = ChainSpec.load("mastering-v1")
    return write_level_follower_bundle(tmp_path_factory.mktemp("bundle"), spec, window=4096, hop=1024)


def test_played_file_recorded_output_equals_offline_render(jack_server, probe_bundle, tmp_path):
    """Same input blocks, same per-block parameters → the same audio, bit for bit.

    The native callback and the offline render run the same chain program on
    the same float32 data, and the parameters reach the ports through the same
    mapping kernel, so the recording must equal a render that replays the
    callback's per-block trace.
    """
    x = level_steps(RATE, 1.5, [-40.0, -12.0, -30.0])
    src = tmp_path / "in.wav"
    sf.write(src, x.T, RATE, subtype="FLOAT")
    rec = tmp_path / "rec.wav"
    opts = LiveOptions(bundle=probe_bundle, play=src, record=rec, status=False, midi=False,
                       keep_trace=True, tail_s=0.3, outputs=[])  # fmt: skip
    report = HostThread(opts).start().join()
    assert report.exit_code == 0 and "to the end" in report.reason
    assert report.predictions > 5 and report.steering["late"] == 0
    y_live, rate = sf.read(rec, dtype="float32", always_2d=True)
    assert rate == RATE
    y_live = y_live.T
    trace = report.trace
    blocks = min(len(trace), y_live.shape[1] // PERIOD)
    assert blocks * PERIOD > x.shape[1]
    played = np.zeros((2, blocks * PERIOD), dtype=np.float32)
    played[:, : x.shape[1]] = x
    chain = Chain(ChainSpec.load("mastering-v1"))
    y_off = chain(played, RATE, params=trace[:blocks], step_length=PERIOD, block_size=PERIOD)
    np.testing.assert_array_equal(y_live[:, : blocks * PERIOD], y_off)
    assert np.max(np.abs(y_off)) > 0.01  # not comparing silence with silence

    # the parameters followed the input's level: loud middle vs quiet start
    quiet = trace[int(1.2 * RATE / PERIOD)]
    loud = trace[int(2.8 * RATE / PERIOD)]
    assert np.max(np.abs(loud - quiet)) > 0.05


def _wait_for_port(client: jack.Client, name: str, timeout: float = 10.0) -> jack.Port:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return client.get_port_by_name(name)
        except jack.JackError:
            time.sleep(0.05)
    raise AssertionError(f"port {name} never appeared")


def test_reported_latency_matches_the_plugins(jack_server):
    """With nothing upstream, our outputs' capture latency is the chain's own."""
    client = jack.Client("latency-probe")
    try:
        host = HostThread(LiveOptions(chain="mastering-v1", status=False, duration=2.0,
                                      inputs=[], outputs=[])).start()  # fmt: skip
        port = _wait_for_port(client, "deepafx-rt:out_1")
        # ports exist before the client activates (after the MIDI receiver starts);
        # JACK asks for latencies on activation
        deadline = time.monotonic() + 10
        lo, hi = jack_latency.port_latency(port, jack_latency.CAPTURE)
        while (lo, hi) == (0, 0) and time.monotonic() < deadline:
            time.sleep(0.05)
            lo, hi = jack_latency.port_latency(port, jack_latency.CAPTURE)
        report = host.join()
    finally:
        client.close()
    # LSP limiter lookahead, 5 ms at 48 kHz; the other two stages add none
    assert report.latency == 240
    assert (lo, hi) == (240, 240)


def test_audio_flows_through_the_graph(jack_server):
    """A separate JACK client plays a sine into us and records what comes back."""
    client = jack.Client("tester")
    outs = [client.outports.register(f"out_{i}") for i in (1, 2)]
    ins = [client.inports.register(f"in_{i}") for i in (1, 2)]
    phase = [0]
    got = []
    freq = 1000.0

    def process(frames):
        t = (phase[0] + np.arange(frames)) / RATE
        s = (0.2 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
        phase[0] += frames
        for p in outs:
            p.get_array()[:] = s
        got.append(ins[0].get_array().copy())

    client.set_process_callback(process)
    client.activate()
    try:
        host = HostThread(LiveOptions(chain="mastering-v1", status=False, duration=2.0,
                                      inputs=["tester:out_1", "tester:out_2"],
                                      outputs=["tester:in_1", "tester:in_2"])).start()  # fmt: skip
        _wait_for_port(client, "deepafx-rt:out_1")
        report = host.join()
    finally:
        client.deactivate()
        client.close()
    assert report.exit_code == 0 and report.callback_errors == 0
    y = np.concatenate(got[len(got) // 2 :])
    spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    peak_hz = np.argmax(spectrum) * RATE / len(y)
    assert abs(peak_hz - freq) < 10 and np.sqrt(np.mean(y**2)) > 0.01


def _wait_for_client(server_env: dict | None, timeout: float = 60.0) -> None:
    """Until deepafx-rt's output port exists and the client runs."""
    name = (server_env or os.environ).get("JACK_DEFAULT_SERVER")
    probe = jack.Client("waiter", servername=name)
    try:
        port = _wait_for_port(probe, "deepafx-rt:out_1", timeout)
        deadline = time.monotonic() + timeout
        while jack_latency.port_latency(port, jack_latency.CAPTURE) == (0, 0):
            assert time.monotonic() < deadline, "the client never activated"
            time.sleep(0.05)
        time.sleep(1.0)
    finally:
        probe.close()


def _cli(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "rt_host", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip


def test_sigterm_stops_cleanly_and_finalizes_the_recording(jack_server, tmp_path):
    rec = tmp_path / "rec.wav"
    proc = _cli("-q", "live", "--chain", "mastering-v1", "--record", str(rec), "--out", env=None)
    _wait_for_client(None)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "stopped by SIGTERM" in out
    info = sf.info(rec)
    assert info.frames > RATE // 2 and info.channels == 2


def test_server_death_gives_a_message_keeps_the_recording_and_exits_nonzero(tmp_path):
    name = unique_server_name("death")
    env = dict(os.environ, JACK_DEFAULT_SERVER=name)
    rec = tmp_path / "rec.wav"
    with DummyServer(RATE, PERIOD, name=name) as server:
        proc = _cli("-q", "live", "--chain", "mastering-v1", "--record", str(rec), "--out", env=env)
        _wait_for_client(env)
        server.process.kill()
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1, out + err
    assert "JACK server went away" in err
    assert sf.info(rec).frames > 0


def test_no_server_is_a_clear_error(tmp_path):
    env = dict(os.environ, JACK_DEFAULT_SERVER=unique_server_name("absent"))
    proc = _cli("live", "--chain", "mastering-v1", env=env)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert err.strip().splitlines()[-1].startswith("deepafx-rt: error: no JACK server is running")
    assert "Traceback" not in err


def test_bad_bundle_is_refused_before_the_client_starts(jack_server, probe_bundle, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in probe_bundle.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    (bad / "encoder.onnx").write_bytes(b"not a model")
    proc = _cli("live", "--bundle", str(bad), env=None)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "not a valid ONNX model" in err and "Traceback" not in err


def test_freeze_holds_the_first_prediction(jack_server, probe_bundle, tmp_path):
    x = level_steps(RATE, 1.5, [-40.0, -12.0, -30.0])
    src = tmp_path / "in.wav"
    sf.write(src, x.T, RATE, subtype="FLOAT")
    opts = LiveOptions(bundle=probe_bundle, play=src, status=False, freeze=True, outputs=[], midi=False,
                       keep_trace=True, tail_s=0.1)  # fmt: skip
    report = HostThread(opts).start().join()
    assert report.predictions > 5  # the model kept predicting…
    trace = report.trace
    loud, quiet = trace[int(2.8 * RATE / PERIOD)], trace[int(4.2 * RATE / PERIOD)]
    np.testing.assert_array_equal(loud, quiet)  # …but the parameters held


def test_ports_are_reconnected_when_they_come_back(jack_server):
    def tester() -> jack.Client:
        c = jack.Client("comeback")
        for i in (1, 2):
            c.inports.register(f"in_{i}")
        c.activate()
        return c

    client = tester()
    host = HostThread(LiveOptions(chain="mastering-v1", status=False, duration=6.0, inputs=[],
                                  outputs=["comeback:in_1", "comeback:in_2"])).start()  # fmt: skip
    try:
        port = _wait_for_port(client, "deepafx-rt:out_1")
        port_2 = _wait_for_port(client, "deepafx-rt:out_2")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not (
            client.get_all_connections(port) and client.get_all_connections(port_2)
        ):
            time.sleep(0.05)
        assert [p.name for p in client.get_all_connections(port)] == ["comeback:in_1"]
        assert [p.name for p in client.get_all_connections(port_2)] == ["comeback:in_2"]
        client.deactivate()
        client.close()
        time.sleep(0.5)
        client = tester()  # the ports come back
        port = client.get_port_by_name("deepafx-rt:out_1")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not client.get_all_connections(port):
            time.sleep(0.05)
        assert [p.name for p in client.get_all_connections(port)] == ["comeback:in_1"]
    finally:
        report = host.join()
        client.close()
    assert report.exit_code == 0


def test_an_unknown_port_name_is_a_clear_error(jack_server):
    host = HostThread(LiveOptions(chain="mastering-v1", status=False, duration=3.0, inputs=[],
                                  outputs=["nosuch:playback_1", "nosuch:playback_2"])).start()  # fmt: skip
    with pytest.raises(DeepAFxError, match="no JACK port 'nosuch:playback_1'.*ports like it"):
        host.join()
