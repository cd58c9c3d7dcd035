"""MIDI control of the live host through real rtmidi ports on a dummy jackd."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import jack
import numpy as np
import pytest
import rtmidi
import soundfile as sf

from rt_host.live.host import LiveOptions
from rt_host.live.midi import MidiError, MidiMap
from rt_host.live.server import connect_when_active
from rt_host.lv2 import Chain
from tests.live_support import HostThread, dummy_server, level_steps

RATE, PERIOD = 48000, 128
CONTROL_INTERVAL = 512  # frames; see rt_host.steer.kernel


@pytest.fixture(scope="module")
def jack_server():
    with dummy_server("midi", RATE, PERIOD) as server:
        yield server


@pytest.fixture
def controller(jack_server):
    """A virtual MIDI output, as a hardware controller would appear."""
    out = rtmidi.MidiOut(rtapi=rtmidi.API_UNIX_JACK, name="knobs")
    out.open_virtual_port("out")
    yield out
    out.close_port()
    out.delete()


def connect_when_ready(src: str, dst: str) -> None:
    client = jack.Client("midi-wiring")
    try:
        connect_when_active(client, src, dst, timeout=30.0)
    finally:
        client.close()


def write_map(path: Path, body: str) -> Path:
    path.write_text(body)
    return path


LIMITER_MAP = """
[release]
cc = 64
channel = 1

