"""The steering step of one audio block, compiled: the one smoother, shared by live and offline.

Every block (of any length) the chain's predicted parameters move like this,
whether the live callback runs it or :func:`rt_host.steer.automation.predict_automation`
does for a file:

1. **A prediction takes over** once the block starts at or after its apply
   frame (:mod:`rt_host.steer.geometry`); one that arrives later than its apply
   frame is applied at once and counted as late.
2. **The goal** of each parameter: the model's value blended with the chain's
   neutral value by the *amount* (1 = the model, 0 = neutral); or a person's
   value when they hold the parameter (MIDI, the web page), or the model's
   plus their offset.
3. **One-pole smoothing** towards the goal, ``alpha = 1 − exp(−frames / (τ · rate))``
   per block: the same glide at every block size. Within ``THRESHOLD`` of the
   goal it snaps there (no endless creep).
4. **Port writes, bounded**: a parameter is written when it moved by more than
   ``THRESHOLD``, at most once per ``control_interval`` frames (LSP's graphic EQ
   recomputes its filters on every change: writing glides every 128-frame
   block raised the mastering chain's callback from ~200 to ~530 µs), and a
   stage may cap how many of its ports are written per block
   (``max_writes_per_block`` in the chain file), taken round-robin, so a
   prediction that moves all 32 EQ bands costs a bounded amount per block.
   The values reach the ports through the one mapping kernel
   (:func:`rt_host.lv2.parameters.to_port`).

State lives in a few numpy arrays (:class:`SteerState`) that the live host
shares with its compiled callback; nothing here allocates.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from rt_host.lv2.parameters import to_port

THRESHOLD = 1e-4  # normalized: smaller moves are neither smoothed further nor written
DEFAULT_SMOOTHING_S = 0.1
DEFAULT_CONTROL_INTERVAL = 512  # frames between writes of one port (~11 ms at 48 kHz)

# rows of SteerState.rows (float64, (ROWS, n))
MODEL, SMOOTHED, APPLIED, HUMAN, OFFSET, NEUTRAL, GOAL, PENDING = range(8)
ROWS = 8
# rows of SteerState.flags (int64, (FLAG_ROWS, n))
MODE, GROUP, LAST_WRITE = range(3)
FLAG_ROWS = 3
# modes
BY_MODEL, BY_PERSON, OFFSET_BY_PERSON = 0, 1, 2
# SteerState.ints (int64)
FRAME = 0  # frames steered so far (the next block's first frame)
PENDING_FRAME = 1  # apply frame of the pending prediction, -1: none
RECEIVED = 2  # predictions received
APPLIED_COUNT = 3  # predictions that took over
LATE = 4  # predictions received after their apply frame
FROZEN = 5  # 1: predictions after the first one are ignored (--freeze)
CONTROL_INTERVAL = 6
WRITES = 7  # port writes so far (parameters × blocks)
INTS = 8
# SteerState.floats (float64)
TAU_FRAMES = 0  # smoothing time constant in frames (≤ 0: no smoothing)
AMOUNT = 1  # 0 … 1
FLOATS = 2


@numba.njit(cache=True, nogil=True)
def receive(rows, ints, prediction, apply_frame):
    """A prediction (normalized, ``(n,)``) that may steer from ``apply_frame`` on."""
    if ints[FROZEN] != 0 and ints[RECEIVED] > 0:
        return  # frozen: the first prediction stays
    ints[RECEIVED] += 1
    if ints[PENDING_FRAME] >= 0:  # one is still waiting (only after a stall): it takes over now
        for j in range(rows.shape[1]):
            rows[MODEL, j] = rows[PENDING, j]
        ints[APPLIED_COUNT] += 1
    for j in range(rows.shape[1]):
        rows[PENDING, j] = min(max(prediction[j], 0.0), 1.0)
    if apply_frame < ints[FRAME]:
        ints[LATE] += 1
        apply_frame = ints[FRAME]
    ints[PENDING_FRAME] = apply_frame


@numba.njit(cache=True, nogil=True)
def step(
    rows, flags, ints, floats, group_budget, group_next, table, target_ptr, target_idx, controls, frames
):
    """Steer one block of ``frames`` frames; writes the ports that are due into ``controls``.

    ``table``: the parameters' mapping rows (with the rate's Hz limits);
    ``target_ptr``/``target_idx``: the control indices of parameter ``j`` are
    ``target_idx[target_ptr[j]:target_ptr[j + 1]]`` (one per plugin instance).
    Returns the number of ports written.
    """
    n = rows.shape[1]
    start = ints[FRAME]
    # 1. a pending prediction takes over
    if ints[PENDING_FRAME] >= 0 and start >= ints[PENDING_FRAME]:
        for j in range(n):
            rows[MODEL, j] = rows[PENDING, j]
        ints[PENDING_FRAME] = -1
        ints[APPLIED_COUNT] += 1
    # 2./3. goals and the one-pole glide towards them
    tau = floats[TAU_FRAMES]
    alpha = 1.0 if tau <= 0.0 else 1.0 - math.exp(-float(frames) / tau)  # float: frames may be unsigned
    amount = min(max(floats[AMOUNT], 0.0), 1.0)
    for j in range(n):
        model = rows[NEUTRAL, j] + amount * (rows[MODEL, j] - rows[NEUTRAL, j])
        mode = flags[MODE, j]
        if mode == BY_PERSON:
            goal = rows[HUMAN, j]
        elif mode == OFFSET_BY_PERSON:
            goal = min(max(model + rows[OFFSET, j], 0.0), 1.0)
        else:
            goal = model
        rows[GOAL, j] = goal
        s = rows[SMOOTHED, j] + alpha * (goal - rows[SMOOTHED, j])
        if abs(goal - s) <= THRESHOLD:
            s = goal  # arrived: stop creeping
        rows[SMOOTHED, j] = s
    # 4. port writes: moved, not written for a control interval, within the stage's budget per block
    interval = ints[CONTROL_INTERVAL]
    for g in range(group_budget.shape[0]):
        group_budget_left = group_budget[g]  # < 0: unlimited
        first = group_next[g]
        for k in range(n):
            j = (first + k) % n
            if flags[GROUP, j] != g:
                continue
            if group_budget_left == 0:
                break
            d = abs(rows[SMOOTHED, j] - rows[APPLIED, j])
            if d <= 0.0 or (d <= THRESHOLD and rows[SMOOTHED, j] != rows[GOAL, j]):
                continue
            if start - flags[LAST_WRITE, j] < interval:
                continue
            rows[APPLIED, j] = rows[SMOOTHED, j]
            flags[LAST_WRITE, j] = start
            v = np.float32(to_port(rows[APPLIED, j], table[j]))
            for t in range(target_ptr[j], target_ptr[j + 1]):
                controls[target_idx[t]] = v
            ints[WRITES] += 1
            if group_budget_left > 0:
                group_budget_left -= 1
                group_next[g] = (j + 1) % n
    ints[FRAME] = start + frames


class SteerState:
    """The arrays :func:`step` works on, for ``n`` parameters; see the module docstring.

    ``neutral``: the values amount 0 blends towards (the chain's defaults, held
    parameters at their held values); ``groups``/``budgets``: the write group of
    each parameter and each group's ports per block (group 0: unlimited).
    """

    def __init__(
        self,
        neutral: np.ndarray,
        *,
        start: np.ndarray | None = None,
        frame_rate: float,
        smoothing_s: float = DEFAULT_SMOOTHING_S,
        control_interval: int = DEFAULT_CONTROL_INTERVAL,
        groups: np.ndarray | None = None,
        budgets: np.ndarray | None = None,
    ) -> None:
        n = len(neutral)
        self.rows = np.zeros((ROWS, n), dtype=np.float64)
        self.flags = np.zeros((FLAG_ROWS, n), dtype=np.int64)
        self.ints = np.zeros(INTS, dtype=np.int64)
        self.floats = np.zeros(FLOATS, dtype=np.float64)
        self.rows[NEUTRAL] = neutral
        first = neutral if start is None else start
        for row in (MODEL, SMOOTHED, APPLIED, GOAL, PENDING):
            self.rows[row] = first
        self.flags[LAST_WRITE] = -(1 << 40)  # never written: due at once
        if groups is not None:
            self.flags[GROUP] = groups
        self.group_budget = np.array([-1] if budgets is None else budgets, dtype=np.int64)
        self.group_next = np.zeros(len(self.group_budget), dtype=np.int64)
        self.ints[PENDING_FRAME] = -1
        self.ints[CONTROL_INTERVAL] = int(control_interval)
        self.floats[TAU_FRAMES] = max(float(smoothing_s), 0.0) * frame_rate
        self.floats[AMOUNT] = 1.0

    @property
    def applied(self) -> np.ndarray:
        """What the ports hold, normalized (a view)."""
        return self.rows[APPLIED]

    @property
    def counts(self) -> dict[str, int]:
        i = self.ints
        return {"received": int(i[RECEIVED]), "applied": int(i[APPLIED_COUNT]), "late": int(i[LATE])}


# Plugins that recompute on every control change, and how many of their ports a model may move per
# block unless the chain file says otherwise (``max_writes_per_block``). LSP's graphic equalizers
# recompute a band's filter whenever its gain changes: 62 µs per 128-frame block static, 95 µs with
# one gain moving, 425 µs with all 32 (measured here).
WRITE_BUDGETS = {
    "http://lsp-plug.in/plugins/lv2/graph_equalizer_": 4,
}


def write_budget(stage) -> int | None:
    """Ports of ``stage`` a model may write per block (None: unlimited)."""
    if stage.spec.max_writes_per_block is not None:
        return int(stage.spec.max_writes_per_block)
    uri = stage.plugin.uri
    return next((cap for prefix, cap in WRITE_BUDGETS.items() if uri.startswith(prefix)), None)


def write_groups(chain) -> tuple[np.ndarray, np.ndarray]:
    """``(group of each parameter, ports per block of each group)`` from the stages' write budgets
    (:func:`write_budget`; group 0 is every stage without one: unlimited)."""
    budgets = [-1]
    stage_group = {}
    for stage in chain.stages:
        cap = write_budget(stage)
        if cap is not None:
            stage_group[stage.name] = len(budgets)
            budgets.append(int(cap))
    groups = np.array([stage_group.get(p.stage, 0) for p in chain.parameters], dtype=np.int64)
    return groups, np.array(budgets, dtype=np.int64)


def targets(program) -> tuple[np.ndarray, np.ndarray]:
    """``(target_ptr, target_idx)`` for :func:`step` from a prepared chain's program."""
    n = len(program.table)
    order = np.argsort(program.target_param, kind="stable")
    idx = program.target_index[order].astype(np.int64)
    counts = np.bincount(program.target_param, minlength=n)
    ptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=ptr[1:])
    return ptr, idx
