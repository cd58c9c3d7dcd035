"""One audio block of the live host, in native code: the seam between the audio backend and the rest.

Everything the audio callback does between reading its input and writing its
output is one compiled call, :func:`cycle` (numba, no GIL, no allocation):

1. take the block's input — from the played file when one plays, else from the
   backend's buffers — and capture it, mixed to mono, for the controller;
2. pick up a new prediction from the shared double buffer (it steers from its
   apply frame on; :func:`rt_host.steer.kernel.receive`);
3. apply what people did since the last block (MIDI, the web page): take a
   parameter, offset it, hand it back, set the amount;
4. steer: :func:`rt_host.steer.kernel.step` — the same smoother and bounded
   port writes as offline rendering;
5. run the chain's native program (:mod:`rt_host.lv2.engine`), guard the
   output against NaN/Inf; with the A/B bypass on, play the input instead,
   at the output's loudness;
6. meters (K-weighted loudness sums of the input, the chain's output and
   what is played; peaks; gain reduction), the recording ring and the
   per-block parameter trace.

:class:`RealtimeChain` owns the arrays and is what an audio backend drives:
:mod:`rt_host.live.jack_backend` registers a native JACK process callback
(:mod:`rt_host.live.jack_process`) that calls :func:`cycle` on them; tests
call :meth:`RealtimeChain.process` from Python.
"""

from __future__ import annotations

import numba
import numpy as np

from rt_host.live import shared
from rt_host.lv2 import engine
from rt_host.lv2.chain import Chain
from rt_host.steer import kernel
from rt_host.steer.automation import new_state
from rt_host.steer.held import HeldParameters

RECORD_RING_S = 8.0
TRACE_RING_BLOCKS = 1 << 14  # per-block parameter rows the host drains (~44 s at 128 frames / 48 kHz)

# RealtimeChain.live (int64)
PLAY_POS = 0  # next frame of the played file
BLOCKS = 1  # blocks processed
BAD_BLOCKS = 2  # blocks of an unexpected length (silence out)
REC_POS = 3  # frames written to the record ring
TRACE_POS = 4  # rows written to the trace ring
GR_INDEX = 5  # controls index of a gain-reduction meter (dB or linear, see GR_LINEAR), -1: none
GR_LINEAR = 6  # 1: the meter reads a linear gain (converted to dB)
LAST_SEQ = 7  # the newest prediction sequence number seen
LIVE_INTS = 8


@numba.njit(cache=True, nogil=True)
def _k_weighted_energy(x, sos, z):
    """Σ y² of ``x`` through two cascaded biquads ``sos`` (state ``z`` (2, 2), kept)."""
    acc = 0.0
    for i in range(x.shape[0]):
        v = float(x[i])
        for s in range(2):
            b0, b1, b2, a1, a2 = sos[s, 0], sos[s, 1], sos[s, 2], sos[s, 4], sos[s, 5]
            y = b0 * v + z[s, 0]
            z[s, 0] = b1 * v - a1 * y + z[s, 1]
            z[s, 1] = b2 * v - a2 * y
            v = y
        acc += v * v
    return acc


