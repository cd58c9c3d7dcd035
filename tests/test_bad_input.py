"""Bad input and faults (issue 13): no hangs, no tracebacks, no orphans, nothing lost.

Each case runs the real command line in a child process (``python -m rt_host.cli``)
or real processes, through real plugins: a bad value or file must end in one
line ``deepafx-rt: error: …`` and exit 2 within seconds (or one warning line
where the input is usable), and must not destroy anything.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from rt_host.signals import pink_noise
from tests.test_cli import one_error_line, write

ROOT = Path(__file__).resolve().parents[1]
RATE = 44100
FAST_S = 30.0  # "within seconds": a start-up is ~1 s; the margin is for a busy two-core machine
N_MASTERING = 53  # predicted parameters of chains/mastering.toml


def cli(*args, umask: int | None = None, env: dict | None = None, cwd: Path | None = None):
    """Run ``deepafx-rt ARGS`` as a new process; ``(exit code, stdout, stderr, seconds)``."""
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "rt_host.cli", *map(str, args)],
        capture_output=True, text=True, timeout=120, cwd=cwd or ROOT, umask=-1 if umask is None else umask,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )  # fmt: skip
    return proc.returncode, proc.stdout, proc.stderr, time.monotonic() - start


def bad(*args, **kw) -> str:
    """Run a bad case: exit 2, fast, no traceback; its one error line."""
    code, _out, err, seconds = cli(*args, **kw)
    assert code == 2, err
    assert seconds < FAST_S, f"took {seconds:.1f} s"
    return one_error_line(err)


def warning_lines(err: str) -> list[str]:
    assert "Traceback" not in err
    return [line for line in err.splitlines() if line.startswith("deepafx-rt: warning:")]


@pytest.fixture(scope="module")
def wav(tmp_path_factory) -> Path:
    return write(tmp_path_factory.mktemp("in") / "in.wav", pink_noise(3.0, RATE, -14.0, channels=2), RATE)


def params_file(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def render(wav: Path, out: Path, *extra):
    return ("render", wav, out, "--chain", "mastering-v1", *extra)


# --- 1. NaN/Inf control values: an error at the one check, never a hang ----------------------
@pytest.mark.parametrize("item", ["limiter.th=nan", "limiter.rt=nan", "mbc.threshold0=inf", "geq.g_5=-inf"])
def test_nan_or_inf_from_set_is_an_error_not_a_hang(tmp_path, wav, item):
    out = tmp_path / "o.wav"
    name, value = item.split("=")
    line = bad(*render(wav, out, "--set", item))
    assert line == f"deepafx-rt: error: --set {name} = {float(value)}: expected a finite number"
    assert not out.exists()


def test_nan_in_a_params_toml(tmp_path, wav):
    p = params_file(tmp_path, "p.toml", '"limiter.th" = nan\n')
    assert bad(*render(wav, tmp_path / "o.wav", "--params", p)).endswith(
        "p.toml: limiter.th = nan: expected a finite number"
    )


def test_nan_in_a_params_json(tmp_path, wav):
    p = params_file(tmp_path, "p.json", '{"mbc.threshold0": NaN}\n')
    assert bad(*render(wav, tmp_path / "o.wav", "--params", p)).endswith(
        "p.json: mbc.threshold0 = nan: expected a finite number"
    )


def test_nan_cell_in_an_automation_csv(tmp_path, wav):
    p = params_file(tmp_path, "a.csv", "time,limiter.th\n0,1.0\n1.5,nan\n")
    assert bad(*render(wav, tmp_path / "o.wav", "--params", p)).endswith(
        "a.csv, line 3: limiter.th = nan: expected a finite number"
    )


def test_nan_in_normalized(tmp_path, wav):
    values = ", ".join(["0.5"] * 3 + ["nan"] + ["0.5"] * (N_MASTERING - 4))
    p = params_file(tmp_path, "n.toml", f"normalized = [{values}]\n")
    line = bad(*render(wav, tmp_path / "o.wav", "--params", p))
    assert line.endswith("n.toml: normalized[3] (mbc.knee0) = nan: expected a finite number")


def test_the_chain_refuses_nan_itself(world):
    """The one check is in Chain.set (every entry point reaches it), not only in the CLI."""
    from rt_host.errors import ChainError
    from rt_host.lv2 import Chain

    chain = Chain.load("mastering-v1", world)
    for name in ("limiter.th", "limiter.lk"):  # a predicted and a fixed port
        with pytest.raises(ChainError, match=f"{name} = nan: expected a finite number"):
            chain.set(name, float("nan"))
    with pytest.raises(ChainError, match="expected a number"):
        chain.set("limiter.th", "0.5")
    assert chain.values["limiter.th"] == pytest.approx(1.0)  # nothing was set


@pytest.mark.parametrize(
    "entry, message",
    [
        ("offset_range = nan", "offset_range = nan: expected a finite number"),
        ("offset_range = inf", "offset_range = inf: expected a finite number"),
        ("min = -inf", "min = -inf: expected a finite number"),
        ("max = nan", "max = nan: expected a finite number"),
        ('max = "high"', "max = 'high': expected a number"),
        ("offset_range = 0", "offset_range must be above 0 and at most 1"),
    ],
)
def test_non_finite_numbers_in_a_midi_map(tmp_path, entry, message):
    from rt_host.live.midi import MidiError, MidiMap
    from rt_host.lv2.spec import ChainSpec

    names = [f"{s.name}.{p.symbol}" for s in ChainSpec.load("mastering-v1").stages for p in s.predict]
    body = f'[[cc]]\nchannel = 1\ncc = 21\nparam = "limiter.th"\nmode = "offset"\n{entry}\n'
    path = params_file(tmp_path, "map.toml", body)
    with pytest.raises(MidiError, match=rf"map.toml, line 1: {message}"):
        MidiMap.load(path, names)


@pytest.mark.parametrize(
    "stage, message",
    [
        ("fixed = { lk = nan }", "'fixed' must map port symbols to finite numbers"),
        ("[stage.predict]\nth = { min = inf }", "expected a finite number, got inf"),
        ("[stage.predict]\nth = { max = nan }", "expected a finite number, got nan"),
    ],
)
def test_non_finite_numbers_in_a_chain_file(tmp_path, wav, stage, message):
    chain = params_file(
        tmp_path, "c.toml",
        f'name = "c"\n[[stage]]\nname = "limiter"\nplugin = "LSP Limiter Stereo"\n{stage}\n',
    )  # fmt: skip
    assert message in bad("render", wav, tmp_path / "o.wav", "--chain", chain)


# --- 3. output paths: tried for real, before any work ----------------------------------------
@pytest.fixture
def nan_params(tmp_path) -> Path:
    """A bad parameter file: read after the output check, before the render. An error about the
    output rather than about this file proves the output was refused before any work."""
    return params_file(tmp_path, "nan.toml", '"limiter.th" = nan\n')


def test_an_output_where_no_file_can_be_created_fails_before_rendering(wav, nan_params):
    line = bad(*render(wav, "/proc/x.wav", "--params", nan_params))
    # the up-front check's words (write_audio after a render would say "cannot write …: <reason>")
    assert line.startswith("deepafx-rt: error: cannot write /proc/x.wav: cannot create a file in /proc")


def test_an_output_that_is_a_folder_is_refused_before_rendering(tmp_path, wav, nan_params):
    folder = tmp_path / "x.wav"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    line = bad(*render(wav, folder, "--params", nan_params))
    assert line.endswith(f"cannot write {folder}: it is a folder")
    assert (folder / "keep.txt").read_text() == "mine"


@pytest.fixture(scope="module")
def nan_bundle(tmp_path_factory) -> Path:
    """A bundle that passes the load check (finite on silence) but predicts NaN on any real audio:
    ``sigmoid(b + sqrt(−mean(x²)))`` — the square root of a negative number is NaN."""
    import onnx
    from onnx import TensorProto, helper

    from rt_host.bundle import write_level_follower_bundle
    from rt_host.lv2.spec import ChainSpec

    path = write_level_follower_bundle(
        tmp_path_factory.mktemp("nan") / "bundle", ChainSpec.load("mastering-v1")
    )
    n, window = N_MASTERING, 8192
    graph = helper.make_graph(
        [
            helper.make_node("Mul", ["audio", "audio"], ["sq"]),
            helper.make_node("ReduceMean", ["sq"], ["ms"], axes=[1], keepdims=1),
            helper.make_node("Neg", ["ms"], ["neg"]),
            helper.make_node("Sqrt", ["neg"], ["root"]),  # −0 on silence, NaN on sound
            helper.make_node("Add", ["root", "b"], ["logits"]),
            helper.make_node("Sigmoid", ["logits"], ["params"]),
        ],
        "nan_on_sound",
        [helper.make_tensor_value_info("audio", TensorProto.FLOAT, ["batch", window])],
        [helper.make_tensor_value_info("params", TensorProto.FLOAT, ["batch", n])],
        initializer=[helper.make_tensor("b", TensorProto.FLOAT, [1, n], [0.0] * n)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path / "encoder.onnx"))
    return path


def test_plot_or_params_log_equal_to_the_output_is_refused_as_the_output(tmp_path, wav, nan_bundle):
    out = tmp_path / "o.wav"
    for flag in ("--plot", "--params-log"):
        line = bad("render", wav, out, "--bundle", nan_bundle, flag, out)
        assert line.endswith(f"{out} is already another output of this run; give each output its own file")
        assert not out.exists()


def test_write_audio_fails_in_one_line_never_a_traceback(tmp_path):
    from rt_host.audio import write_audio
    from rt_host.errors import AudioFileError

    x = np.zeros((1, 100), np.float32)
    for path, why in ((Path("/proc/x.wav"), "No such file or directory"), (tmp_path, "it is a folder"),
                      (tmp_path / "gone" / "x.wav", "No such file or directory")):  # fmt: skip
        with pytest.raises(AudioFileError, match=f"cannot write {path}: {why}$"):
            write_audio(path, x, RATE)
    assert list(tmp_path.iterdir()) == []  # no temporary file left behind


# --- 4. one line instead of a traceback --------------------------------------------------------
@pytest.mark.parametrize(
    "name, text, message",
    [
        ("s.toml", '"limiter.th" = "abc"\n', "s.toml: limiter.th = 'abc': expected a number"),
        ("l.json", "[1, 2]\n", 'l.json: expected an object of "stage.symbol": value pairs'),
        ("n.toml", 'normalized = "abc"\n', f"n.toml: 'normalized' must be a list of {N_MASTERING} numbers"),
        ("short.csv", "time,limiter.th\n0,0.5\n1\n", "short.csv, line 3: 1 cell(s); the header names 2"),
        ("extra.csv", "time,limiter.th\n0,0.5,7\n", "extra.csv, line 2: 3 cell(s); the header names 2"),
        ("inf.csv", "time,limiter.th\ninf,0.5\n", "inf.csv, line 2: time = inf: expected a finite number"),
        ("nan.csv", "time,limiter.th\nnan,0.5\n", "nan.csv, line 2: time = nan: expected a finite number"),
        ("word.csv", "time,limiter.th\n0,high\n", "word.csv, line 2: limiter.th = 'high' is not a number"),
    ],
)
def test_malformed_params_files(tmp_path, wav, name, text, message):
    p = params_file(tmp_path, name, text)
    assert message in bad(*render(wav, tmp_path / "o.wav", "--params", p))


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--smoothing", "nan", "--smoothing must be a finite number of seconds ≥ 0, not nan"),
        ("--smoothing", "-1", "--smoothing must be a finite number of seconds ≥ 0, not -1"),
        ("--delay", "inf", "--delay must be a finite number of seconds ≥ 0, not inf"),
        ("--delay", "0.1", "--delay 0.1: a prediction delay of 0.1 s is not shorter than the hop (0.0928"),
    ],
)
def test_bad_model_timing_options(tmp_path, wav, nan_bundle, flag, value, message):
    """NaN smoothing used to glide every port to the bottom of its range; a delay longer than the
    model's hop (this bundle's 2048 samples at 22,050 Hz is shorter than the default 0.1 s) raised
    a ValueError traceback."""
    assert message in bad("render", wav, tmp_path / "o.wav", "--bundle", nan_bundle, flag, value)


def test_midi_ports_without_a_jack_server(tmp_path):
    # a server name nobody runs, and libjack told not to start one (this test never starts JACK)
    env = {"JACK_DEFAULT_SERVER": "deepafx-test-no-server", "JACK_NO_START_SERVER": "1"}
    code, out, err, seconds = cli("midi", "ports", env=env)
    assert code == 2 and seconds < FAST_S
    assert err.strip().splitlines() == [
        "deepafx-rt: error: no JACK server is running, and without ALSA (/dev/snd/seq) MIDI sources are "
        "JACK MIDI ports: start JACK (e.g. jackd -d alsa, or qjackctl) and list again"
    ]  # libjack's own chatter is silenced too


# --- 5. written files follow the umask ---------------------------------------------------------
@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600)])
def test_written_files_follow_the_umask(tmp_path, wav, umask, mode):
    out = tmp_path / "o.wav"
    code, _, err, _ = cli(*render(wav, out), umask=umask)
    assert code == 0, err
    assert out.stat().st_mode & 0o777 == mode


def test_an_overwritten_file_keeps_its_mode(tmp_path, wav):
    out = tmp_path / "o.wav"
    out.write_bytes(b"old")
    out.chmod(0o644)
    code, _, err, _ = cli(*render(wav, out), umask=0o077)
    assert code == 0, err
    assert out.stat().st_mode & 0o777 == 0o644  # as `>` or cp onto it would leave it
    assert sf.info(out).frames == 3 * RATE


# --- 6. silent degradation: every loss is said ------------------------------------------------
def test_a_truncated_wav_warns(tmp_path, wav):
    full = write(tmp_path / "full.wav", pink_noise(3.0, RATE, -14.0, channels=2), RATE, "PCM_16")
    data = full.read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[: len(data) // 3])
    out = tmp_path / "o.wav"
    code, _, err, _ = cli(*render(cut, out))
    assert code == 0
    (line,) = warning_lines(err)
    assert line.startswith("deepafx-rt: warning: cut.wav is truncated: its header promises 529236 bytes")
    assert "(33 %); using the 1.00 s that are there" in line
    code, _, err, _ = cli(*render(full, out))  # the whole file: no warning
    assert code == 0 and warning_lines(err) == []


def test_a_model_predicting_nan_is_reported_with_the_count(tmp_path, wav, nan_bundle):
    out = tmp_path / "o.wav"
    code, text, err, _ = cli("render", wav, out, "--bundle", nan_bundle, "--delay", "0.05")  # hop 0.093 s
    assert code == 0, err
    (line,) = warning_lines(err)
    k = int(line.split("NaN/Inf ")[1].split(" of ")[0])
    assert k == 3 * 22050 // 2048  # a prediction every 2048 samples at 22,050 Hz over 3 s: 32, all NaN
    assert line == (f"deepafx-rt: warning: the model predicted NaN/Inf {k} of {k} time(s); those "
                    "predictions were dropped and the parameters held")  # fmt: skip
    assert f"predicted {k} times (median" in text and f"{k} of them NaN/Inf and dropped" in text
    assert np.isfinite(sf.read(out)[0]).all()


def test_a_file_shorter_than_one_hop_warns_that_the_model_never_ran(tmp_path):
    short = write(tmp_path / "short.wav", pink_noise(0.1, RATE, -14.0, channels=2), RATE)
    code, _, err, _ = cli("render", short, tmp_path / "o.wav", "--task", "mastering")
    assert code == 0
    assert warning_lines(err) == [
        "deepafx-rt: warning: the file (0.10 s) is shorter than one hop of the model (0.50 s): it never "
        "ran; the chain played its default parameters"
    ]


# --- 7. MIDI: a SysEx fragment does not eat the messages after it -------------------------------
def test_parse_midi_ends_a_sysex_at_the_next_status_byte():
    from rt_host.live.midi import CHANNEL, FRAGMENT, OTHER, SYSEX, parse_midi

    assert parse_midi([0xF0, 0x01, 0x02]) == [(FRAGMENT, 0xF0, 0, 0)]
    assert parse_midi([0xF0, 0x7E, 0xF8, 0x01, 0xF7]) == [(SYSEX, 0xF0, 0, 0)]  # clock inside: fine
    # what rtmidi hands over when it glued CCs onto an unterminated SysEx (JACK, SysEx not ignored)
    glued = [0xF0, 0x01, 0x02, 0xB0, 21, 64, 0xB0, 21, 65, 0xF7]
    assert parse_midi(glued) == [(FRAGMENT, 0xF0, 0, 0), (CHANNEL, 0xB0, 21, 64), (CHANNEL, 0xB0, 21, 65),
                                 (OTHER, 0xF7, 0, 0)]  # fmt: skip
    assert parse_midi([0xB0, 21, 1, 22, 2]) == [(CHANNEL, 0xB0, 21, 1), (CHANNEL, 0xB0, 22, 2)]  # running
    assert parse_midi([0xB0, 21]) == [(OTHER, 0xB0, 0, 0)]  # cut short
    assert parse_midi([0xC2, 5]) == [(CHANNEL, 0xC2, 5, 0)]  # program change: one data byte
    assert parse_midi([]) == []


def test_the_receiver_applies_the_ccs_after_an_unterminated_sysex(world):
    from rt_host.live import shared
    from rt_host.live.midi import Mapping, MidiMap, Receiver, compile_map
    from rt_host.lv2 import Chain

    chain = Chain.load("mastering-v1", world)
    state = shared.SharedState.local(shared.Layout(capture_frames=1024, n_params=chain.n_params))
    midi_map = MidiMap(mappings=[Mapping(channel=1, cc=21, param="limiter.th", mode="offset")])
    receiver = Receiver(state, compile_map(midi_map, chain), midi_map, None, chain)
    events = [[0xF0, 0x01, 0x02], [0xB0, 21, 127], [0xB0, 21, 0], [0xF0, 0x7E, 0xF7], [0xB0, 21, 64]]
    for e in events:
        receiver((e, 0.0))
    h = state.header
    written = int(h[shared.EVENTS_WRITTEN + shared.MIDI])
    assert written == 3  # every knob move after the fragment arrived
    assert list(state.event_param[shared.MIDI, :3]) == [chain.parameter_names.index("limiter.th")] * 3
    assert state.event_value[shared.MIDI, :3] == pytest.approx([0.25, -0.25, 0.25 * (2 * 64 / 127 - 1)])
    assert int(h[shared.MIDI_SYSEX_DROPPED]) == 1  # the fragment, counted
    assert int(h[shared.MIDI_IGNORED]) == 1  # the complete SysEx
    assert int(h[shared.MIDI_RECEIVED]) == 5


# --- 8. SPSA worker restarts are logged and recorded ---------------------------------------------
@pytest.fixture(scope="module")
def render_settings():
    from training.spsa.renderer import RenderSettings

    return RenderSettings.for_chain("mastering-v1", 22050)


def test_a_killed_plugin_worker_is_logged_and_counted_in_the_history(tmp_path, render_settings, caplog):
    import keras

    from training import train as T
    from training.spsa.workers import LocalPool

    x = pink_noise(1.0, 22050, -12.0, channels=2)[np.newaxis, :, :4096].repeat(4, axis=0)
    u = np.random.default_rng(0).uniform(size=(4, N_MASTERING))
    encoder = keras.Sequential([keras.Input((8,)), keras.layers.Dense(2)])
    cfg = {"train": {"steps_per_epoch": 1, "batch": 4}}
    phase = T.Phase("all", "chain", 0, 2)
    extra = {"worker_restarts": 2}  # as a resumed run's state.json had it
    recorder = T.RunRecorder(tmp_path, phase, encoder, keras.optimizers.Adam(), cfg, extra)
    with LocalPool(render_settings, 2) as pool, caplog.at_level("WARNING", "training.spsa.workers"):
        recorder.watch(pool)
        for epoch in range(2):
            recorder.on_epoch_begin(epoch)
            if epoch == 1:
                os.kill(pool.pids[0], signal.SIGKILL)  # mid-training, between two batches
            pool.forward(x, u)
            recorder.on_epoch_end(epoch, {"loss": 1.0, "val_loss": 1.0})
    assert [r.getMessage() for r in caplog.records] == [
        "plugin worker 0 restarted (killed by SIGKILL); 1 restart(s) in this pool so far"
    ]
    rows = T.read_history(tmp_path / "history.csv")
    assert [int(r["worker_restarts"]) for r in rows] == [2, 3]
    assert json.loads((tmp_path / "state.json").read_text())["worker_restarts"] == 3


def test_an_old_history_gains_the_new_column(tmp_path):
    from training import train as T

    path = tmp_path / "history.csv"
    path.write_text("epoch,phase,step,loss,val_loss,learning_rate,seconds,s_per_step,examples_per_s\n"
                    "1,pretrain,2,0.5,,0.001,3.0,1.0,2.0\n")  # fmt: skip
    T.append_history(path, {"epoch": 2, "phase": "all", "worker_restarts": 1})
    rows = T.read_history(path)
    assert [r["epoch"] for r in rows] == ["1", "2"] and [r["worker_restarts"] for r in rows] == ["", "1"]
    assert rows[0]["loss"] == "0.5"


# --- 2. children die with their parent --------------------------------------------------------
PARENT = """
import multiprocessing as mp, sys, threading, time
from pathlib import Path

