"""The deepafx-rt command line, through real plugins and real files.

Every bad input must end in one clear line and a non-zero exit, never a
traceback, and must not destroy anything.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from rt_host.cli import main
from rt_host.signals import pink_noise, sine

ROOT = Path(__file__).resolve().parents[1]


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def write(path: Path, audio: np.ndarray, rate: int, subtype: str = "FLOAT") -> Path:
    sf.write(path, audio.T, rate, subtype=subtype)
    return path


@pytest.fixture
def stereo_wav(tmp_path: Path) -> Path:
    return write(tmp_path / "in.wav", pink_noise(3.0, 44100, -14.0, channels=2), 44100)


def one_error_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.startswith("deepafx-rt: error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


# --- plugins ------------------------------------------------------------------
def test_plugins_lists_installed_plugins(capsys):
    code, out, _ = run_cli(capsys, "plugins")
    assert code == 0
    assert "http://lsp-plug.in/plugins/lv2/limiter_stereo" in out
    assert len(out.splitlines()) > 100


def test_plugins_describes_one_by_name(capsys):
    code, out, _ = run_cli(capsys, "plugins", "lsp limiter stereo")
    assert code == 0
    assert "out_latency" in out and "latency:   port 'out_latency'" in out
    assert "th " in out and "(log)" in out


def test_plugins_unknown_name_names_close_matches(capsys):
    code, _, err = run_cli(capsys, "plugins", "LSP Limitr Stereo")
    assert code == 2
    assert "LSP Limiter Stereo" in one_error_line(err)


def test_plugins_ambiguous_query_lists_candidates(capsys):
    code, out, _ = run_cli(capsys, "plugins", "limiter mono")
    assert code == 0
    assert "LSP Limiter Mono" in out and "plugins match" in out


# --- render: the happy paths --------------------------------------------------
def test_render_mastering_writes_finite_audio_at_the_input_rate(capsys, tmp_path, stereo_wav):
    out = tmp_path / "out.flac"
    code, text, _ = run_cli(capsys, "render", stereo_wav, out, "--chain", "mastering-v1",
                            "--set", "limiter.th=0.5")  # fmt: skip
    assert code == 0, text
    y, rate = sf.read(out, always_2d=True)
    assert rate == 44100 and y.shape == (3 * 44100, 2)
    assert np.all(np.isfinite(y))
    assert np.max(np.abs(y[4410:])) <= 0.5 * 1.05  # the limiter threshold we set
    assert "latency 220 samples compensated" in text


def test_render_resamples_to_the_chain_rate_and_back(capsys, tmp_path):
    src = write(tmp_path / "in48.wav", sine(1000, 2.0, 48000, -12.0, channels=2), 48000)
    out = tmp_path / "out.wav"
    code, _, err = run_cli(capsys, "render", src, out, "--chain", "mastering-v1")
    assert code == 0, err
    assert "resampling" in err
    info = sf.info(out)
    assert info.samplerate == 48000 and abs(info.frames - 96000) <= 2


def test_render_params_toml_and_csv_automation(capsys, tmp_path, stereo_wav):
    params = tmp_path / "p.toml"
    params.write_text('"limiter.th" = 0.3\n')
    out = tmp_path / "a.wav"
    assert run_cli(capsys, "render", stereo_wav, out, "--chain", "mastering-v1", "--params", params)[0] == 0
    y, _ = sf.read(out)
    assert np.max(np.abs(y[4410:])) <= 0.3 * 1.05

    auto = tmp_path / "auto.csv"
    auto.write_text("time,limiter.th\n0,1.0\n1.5,0.25\n")
    out2 = tmp_path / "b.wav"
    assert run_cli(capsys, "render", stereo_wav, out2, "--chain", "mastering-v1", "--params", auto)[0] == 0
    y2, _ = sf.read(out2)
    first, second = np.max(np.abs(y2[4410:60000])), np.max(np.abs(y2[72000:]))
    assert second <= 0.25 * 1.05 < first


def test_render_mono_chain_needs_explicit_downmix(capsys, tmp_path):
    src = write(tmp_path / "st.wav", pink_noise(1.0, 22050, -20.0, channels=2), 22050)
    out = tmp_path / "o.wav"
    code, _, err = run_cli(capsys, "render", src, out, "--chain", "nonspeech")
    assert code == 2 and "--map-channels" in one_error_line(err)
    assert not out.exists()
    code, _, _ = run_cli(capsys, "render", src, out, "--chain", "nonspeech", "--map-channels", "mix")
    assert code == 0 and sf.info(out).channels == 1


# --- render: every bad input ends in one line ---------------------------------
def test_unknown_port_symbol(capsys, tmp_path, stereo_wav):
    code, _, err = run_cli(capsys, "render", stereo_wav, tmp_path / "o.wav", "--chain", "mastering-v1",
                           "--set", "limiter.thx=0.5")  # fmt: skip
    assert code == 2 and "did you mean th" in one_error_line(err)


def test_value_outside_range_is_clamped_with_a_warning(capsys, tmp_path, stereo_wav):
    code, _, err = run_cli(capsys, "render", stereo_wav, tmp_path / "o.wav", "--chain", "mastering-v1",
                           "--set", "limiter.th=5")  # fmt: skip
    assert code == 0
    assert "warning: limiter.th = 5 is outside" in err and "clamped to 1" in err


def test_unknown_plugin_in_a_chain_file(capsys, tmp_path, stereo_wav):
    chain = tmp_path / "bad.toml"
    chain.write_text('name = "bad"\n[[stage]]\nname = "x"\nplugin = "LSP Limitr Stereo"\n')
    code, _, err = run_cli(capsys, "render", stereo_wav, tmp_path / "o.wav", "--chain", chain)
    assert code == 2 and "close matches: LSP Limiter Stereo" in one_error_line(err)


def test_plugin_needing_a_missing_feature_is_named(capsys, tmp_path, stereo_wav):
    chain = tmp_path / "conv.toml"
    chain.write_text(
        'name = "conv"\n[[stage]]\nname = "c"\nplugin = "http://gareus.org/oss/lv2/convoLV2#Stereo"\n'
    )
    code, _, err = run_cli(capsys, "render", stereo_wav, tmp_path / "o.wav", "--chain", chain)
    assert code == 2 and "worker#schedule" in one_error_line(err)


def test_corrupt_audio_file(capsys, tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk" * 10)
    code, _, err = run_cli(capsys, "render", bad, tmp_path / "o.wav", "--chain", "mastering-v1")
    assert code == 2 and "cannot read" in one_error_line(err)


def test_missing_input_file(capsys, tmp_path):
    code, _, err = run_cli(
        capsys, "render", tmp_path / "nope.wav", tmp_path / "o.wav", "--chain", "mastering-v1"
    )
    assert code == 2 and "does not exist" in one_error_line(err)


def test_nan_and_inf_are_replaced_counted_and_never_output(capsys, tmp_path):
    x = pink_noise(1.0, 44100, -20.0, channels=2)
    x[0, 1000:1010] = np.nan
    x[1, 2000] = np.inf
    src = write(tmp_path / "nan.wav", x, 44100)
    out = tmp_path / "o.wav"
    code, _, err = run_cli(capsys, "render", src, out, "--chain", "mastering-v1")
    assert code == 0
    assert "replaced 11 non-finite sample(s)" in err
    assert np.all(np.isfinite(sf.read(out)[0]))


def test_unwritable_output_fails_before_any_work(capsys, tmp_path, stereo_wav):
    before = stereo_wav.read_bytes()
    code, _, err = run_cli(capsys, "render", stereo_wav, tmp_path / "no" / "such" / "o.wav",
                           "--chain", "mastering-v1")  # fmt: skip
    assert code == 2 and "does not exist" in one_error_line(err)
    code, _, err = run_cli(capsys, "render", stereo_wav, stereo_wav, "--chain", "mastering-v1")
    assert code == 2 and "refusing to overwrite the input" in one_error_line(err)
    code, _, err = run_cli(capsys, "render", stereo_wav, tmp_path / "o.xyz", "--chain", "mastering-v1")
    assert code == 2 and "extension" in one_error_line(err)
    assert stereo_wav.read_bytes() == before


def test_unknown_chain_lists_available(capsys, tmp_path, stereo_wav):
    code, _, err = run_cli(capsys, "render", stereo_wav, tmp_path / "o.wav", "--chain", "mastring")
    listed = (
        "available: distortion, distortion-reference, distortion-v1, mastering, mastering-v1, nonspeech, "
        "nonspeech-v1"
    )
    assert code == 2 and listed in one_error_line(err)


def test_bad_set_syntax(capsys, tmp_path, stereo_wav):
    code, _, err = run_cli(capsys, "render", stereo_wav, tmp_path / "o.wav", "--chain", "mastering-v1",
                           "--set", "limiter.th")  # fmt: skip
    assert code == 2 and "STAGE.SYMBOL=VALUE" in one_error_line(err)


# --- the installed console script -------------------------------------------
def test_console_script_exit_code_and_no_traceback(tmp_path):
    exe = shutil.which("deepafx-rt", path=str(Path(sys.executable).parent))
    assert exe, "deepafx-rt console script is not installed in this environment"
    proc = subprocess.run([exe, "render", str(tmp_path / "x.wav"), str(tmp_path / "y.wav"),
                           "--chain", "mastering-v1"], capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("deepafx-rt: error:") and "Traceback" not in proc.stderr


def test_demo_runs_live_on_its_own_dummy_server(tmp_path, monkeypatch):
    """The README's main command: jackd is started (under a private name), the
    example is played through the chain live, and the results are written."""
    from tests.live_support import unique_server_name

    monkeypatch.setenv("JACK_DEFAULT_SERVER", unique_server_name("demo"))
    proc = subprocess.run([sys.executable, "-m", "rt_host", "demo", "--out", str(tmp_path),
                           "--seconds", "4"], capture_output=True, text=True, timeout=180)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "started jackd -d dummy" in proc.stdout and "played example-unmastered.wav" in proc.stdout
    for name in ("example-unmastered.wav", "example-live-mastered.wav", "automation.png",
                 "automation.csv", "spectra.png"):  # fmt: skip
        assert (tmp_path / name).stat().st_size > 1000, name
    assert sf.info(tmp_path / "example-live-mastered.wav").duration > 4.0