@numba.njit(cache=True, nogil=True)
def cycle(
    x, y, frames, now_ns,
    header, capture, pred, pred_frame, ev_param, ev_kind, ev_value, ev_time, applied_pub, held_pub,
    event_latency_us, meters, control,
    live, ev_read, play, record, trace, pending_ns, kfilt, kstate,
    rows, flags, ints, floats, budget, nxt, table, tptr, tidx,
    in_rows, out_rows, pool, ops, mix_rows, run_fns, handles, atom_out, atom_reset, controls, counters,
    no_trajectory, target_param, target_index,
):  # fmt: skip
    """One block; ``x``/``y`` are ``(channels, block)``; the first ``frames`` columns are used."""
    channels = x.shape[0]
    n_params = rows.shape[1]
    # 1. the input: the played file, if any (zeros after its end)
    n_play = play.shape[1]
    if n_play > 0:
        p = live[PLAY_POS]
        for c in range(channels):
            for i in range(frames):
                x[c, i] = play[c, p + i] if p + i < n_play else np.float32(0.0)
        live[PLAY_POS] = p + frames
    written = header[shared.CAPTURED]
    ring_len = capture.shape[0]
    peak_in = meters[shared.METER_IN_PEAK]
    for i in range(frames):
        s = np.float32(0.0)
        for c in range(channels):
            v = x[c, i]
            if not np.isfinite(v):
                v = np.float32(0.0)
                x[c, i] = v
            s += v
            if abs(v) > peak_in:
                peak_in = abs(v)
        capture[(written + i) % ring_len] = s / channels
    meters[shared.METER_IN_PEAK] = peak_in
    header[shared.CAPTURED] = written + frames
    # 2. a new prediction
    seq = header[shared.PRED_SEQ]
    if seq != live[LAST_SEQ]:
        slot = seq % 2
        kernel.receive(rows, ints, pred[slot], pred_frame[slot])
        live[LAST_SEQ] = seq
    # 3. what people did since the last block
    for src in range(ev_param.shape[0]):
        r = ev_read[src]
        w = header[shared.EVENTS_WRITTEN + src]
        while r < w:
            i = r % ev_param.shape[1]
            j = ev_param[src, i]
            kind = ev_kind[src, i]
            v = ev_value[src, i]
            if kind == shared.RELEASE_ALL:
                for k in range(n_params):
                    flags[kernel.MODE, k] = kernel.BY_MODEL
            elif kind == shared.AMOUNT:
                if np.isfinite(v):
                    floats[kernel.AMOUNT] = min(max(v, 0.0), 1.0)
                    control[shared.CTL_AMOUNT] = floats[kernel.AMOUNT]
            elif 0 <= j < n_params and np.isfinite(v):
                if kind == shared.SET:
                    flags[kernel.MODE, j] = kernel.BY_PERSON
                    rows[kernel.HUMAN, j] = min(max(v, 0.0), 1.0)
                elif kind == shared.OFFSET:
                    flags[kernel.MODE, j] = kernel.OFFSET_BY_PERSON
                    rows[kernel.OFFSET, j] = min(max(v, -1.0), 1.0)
                elif kind == shared.RELEASE:
                    flags[kernel.MODE, j] = kernel.BY_MODEL
                pending_ns[j] = ev_time[src, i]
            r += 1
        ev_read[src] = r
        header[shared.EVENTS_APPLIED + src] = r
    # 4. steer: the smoother and the bounded port writes, as offline
    start = ints[kernel.FRAME]
    kernel.step(rows, flags, ints, floats, budget, nxt, table, tptr, tidx, controls, frames)
    for j in range(n_params):
        if pending_ns[j] > 0 and flags[kernel.LAST_WRITE, j] == start:  # a person's move reached the port
            n = header[shared.LATENCIES]
            event_latency_us[n % event_latency_us.shape[0]] = (now_ns - pending_ns[j]) / 1e3
            header[shared.LATENCIES] = n + 1
            pending_ns[j] = 0
        applied_pub[j] = rows[kernel.APPLIED, j]
        held_pub[j] = flags[kernel.MODE, j]
    # 5. the chain (its program writes y and counts non-finite samples)
    engine.run_program(
        x[:, :frames], y[:, :frames], in_rows, out_rows, pool, ops, mix_rows, run_fns, handles, atom_out,
        atom_reset, controls, no_trajectory, 0, target_param, target_index, frames, counters,
    )  # fmt: skip
    # 6. meters: the input, the chain's output (what the A/B bypass matches), what is played
    for c in range(channels):
        meters[shared.METER_IN_K] += _k_weighted_energy(x[c, :frames], kfilt, kstate[0, c])
    chain_k = 0.0
    for c in range(y.shape[0]):
        chain_k += _k_weighted_energy(y[c, :frames], kfilt, kstate[1, c])
    meters[shared.METER_CHAIN_K] += chain_k
    if control[shared.CTL_BYPASS] > 0.5:
        g = np.float32(control[shared.CTL_BYPASS_GAIN])
        n_out = min(y.shape[0], channels)
        for c in range(y.shape[0]):
            src_c = c if c < n_out else 0
            for i in range(frames):
                y[c, i] = x[src_c, i] * g
        for c in range(y.shape[0]):
            meters[shared.METER_OUT_K] += _k_weighted_energy(y[c, :frames], kfilt, kstate[2, c])
    else:
        meters[shared.METER_OUT_K] += chain_k
    peak_out = meters[shared.METER_OUT_PEAK]
    for c in range(y.shape[0]):
        for i in range(frames):
            if abs(y[c, i]) > peak_out:
                peak_out = abs(y[c, i])
    meters[shared.METER_OUT_PEAK] = peak_out
    meters[shared.METER_FRAMES] += frames
    gi = live[GR_INDEX]
    if gi >= 0:
        g = controls[gi]
        if live[GR_LINEAR] != 0:
            meters[shared.METER_GR] = 20.0 * np.log10(g) if g > 0 else -120.0
        else:
            meters[shared.METER_GR] = g
    if record.shape[1] > 0:
        rec_len = record.shape[1]
        pos = live[REC_POS]
        for c in range(y.shape[0]):
            for i in range(frames):
                record[c, (pos + i) % rec_len] = y[c, i]
        live[REC_POS] = pos + frames
    t = live[TRACE_POS]
    row = t % trace.shape[0]
    for j in range(n_params):
        trace[row, j] = rows[kernel.APPLIED, j]
    live[TRACE_POS] = t + 1
    live[BLOCKS] += 1


