"""The native block loop that runs a compiled chain program.

Why not a plain Python loop: each call from Python into a plugin costs about
1 µs (cffi dispatch plus the interpreter), which is 20–35 % of a cheap
plugin's 128-frame block (LSP Limiter: ~4 µs). Numba compiles this loop once
per process (cached on disk) and calls the plugins' ``run`` functions through
raw pointers, so per-block overhead is a few nanoseconds and the GIL is
released while audio is processed (workers and the JACK thread run freely).

A chain is lowered to flat arrays (see :class:`rt_host.lv2.chain.Chain`):

* ``pool`` — every audio buffer of the chain, one row each; plugin ports are
  connected to rows once, so moving audio between stages is free.
* ``ops`` — int64 rows ``(opcode, a, b, c)`` executed in order every block.
* ``controls`` — every instance's control ports, one float32 array; the
  parameter trajectory writes into it through ``(param, index)`` targets.
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

OP_RUN = 0  # a = instance number: reset its atom outputs? (done per block), run it
OP_MIX = 1  # a = destination row, b = first entry in mix_rows, c = how many rows to average
OP_COPY = 2  # a = destination row, b = source row

ATOM_CHUNK_WORDS = 2  # atom header words reset before every block: size, type


@intrinsic
def _call_run(typingctx, fn_address, handle, n_frames):
    """Call ``void run(LV2_Handle, uint32_t)`` at a raw address."""
    sig = types.void(types.uintp, types.uintp, types.uint32)

    def codegen(context, builder, signature, args):
        fn, hnd, n = args
        i8p = ir.IntType(8).as_pointer()
        fnty = ir.FunctionType(ir.VoidType(), [i8p, ir.IntType(32)])
        builder.call(builder.inttoptr(fn, fnty.as_pointer()), [builder.inttoptr(hnd, i8p), n])
        return context.get_dummy_value()

    return sig, codegen


@numba.njit(nogil=True, cache=True)
def run_program(
    x,  # float32 (channels_in, n) input
    y,  # float32 (channels_out, n) output
    in_rows,  # int64 (channels_in,)
    out_rows,  # int64 (channels_out,)
    pool,  # float32 (rows, max_block)
    ops,  # int64 (n_ops, 4)
    mix_rows,  # int64
    run_fns,  # uintp (instances,)
    handles,  # uintp (instances,)
    atom_out,  # uint32 (atom ports, words)
    atom_reset,  # uint32 (2,)
    controls,  # float32 (all control ports)
    trajectory,  # float32 (steps, params) real parameter values
    step_length,  # samples per trajectory row (0: only row 0)
    target_param,  # int64 (targets,)
    target_index,  # int64 (targets,) index into controls
    block,  # frames per run
    counters,  # int64 (2,): non-finite samples replaced at the input, at the output
):
    n = x.shape[1]
    n_steps = trajectory.shape[0]
    current_step = -1
    start = 0
    while start < n:
        frames = min(block, n - start)
        if n_steps > 0:
            step = 0 if step_length <= 0 else min(start // step_length, n_steps - 1)
            if step != current_step:
                for t in range(target_param.shape[0]):
                    controls[target_index[t]] = trajectory[step, target_param[t]]
                current_step = step
        for c in range(in_rows.shape[0]):
            row = in_rows[c]
            for i in range(frames):
                v = x[c, start + i]
                if not np.isfinite(v):
                    v = np.float32(0.0)
                    counters[0] += 1
                pool[row, i] = v
        for a in range(atom_out.shape[0]):
            atom_out[a, 0] = atom_reset[0]
            atom_out[a, 1] = atom_reset[1]
        for k in range(ops.shape[0]):
            op = ops[k, 0]
            if op == OP_RUN:
                inst = ops[k, 1]
                _call_run(run_fns[inst], handles[inst], np.uint32(frames))
            elif op == OP_MIX:
                dst = ops[k, 1]
                first = ops[k, 2]
                count = ops[k, 3]
                scale = np.float32(1.0 / count)
                for i in range(frames):
                    acc = np.float32(0.0)
                    for m in range(count):
                        acc += pool[mix_rows[first + m], i]
                    pool[dst, i] = acc * scale
            elif op == OP_COPY:
                dst = ops[k, 1]
                src = ops[k, 2]
                for i in range(frames):
                    pool[dst, i] = pool[src, i]
        for c in range(out_rows.shape[0]):
            row = out_rows[c]
            for i in range(frames):
                v = pool[row, i]
                if not np.isfinite(v):
                    v = np.float32(0.0)
                    counters[1] += 1
                y[c, start + i] = v
        start += frames


@numba.njit(nogil=True, cache=True)
def run_blocks(run_fn, handle, atom_out, atom_reset, n_blocks, block):
    """Run one instance ``n_blocks`` times on whatever its ports point to.

    The same work as ``lv2bench``'s timing loop: reset the atom outputs' capacity,
    run one block; used by ``deepafx-rt bench render``.
    """
    for _ in range(n_blocks):
        for a in range(atom_out.shape[0]):
            atom_out[a, 0] = atom_reset[0]
            atom_out[a, 1] = atom_reset[1]
        _call_run(run_fn, handle, np.uint32(block))