[[cc]]
channel = 1
cc = 27
param = "limiter.th"
"""


def loud_file(tmp_path: Path, seconds: float) -> Path:
    x = level_steps(RATE, seconds, [-6.0])
    path = tmp_path / "loud.wav"
    sf.write(path, x.T, RATE, subtype="FLOAT")
    return path


def test_cc_takes_a_parameter_and_release_gives_it_back(controller, tmp_path):
    midi_map = write_map(tmp_path / "map.toml", LIMITER_MAP)
    rec = tmp_path / "rec.wav"
    seconds = 6.0
    opts = LiveOptions(chain="mastering-v1", play=loud_file(tmp_path, seconds), record=rec, status=False,
                       outputs=[], midi_map=midi_map, smoothing_s=0.05,
                       keep_trace=True)  # fmt: skip
    host = HostThread(opts).start()
    connect_when_ready("knobs:out", "deepafx-rt-midi:midi_in")
    time.sleep(1.0)
    t_move = time.monotonic()
    controller.send_message([0xB0, 27, 127])  # the knob meets the current value (th = 1.0): picked up
    for v in range(127, -1, -8):
        controller.send_message([0xB0, 27, v])
        time.sleep(0.01)
    controller.send_message([0xB0, 27, 0])  # th → 0.25 (−12 dBFS)
    controller.send_message([0xB0, 99, 10])  # unmapped: ignored and counted
    controller.send_message([0x90, 61, 100])  # a note nobody mapped
    time.sleep(1.5)
    t_release = time.monotonic()
    controller.send_message([0xB0, 64, 127])  # hand it back to the model (here: the default, 1.0)
    report = host.join()
    th = Chain.load("mastering-v1").parameter_names.index("limiter.th")
    trace = report.trace[:, th]
    blocks_per_s = RATE / PERIOD
    started = report.seconds - (time.monotonic() - t_move)  # how far into the run the move began

    y, _ = sf.read(rec, dtype="float32", always_2d=True)
    moved = int((started + 0.6) * RATE), int((started + 1.5) * RATE)
    assert trace[0] == pytest.approx(1.0)
    assert np.min(trace) == pytest.approx(0.0, abs=1e-3)  # the person took it to the knob's end
    assert np.max(np.abs(y[moved[0] : moved[1]])) <= 0.25 * 1.05  # and the audio shows it
    assert np.max(np.abs(y[: int(0.5 * RATE)])) > 0.5
    back = int((started + (t_release - t_move) + 1.0) * blocks_per_s)
    assert trace[min(back, len(trace) - 1)] == pytest.approx(1.0, abs=1e-3)  # glided back to the model
    assert report.midi["ignored"] >= 2, report.midi
    assert report.midi["dropped"] == 0
    # arrival → port write: one period plus the control interval, plus scheduling slack
    lat_ms = report.midi_latency_us / 1e3
    assert len(lat_ms) > 5
    assert np.median(lat_ms) <= 1e3 * (PERIOD + CONTROL_INTERVAL) / RATE + 5.0


def test_soft_takeover_waits_for_the_knob(controller, tmp_path):
    midi_map = write_map(tmp_path / "map.toml", LIMITER_MAP)
    opts = LiveOptions(chain="mastering-v1", status=False, duration=3.0, inputs=[], outputs=[],
                       midi_map=midi_map, keep_trace=True)  # fmt: skip
    host = HostThread(opts).start()
    connect_when_ready("knobs:out", "deepafx-rt-midi:midi_in")
    time.sleep(0.5)
    controller.send_message([0xB0, 27, 0])  # far from th = 1.0: must not jump
    time.sleep(0.5)
    report = host.join()
    th = Chain.load("mastering-v1").parameter_names.index("limiter.th")
    assert np.all(report.trace[:, th] == pytest.approx(1.0))
    assert report.midi["received"] >= 1


def test_learn_binds_the_next_cc_and_saves_the_map(controller, tmp_path):
    map_path = tmp_path / "learned.toml"
    opts = LiveOptions(chain="mastering-v1", status=False, duration=3.0, inputs=[], outputs=[],
                       midi_map=map_path, midi_learn="limiter.rt")  # fmt: skip
    host = HostThread(opts).start()
    connect_when_ready("knobs:out", "deepafx-rt-midi:midi_in")
    time.sleep(0.5)
    controller.send_message([0xB3, 30, 64])  # channel 4, CC 30
    report = host.join()
    assert report.exit_code == 0
    learned = MidiMap.load(map_path, Chain.load("mastering-v1").parameter_names)
    assert [(m.channel, m.cc, m.param) for m in learned.mappings] == [(4, 30, "limiter.rt")]


def test_unknown_midi_port_lists_the_available_ones(controller, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "rt_host", "live", "--chain", "mastering-v1",
                           "--midi-in", "no-such-controller"], capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert "no-such-controller" in last and "available:" in last and "knobs:out" in last


def test_bad_map_file_names_the_line(tmp_path):
    names = Chain.load("mastering-v1").parameter_names
    first = '[[cc]]\nchannel = 1\ncc = 21\nparam = "mbc.threshold0"\n\n'
    bad = write_map(tmp_path / "bad.toml", first + '[[cc]]\nchannel = 1\ncc = 22\nparam = "limiter.thx"\n')
    with pytest.raises(MidiError, match=r"line 6: 'limiter.thx' is not a predicted parameter.*limiter.th"):
        MidiMap.load(bad, names)
    syntax = write_map(tmp_path / "syntax.toml", "[[cc]]\nchannel = 1\ncc = = 3\n")
    with pytest.raises(MidiError, match="line 3"):
        MidiMap.load(syntax, names)
    one = '[[cc]]\nchannel = 1\ncc = 21\nparam = "limiter.th"\n'
    twice = write_map(tmp_path / "twice.toml", one + one.replace("limiter.th", "limiter.rt"))
    with pytest.raises(MidiError, match="line 5: channel 1 CC 21 is already mapped"):
        MidiMap.load(twice, names)
    rng = write_map(tmp_path / "range.toml", '[[cc]]\nchannel = 17\ncc = 21\nparam = "limiter.th"\n')
    with pytest.raises(MidiError, match="line 1: channel must be a whole number from 1 to 16"):
        MidiMap.load(rng, names)


def test_the_shipped_map_loads():
    from rt_host.lv2.spec import builtin_chain_dir

    for chain in ("mastering", "mastering-v1"):
        m = MidiMap.load(builtin_chain_dir() / f"{chain}.midi.toml", Chain.load(chain).parameter_names)
        assert len(m.mappings) == 9 and m.release_cc == 64
        assert [x.param for x in m.mappings if x.cc == 20] == ["amount"]  # the amount knob