def child(marker):
    from rt_host.lifeline import die_with_parent
    die_with_parent()
    try:
        while True:
            time.sleep(0.02)
    finally:
        Path(marker).write_text("cleaned up")  # e.g. the MIDI receiver closes its JACK client

if __name__ == "__main__":
    how, marker = sys.argv[1], sys.argv[2]
    procs = []
    def start():
        p = mp.get_context("spawn").Process(target=child, args=(marker,), daemon=True)
        p.start()
        procs.append(p)
    if how == "thread":  # started from a thread that ends at once: the parent process lives on
        t = threading.Thread(target=start)
        t.start()
        t.join()
    else:
        start()
    time.sleep(1.5)
    print(procs[0].pid, procs[0].is_alive(), flush=True)
    time.sleep(600)
"""


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")  # exited (a zombie until whoever adopted it reaps it)


@pytest.mark.parametrize("how", ["main", "thread"])
def test_a_child_exits_within_seconds_when_its_parent_is_killed(tmp_path, how):
    script = params_file(tmp_path, "parent.py", PARENT)
    marker = tmp_path / "marker"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    parent = subprocess.Popen([sys.executable, str(script), how, str(marker)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env)  # fmt: skip
    try:
        timer = threading.Timer(60, parent.kill)
        timer.start()
        line = parent.stdout.readline().split()
        timer.cancel()
        child, alive = int(line[0]), line[1]
        assert alive == "True"  # the starting thread's end did not kill it (PDEATHSIG's false alarm)
        os.kill(parent.pid, signal.SIGKILL)
        killed = time.monotonic()
        while not _gone(child) and time.monotonic() - killed < 10:
            time.sleep(0.05)
        assert _gone(child), "the child outlived its parent"
        assert time.monotonic() - killed < 5.0
        assert marker.read_text() == "cleaned up"  # it left through its finally blocks
    finally:
        parent.kill()
        parent.wait()
    assert "exits: its parent" in parent.stderr.read()