class RealtimeChain:
    """A chain prepared for a fixed block size, steered block by block: what an audio backend drives.

    Owns every array :func:`cycle` needs. ``state`` is shared with the
    controller, the MIDI receiver and the web server. Call :meth:`process`
    after writing ``x`` (``(channels, block)``) to get ``y``, or hand
    :attr:`arrays` to a native callback (:mod:`rt_host.live.jack_process`).
    """

    def __init__(
        self,
        chain: Chain,
        sample_rate: int,
        block: int,
        state: shared.SharedState,
        *,
        held: HeldParameters | None = None,
        smoothing_s: float = kernel.DEFAULT_SMOOTHING_S,
        control_interval: int = kernel.DEFAULT_CONTROL_INTERVAL,
        freeze: bool = False,
        record_frames: int = 0,
        play: np.ndarray | None = None,
        gain_reduction: str | None = None,
    ) -> None:
        from rt_host.live.meters import k_weighting

        chain.prepare(sample_rate, block)
        self.chain, self.sample_rate, self.block, self.state = chain, sample_rate, block, state
        program = chain.program
        self.program = program
        n, channels = chain.n_params, chain.channels
        self.steer = new_state(chain, sample_rate, smoothing_s=smoothing_s, held=held,
                               control_interval=control_interval)  # fmt: skip
        self.steer.ints[kernel.FROZEN] = int(freeze)
        self.tptr, self.tidx = kernel.targets(program)
        self.x = np.zeros((channels, block), dtype=np.float32)
        self.y = np.zeros((channels, block), dtype=np.float32)
        self.live = np.zeros(LIVE_INTS, dtype=np.int64)
        self.live[GR_INDEX] = -1
        self.ev_read = np.zeros(shared.SOURCES, dtype=np.int64)
        self.play = (
            np.zeros((channels, 0), dtype=np.float32)
            if play is None
            else np.ascontiguousarray(play, np.float32)
        )
        self.record = np.zeros((channels, record_frames), dtype=np.float32)
        self.trace = np.zeros((TRACE_RING_BLOCKS, n), dtype=np.float64)
        # every page written now, not in the callback: np.zeros leaves them unmapped, and arrays of 4 MiB
        # and more (the trace of a large chain) come as 2 MiB huge pages (numpy asks for them), each
        # zeroed on its first write
        self.trace.fill(0.0)
        self.record.fill(0.0)
        self.pending_ns = np.zeros(n, dtype=np.int64)
        self.kfilt = k_weighting(sample_rate)
        self.kstate = np.zeros((3, channels, 2, 2), dtype=np.float64)  # input, chain output, bypass
        self.no_trajectory = np.zeros((0, 0), dtype=np.float32)
        if gain_reduction is not None:
            self._find_gain_reduction(gain_reduction)
        # the start values in the ports, a fresh state, then compile (or load from cache) outside the callback
        program.write_values(program.table.to_port(self.steer.rows[kernel.APPLIED]))
        program.reset()
        saved = (self.steer.rows.copy(), self.steer.flags.copy(), self.steer.ints.copy())
        self.process()
        program.reset()
        self.steer.rows[:], self.steer.flags[:], self.steer.ints[:] = saved
        gr = self.live[GR_INDEX], self.live[GR_LINEAR]
        self.live[:] = 0
        self.live[GR_INDEX], self.live[GR_LINEAR] = gr
        self.kstate[:] = 0.0
        state.header[shared.CAPTURED] = 0
        state.meters[:] = 0.0
        state.meters[shared.METER_GR] = np.nan
        self._prefault()

    def _prefault(self) -> None:
        """Write every page the callback will touch, now.

        numpy's big zero arrays (and a new shared-memory segment) are mapped
        lazily: the first write to each 4 KB page faults, and a page fault
        takes the process's memory-map lock — which a low-priority thread of
        this process (numpy freeing a big array) may hold while it is
        preempted. A real-time thread waiting for it misses its deadline.
        """
        for a in self.arrays:
            if a.nbytes > 4096:
                a[...] = a  # a write per page; values unchanged
        for a in (self.x, self.y):
            a[...] = a

    def _find_gain_reduction(self, symbol_path: str) -> None:
        """Point the gain-reduction meter at ``stage.port`` (a control output), if the chain has it."""
        stage_name, _, symbol = symbol_path.partition(".")
        for si, stage in enumerate(self.chain.stages):
            if stage.name != stage_name:
                continue
            try:
                port = stage.plugin.port(symbol)
            except Exception:
                return
            self.live[GR_INDEX] = self.program.control_index(si, port.index)
            # LSP's meters read a linear gain (0 … 1); a meter whose range goes below 0 reads dB
            self.live[GR_LINEAR] = int(not (port.minimum is not None and port.minimum < 0))
            return

    @property
    def arrays(self) -> tuple:
        """The arguments of :func:`cycle` after ``x, y, frames, now_ns``, in order."""
        s, st, pr = self.state, self.steer, self.program
        return (
            s.header, s.capture, s.pred, s.pred_frame, s.event_param, s.event_kind, s.event_value,
            s.event_time, s.applied, s.held, s.event_latency_us, s.meters, s.control,
            self.live, self.ev_read, self.play, self.record, self.trace, self.pending_ns, self.kfilt,
            self.kstate,
            st.rows, st.flags, st.ints, st.floats, st.group_budget, st.group_next, pr.table.table,
            self.tptr, self.tidx,
            pr.in_rows, pr.out_rows, pr.pool, pr.ops, pr.mix_rows, pr.run_fns, pr.handles, pr.atom_out,
            pr.atom_reset, pr.controls, pr.counters, self.no_trajectory, pr.target_param, pr.target_index,
        )  # fmt: skip

    def process(self, now_ns: int = 0) -> None:
        """One block: ``x`` → ``y`` (from Python; the JACK backend calls :func:`cycle` natively)."""
        cycle(self.x, self.y, self.block, now_ns, *self.arrays)

    @property
    def counters(self) -> np.ndarray:
        """``[non-finite inputs, non-finite outputs]`` replaced by the last block."""
        return self.program.counters

    @property
    def applied(self) -> np.ndarray:
        """What the ports hold now, normalized."""
        return self.steer.rows[kernel.APPLIED]

    @property
    def counts(self) -> dict[str, int]:
        """Predictions received, applied and late; blocks; port writes."""
        return self.steer.counts | {
            "blocks": int(self.live[BLOCKS]),
            "bad_blocks": int(self.live[BAD_BLOCKS]),
            "port_writes": int(self.steer.ints[kernel.WRITES]),
        }
