"""The steering contract (rt_host.steer): one mapping, one geometry, one smoother, held values, automation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rt_host.bundle import bundle_dir, load_bundle
from rt_host.live.midi import MidiMap, compile_map
from rt_host.lv2 import Chain
from rt_host.lv2.parameters import ParameterTable
from rt_host.steer import Geometry, HeldParameters, kernel, predict_automation
from rt_host.steer.automation import log_rows
from rt_host.steer.kernel import SteerState, step
from rt_host.steer.view import encoder_view

CHAINS = ("mastering", "mastering-v1", "nonspeech", "nonspeech-v1", "distortion", "distortion-v1")


# --- one mapping kernel ------------------------------------------------------------------------
@pytest.mark.parametrize("name", CHAINS)
def test_the_mapping_is_the_same_for_the_chain_the_realtime_block_and_midi(name):
    """Chain.denormalize, a prepared program's table (what the live block and offline automation
    write), each Parameter and the MIDI knob inverse agree on every predicted port."""
    chain = Chain.load(name)
    u = np.linspace(0.0, 1.0, 101)[:, None].repeat(chain.n_params, axis=1)
    via_chain = chain.denormalize(u)
    chain.prepare(chain.sample_rate or 44100, 128)
    program = chain.program.table
    limits = program.table[:, 4]
    np.testing.assert_array_equal(program.to_port(u), np.minimum(via_chain, limits))
    for j, p in enumerate(chain.parameters):
        np.testing.assert_array_equal(p.to_value(u[:, j]), via_chain[:, j])
        # the round trip (rounded ports only up to their rounding)
        back = chain.normalize(via_chain)[:, j]
        if not p.rounded:
            np.testing.assert_allclose(back, u[:, j], atol=1e-9)
    # MIDI: a knob over the whole range gives back the parameter's normalized values
    midi_map = MidiMap()
    for j, p in enumerate(chain.parameters[:16]):
        midi_map.bind(1, j, p.name)
    compiled = compile_map(midi_map, chain)
    for cm in compiled.values():
        for value in (0, 31, 64, 127):
            np.testing.assert_allclose(cm.normalized(value), value / 127.0, atol=1e-12)
    chain.close()


def test_a_knob_with_its_own_range_and_curve_maps_through_port_values():
    chain = Chain.load("mastering-v1")
    midi_map = MidiMap()
    m = midi_map.bind(1, 20, "mbc.freq1")  # 400 … 3000 Hz, linear
    m.min, m.max, m.curve = 500.0, 2000.0, "log"
    cm = compile_map(midi_map, chain)[(1, 20)]
    p = chain.parameter("mbc.freq1")
    assert p.to_value(cm.normalized(0)) == pytest.approx(500.0)
    assert p.to_value(cm.normalized(127)) == pytest.approx(2000.0)
    assert p.to_value(cm.normalized(round(127 / 2))) == pytest.approx(math.sqrt(500 * 2000), rel=0.02)


def test_nan_never_reaches_a_port():
    chain = Chain.load("mastering-v1")
    table = ParameterTable(chain.parameters, 44100)
    values = table.to_port(np.full(chain.n_params, np.nan))
    np.testing.assert_array_equal(values, table.to_port(np.zeros(chain.n_params)))


# --- geometry ----------------------------------------------------------------------------------
def test_windows_end_every_hop_and_steer_after_a_delay():
    g = Geometry.at(44100, 22050, 40960, 11025, delay_s=0.1)
    assert g.window_frames == 81920 and g.hop_frames == 22050 and g.delay == 4410
    np.testing.assert_array_equal(g.ends(66150), [22050, 44100, 66150])
    assert g.apply_frame(0) == 22050 + 4410
    audio = np.arange(2 * 30000, dtype=np.float32).reshape(2, -1)
    w = g.window_of(audio, 22050)  # zeros before frame 0, then frames 0 … 22049
    assert w.shape == (2, 81920) and np.all(w[:, : 81920 - 22050] == 0) and w[0, -1] == audio[0, 22049]
    # at 48 kHz the same model hears the same seconds
    g48 = Geometry.at(48000, 22050, 40960, 11025)
    assert g48.hop_frames == 24000 and g48.window_frames == math.ceil(40960 * 48000 / 22050)
    assert Geometry.at(48000, 22050, 4096, 1024).delay == round(0.5 * 1024 / 22050 * 48000)  # half a hop
    with pytest.raises(ValueError, match="not shorter than the hop"):
        Geometry.at(44100, 22050, 40960, 11025, delay_s=0.6)


def test_the_encoder_view_of_a_window_is_its_newest_samples_at_the_model_rate():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 88200)).astype(np.float32)
    v = encoder_view(x, 44100, 22050, 40960)
    whole = encoder_view(x, 44100, 22050, 44100)
    assert v.shape == (40960,)
    # the newest samples: the view of the whole file ends the same way, away from the resampler's edges
    np.testing.assert_allclose(v[-20000:-100], whole[-20000:-100], atol=1e-6)


# --- the kernel --------------------------------------------------------------------------------
def _state(n: int, **kw) -> SteerState:
    return SteerState(np.zeros(n), frame_rate=48000.0, **kw)


def _run(state: SteerState, blocks: int, frames: int = 128, n_controls: int | None = None):
    n = state.rows.shape[1]
    table = np.tile(np.array([0.0, 1.0, 0.0, 0.0, np.inf]), (n, 1))
    ptr, idx = np.arange(n + 1), np.arange(n)
    controls = np.zeros(n, np.float32)
    rows = []
    for _ in range(blocks):
        step(state.rows, state.flags, state.ints, state.floats, state.group_budget, state.group_next,
             table, ptr, idx, controls, frames)  # fmt: skip
        rows.append(state.rows[kernel.APPLIED].copy())
    return np.array(rows), controls


def test_the_smoother_glides_with_its_time_constant_at_any_block_size():
    for frames in (64, 128, 1024):
        s = _state(1, smoothing_s=0.1, control_interval=1)
        kernel.receive(s.rows, s.ints, np.array([1.0]), 0)
        blocks = round(0.1 * 48000 / frames)
        rows, _ = _run(s, blocks, frames)
        assert rows[-1, 0] == pytest.approx(1 - math.exp(-blocks * frames / 4800))  # the same curve
    assert 1 - math.exp(-1) == pytest.approx(0.632, abs=1e-3)  # one τ: 63 %
    s = _state(1, smoothing_s=0.1)
    kernel.receive(s.rows, s.ints, np.array([1.0]), 0)
    rows, _ = _run(s, 400)
    assert rows[-1, 0] == 1.0  # snapped onto the goal, no endless creep


def test_a_prediction_steers_from_its_apply_frame_and_a_late_one_is_counted():
    s = _state(1, smoothing_s=0.0, control_interval=1)
    kernel.receive(s.rows, s.ints, np.array([0.5]), 1000)
    rows, _ = _run(s, 10)
    assert np.flatnonzero(rows[:, 0] > 0)[0] == 8  # the first block starting at or after frame 1000
    assert s.counts["late"] == 0
    kernel.receive(s.rows, s.ints, np.array([0.7]), 5)  # its frame is long past
    rows, _ = _run(s, 1)
    assert rows[0, 0] == 0.7 and s.counts["late"] == 1


def test_port_writes_respect_the_control_interval():
    s = _state(1, smoothing_s=0.05, control_interval=512)
    kernel.receive(s.rows, s.ints, np.array([1.0]), 0)
    rows, _ = _run(s, 40)
    changes = np.flatnonzero(np.diff(rows[:, 0]) != 0) + 1
    assert len(changes) > 3 and np.all(np.diff(changes) >= 4)  # at most every 512 frames


def test_the_write_budget_bounds_a_stage_and_every_band_still_reaches_its_target():
    """32 "EQ bands" in a group that may write 4 ports per block: never more than 4 writes per
    block, round-robin, and every band reaches its goal within its bound."""
    n = 32
    s = _state(
        n, smoothing_s=0.0, control_interval=512, groups=np.ones(n, np.int64), budgets=np.array([-1, 4])
    )
    goal = np.linspace(0.1, 0.9, n)
    kernel.receive(s.rows, s.ints, goal, 0)
    rows, _ = _run(s, 12)
    writes = np.sum(np.diff(np.vstack([np.zeros(n), rows]), axis=0) != 0, axis=1)
    assert writes.max() <= 4
    np.testing.assert_array_equal(rows[7], goal)  # 32 bands / 4 per block = 8 blocks
    # a free parameter (group 0) is not held back by the group's budget
    s = _state(2, smoothing_s=0.0, groups=np.array([0, 1]), budgets=np.array([-1, 1]))
    kernel.receive(s.rows, s.ints, np.array([0.3, 0.6]), 0)
    rows, _ = _run(s, 1)
    np.testing.assert_array_equal(rows[0], [0.3, 0.6])


def test_people_override_offset_and_the_amount_blends_towards_neutral():
    s = SteerState(np.full(3, 0.5), frame_rate=48000.0, smoothing_s=0.0, control_interval=1)
    kernel.receive(s.rows, s.ints, np.array([1.0, 1.0, 1.0]), 0)
    s.flags[kernel.MODE, 1] = kernel.BY_PERSON
    s.rows[kernel.HUMAN, 1] = 0.2
    s.flags[kernel.MODE, 2] = kernel.OFFSET_BY_PERSON
    s.rows[kernel.OFFSET, 2] = -0.3
    s.floats[kernel.AMOUNT] = 0.5
    rows, _ = _run(s, 1)
    np.testing.assert_allclose(rows[0], [0.75, 0.2, 0.45])


# --- held parameters ---------------------------------------------------------------------------
def test_held_values_are_port_units_and_checked():
    chain = Chain.load("nonspeech-v1")
    held = HeldParameters(chain.parameters, {"gate.freq1": 1000.0})
    assert chain.parameter("gate.freq1").to_value(held.normalized["gate.freq1"]) == pytest.approx(1000.0)
    u = held.apply(np.zeros(chain.n_params))
    assert u[chain.parameter_names.index("gate.freq1")] == held.normalized["gate.freq1"]
    with pytest.raises(Exception, match="outside its range"):
        HeldParameters(chain.parameters, {"gate.freq1": 0.5})  # a normalized value is not a frequency
    with pytest.raises(Exception, match="not a predicted parameter"):
        HeldParameters(chain.parameters, {"gate.nope": 1.0})
    with pytest.raises(Exception, match="finite number"):
        HeldParameters(chain.parameters, {"gate.freq1": float("nan")})


# --- automation over a file --------------------------------------------------------------------
def test_automation_starts_at_the_defaults_drops_nan_predictions_and_counts_them():
    chain = Chain.load("mastering-v1")
    g = Geometry.at(44100, 22050, 4096, 2048)
    calls = []

    def predict(views):
        calls.append(len(views))
        k = len(calls)
        return np.full((len(views), chain.n_params), np.nan if k == 3 else 0.1 * k, np.float32)

    x = np.zeros((2, 44100), np.float32)
    a = predict_automation(predict, x, 44100, g, chain)
    assert a.n_predictions == len(calls) == 10 and a.dropped == 1
    first = g.apply_frame(0) // a.block
    np.testing.assert_allclose(
        a.applied[: first - 1], np.broadcast_to(chain.default_normalized(), (first - 1, 53))
    )
    assert not np.allclose(a.applied[first + 5], chain.default_normalized())
    assert np.all(np.isfinite(a.applied))
    times, rows = a.log()  # the first block and every block in which a port was written
    assert times[0] == 0 and rows.shape[1] == 53 and len(rows) < len(a.applied)
    replay = rows[np.searchsorted(times, a.times, side="right") - 1]
    np.testing.assert_array_equal(replay, a.applied)  # the log replays exactly
    t2, r2 = log_rows(a.applied[50:], a.block, 44100, first_block=50, previous=a.applied[49])  # in pieces
    np.testing.assert_array_equal(t2, times[times >= 50 * a.block / 44100])


def test_evaluation_and_render_give_the_same_automation_for_a_bundle():
    """training/evaluate.py's model path is rt_host.steer's: with the bundle's predictor it yields
    exactly the automation `render --bundle` plays."""
    pytest.importorskip("pyloudnorm")
    from training.evaluate import SteeringModel, render_model

    bundle = load_bundle(bundle_dir("nonspeech"))
    chain = Chain(bundle.chain_spec)
    rng = np.random.default_rng(1)
    x = (0.1 * rng.standard_normal((1, 22050 * 5))).astype(np.float32)
    model = SteeringModel.from_bundle(bundle.path)
    _, via_eval = render_model(model, chain, x, 22050, kernel.DEFAULT_SMOOTHING_S, 128)
    via_render = predict_automation(
        bundle.predictor(), x, 22050, bundle.geometry(22050), chain, held=bundle.held
    )
    np.testing.assert_array_equal(via_eval.applied, via_render.applied)


def test_an_amount_knob_blends_the_model_with_neutral_in_the_live_block():
    """A map's `param = "amount"` knob sends AMOUNT events; the real-time block applies them."""
    from rt_host.live import shared
    from rt_host.live.block import RealtimeChain
    from rt_host.live.midi import Receiver

    chain = Chain.load("mastering-v1")
    midi_map = MidiMap()
    midi_map.bind(1, 20, "amount")
    state = shared.SharedState.local(shared.Layout(4096, chain.n_params))
    rtc = RealtimeChain(chain, 48000, 128, state, smoothing_s=0.0)
    receiver = Receiver(state, compile_map(midi_map, chain), midi_map, None, chain)
    model = np.clip(chain.default_normalized() + 0.3, 0, 1)
    state.publish_prediction(model.astype(np.float32), 0)
    receiver(([0xB0, 20, 0], 0.0))  # amount 0: neutral
    for _ in range(8):
        rtc.process()
    np.testing.assert_allclose(rtc.applied, chain.default_normalized(), atol=1e-6)
    assert state.control[shared.CTL_AMOUNT] == 0.0
    receiver(([0xB0, 20, 127], 0.0))  # amount 100 %: the model
    for _ in range(8):
        rtc.process()
    np.testing.assert_allclose(rtc.applied, model, atol=1e-6)
