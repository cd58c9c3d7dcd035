"""Faults around the live host, with the real parts: a killed host leaves nothing behind; a broken SysEx
eats no knob moves; a dead controller or a NaN model is reported, never played."""

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
import rtmidi

from rt_host.bundle import bundle_dir
from rt_host.live.host import LiveOptions
from rt_host.live.server import connect_when_active
from rt_host.lv2 import Chain
from tests.live_support import HostThread, dummy_server, level_steps

RATE, PERIOD = 48000, 128


@pytest.fixture(scope="module")
def jack_server():
    with dummy_server("faults", RATE, PERIOD) as server:
        yield server


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead: it only waits for a parent that will never come
    state = (
        Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if Path(f"/proc/{pid}").exists()
        else "X"
    )
    return state not in ("Z", "X")


def _port_names() -> list[str]:
    client = jack.Client("faults-probe")
    try:
        return [p.name for p in client.get_ports()]
    finally:
        client.close()


def test_sigkill_of_the_host_leaves_no_child_and_no_port(jack_server):
    """The controller, the MIDI receiver and the resource tracker exit when the host is SIGKILLed, and the
    MIDI port leaves the graph (issue 13)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "rt_host", "-q", "live", "--bundle", str(bundle_dir("mastering")), "--out"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while "deepafx-rt:out_1" not in _port_names() or len(_children(proc.pid)) < 3:
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "the host did not start"
        time.sleep(0.2)
    time.sleep(1.0)
    children = _children(proc.pid)
    assert len(children) >= 3  # controller, MIDI receiver, resource tracker
    assert "deepafx-rt-midi:midi_in" in _port_names()
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 5.0 and (any(_alive(c) for c in children) or
                                           "deepafx-rt-midi:midi_in" in _port_names()):  # fmt: skip
        time.sleep(0.1)
    assert not [c for c in children if _alive(c)], "children outlived the host"
    assert "deepafx-rt-midi:midi_in" not in _port_names()
    assert "deepafx-rt:out_1" not in _port_names()


def test_an_unterminated_sysex_eats_no_knob_moves(jack_server, tmp_path):
    """F0 01 02 without its F7, then CCs: the fragment is dropped and counted, the CCs steer."""
    map_path = tmp_path / "map.toml"
    map_path.write_text('[[cc]]\nchannel = 1\ncc = 27\nparam = "limiter.th"\n')
    out = rtmidi.MidiOut(rtapi=rtmidi.API_UNIX_JACK, name="sysex-knobs")
    out.open_virtual_port("out")
    try:
        play = tmp_path / "in.wav"
        import soundfile as sf

        sf.write(play, level_steps(RATE, 4.0, [-10.0]).T, RATE, subtype="FLOAT")
        opts = LiveOptions(chain="mastering-v1", play=play, status=False, outputs=[], midi_map=map_path,
                           smoothing_s=0.02, keep_trace=True)  # fmt: skip
        host = HostThread(opts).start()
        client = jack.Client("sysex-wiring")
        try:
            connect_when_active(client, "sysex-knobs:out", "deepafx-rt-midi:midi_in", 30)
        finally:
            client.close()
        time.sleep(0.5)
        out.send_message([0xB0, 27, 127])  # picks the knob up at th = 1.0
        out.send_message([0xF0, 0x01, 0x02])  # a SysEx cut short
        for v in range(127, -1, -16):
            out.send_message([0xB0, 27, v])
            time.sleep(0.01)
        out.send_message([0xB0, 27, 0])
        report = host.join()
    finally:
        out.close_port()
        out.delete()
    th = Chain.load("mastering-v1").parameter_names.index("limiter.th")
    assert report.midi["sysex_fragments_dropped"] == 1
    assert report.midi["applied"] >= 9
    assert np.min(report.trace[:, th]) == pytest.approx(0.0, abs=1e-3)  # the knob's moves all arrived


from tests.test_bad_input import nan_bundle  # noqa: E402, F401  (a fixture: a bundle that predicts NaN on sound)


def test_a_model_that_predicts_nan_is_reported_never_played(jack_server, nan_bundle, tmp_path):  # noqa: F811
    import soundfile as sf

    src = tmp_path / "loud.wav"
    sf.write(src, level_steps(RATE, 3.0, [-10.0]).T, RATE, subtype="FLOAT")
    proc = subprocess.run(
        [sys.executable, "-m", "rt_host", "live", "--bundle", str(nan_bundle), "--play", str(src), "--out",
         "--no-midi", "--stats-json", str(tmp_path / "s.json")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    import json

    stats = json.loads((tmp_path / "s.json").read_text())
    dropped = stats["dropped_predictions"]
    assert dropped >= 4 and stats["nonfinite_out"] == 0
    assert stats["steering"]["applied"] <= 3  # finite only on the silent windows after the file's end
    assert f"the model predicted NaN/Inf {dropped} time(s)" in proc.stderr
    assert f"{dropped} dropped (NaN/Inf)" in proc.stdout
