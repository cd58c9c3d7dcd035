"""The breath remover's chain (``chains/nonspeech.toml``) is transparent when open, through the plugin.

Issue 15: with nothing to remove, the chain must give speech back as it came
in, within 0.02 multi-resolution STFT distance (the Calf Multiband Gate of
``chains/nonspeech.toml`` scores 0.15 / 0.17 on the validation / test targets
fully open, worst track 0.23: its crossovers shift the phase). "Open" is the
depth port at 0 dB of reduction (the top of its predicted range); the
side-chain preamp only moves the detector, so every value of it must stay
open too. The speech is two clean excerpts: from the
built nonspeech data set's validation targets when it is there, otherwise two
spoken stamp descriptions of ``tuxpaint-stamps-default`` over a quiet pink
floor, otherwise (no package) a synthetic voiced signal with pauses. The same
check must *fail* on today's Calf chain, so the test can tell colouring apart.
"""

from __future__ import annotations

import numpy as np
import pytest

from rt_host.lv2 import Chain
from rt_host.signals import pink_noise
from training.evaluation.metrics import mrstft

RATE = 22050
SECONDS = 6.0
TRANSPARENT = 0.02  # issue 15
DEPTH = "dyna.gl1"  # the predicted depth: its maximum is 0 dB of reduction


def _from_data_set() -> list[np.ndarray] | None:
    from training.data import DataError, load_tracks, resolve_cache_dir

    try:
        tracks = load_tracks(resolve_cache_dir("nonspeech", None), "val")[:2]
    except (DataError, OSError):
        return None
    n = int(SECONDS * RATE)
    out = []
    for t in tracks:
        s = max(0, (t.target.shape[1] - n) // 2)
        out.append(np.array(t.target[:, s : s + n], dtype=np.float32))
    return out if len(out) == 2 else None


def _from_stamps() -> list[np.ndarray] | None:
    from training.data import DataError
    from training.data.nonspeech import STAMPS_ROOT, find_clips, load_clip

    try:
        clips = [p for p, lang in find_clips(STAMPS_ROOT) if lang == "en"][:2]
    except DataError:
        return None
    out = []
    for i, path in enumerate(clips):
        speech = load_clip(path, RATE).audio.astype(np.float32)
        speech *= 10 ** (-24 / 20) / (np.sqrt(np.mean(speech**2)) + 1e-12)  # about the data set's level
        pause = np.zeros(int(0.5 * RATE), dtype=np.float32)
        x = np.concatenate([pause, speech, pause])[np.newaxis, :]
        floor = pink_noise(x.shape[1] / RATE, RATE, dbfs=-66.0, seed=i)[:, : x.shape[1]]
        out.append(x + floor)
    return out if len(out) == 2 else None


def _synthetic() -> list[np.ndarray]:
    """Voiced syllables (a 110–220 Hz pulse train through two formants) between pauses, over a pink floor."""
    import scipy.signal

    out = []
    for seed in range(2):
        rng = np.random.default_rng(seed)
        n = int(SECONDS * RATE)
        t = np.arange(n) / RATE
        f0 = 150 + 40 * np.sin(2 * np.pi * 0.7 * t + seed)
        phase = np.cumsum(f0 / RATE)
        source = (np.diff(np.floor(phase), prepend=0.0) > 0).astype(np.float64)
        voiced = np.zeros(n)
        for f, q in ((rng.uniform(500, 800), 8), (rng.uniform(1200, 2200), 10)):
            b, a = scipy.signal.iirpeak(f, q, fs=RATE)
            voiced += scipy.signal.lfilter(b, a, source)
        envelope = np.clip(np.sin(2 * np.pi * 0.5 * t), 0, None) ** 0.5  # 1 s phrases, 1 s pauses
        x = voiced * envelope
        x *= 10 ** (-24 / 20) / np.sqrt(np.mean(x**2))  # about the data set's speech level
        x = x.astype(np.float32)[np.newaxis, :]
        out.append(x + pink_noise(SECONDS, RATE, dbfs=-66.0, seed=seed)[:, :n])
    return out


@pytest.fixture(scope="module")
def speech() -> list[np.ndarray]:
    return _from_data_set() or _from_stamps() or _synthetic()


def _open_distance(chain: Chain, x: np.ndarray, u: np.ndarray) -> float:
    y = chain(x, RATE, params=u, block_size=128, compensate_latency=True)
    return mrstft(y, x)


def test_the_chain_is_transparent_when_open(speech: list[np.ndarray]) -> None:
    chain = Chain.load("nonspeech")
    assert chain.sample_rate == RATE and chain.n_params <= 4, "keep the predicted parameters few (SPSA)"
    depth = chain.parameter_names.index(DEPTH)
    p = chain.parameter(DEPTH)
    assert p.maximum == pytest.approx(chain.spec.stages[0].fixed["tl1"], rel=1e-6), "0 dB of depth is open"
    for level in (0.0, 0.5, 1.0):  # every other parameter (the detector's preamp) anywhere in its range
        u = np.full(chain.n_params, level, dtype=np.float32)
        u[depth] = 1.0
        for x in speech:
            d = _open_distance(chain, x, u)
            assert d <= TRANSPARENT, f"open chain colours speech: MR-STFT {d:.4f} > {TRANSPARENT}"
    # The plugin must really act, or "open" would prove nothing: a breath-like hiss at −48 dBFS (between
    # the floor and speech) at full depth and the default preamp comes out ~8 dB down, and untouched open.
    hiss = (10 ** (-48 / 20) * np.random.default_rng(0).standard_normal((1, 2 * RATE))).astype(np.float32)
    u = chain.default_normalized()
    u[depth] = 0.0
    assert _open_distance(chain, hiss, u) > 0.5, "the chain at full depth left a breath-level hiss alone"
    u[depth] = 1.0
    assert _open_distance(chain, hiss, u) <= TRANSPARENT


def test_the_check_fails_on_a_chain_that_colours(speech: list[np.ndarray]) -> None:
    """The v1 chain, Calf's Multiband Gate, every band at 0 dB range: its crossovers alone fail the bound."""
    chain = Chain.load("nonspeech-v1")
    values = chain.denormalize(chain.default_normalized())
    for j, name in enumerate(chain.parameter_names):
        if ".range" in name:
            values[j] = 1.0
    u = chain.normalize(values)
    worst = max(_open_distance(chain, x, u) for x in speech)
    assert worst > TRANSPARENT, (
        f"the Calf gate measured {worst:.4f}: the bound no longer tells colouring apart"
    )
