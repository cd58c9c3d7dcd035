"""``deepafx-rt bench render``: our LV2 binding against lilv's own C tools.

Three measurements, all in one run:

1. **Per plugin vs ``lv2bench``** (lilv-utils): for each plugin of the mastering
   chain and each block size, ``lv2bench -b B -n N URI`` and our binding on
   exactly its work — 48 kHz, default control values, every audio input reading
   one silent buffer and every output writing one buffer, an empty atom input
   and the atom output's capacity reset before each block. Runs alternate and
   repeat; the ratio uses each side's fastest run (the least disturbed by the
   rest of the machine) and the median ratio is printed beside it.
2. **Mastering chain real-time factor** on a generated stereo mix at 44.1 kHz
   with the chain's fixed values and defaults.
3. **Whole-file render vs ``lv2apply``**, which runs one frame per ``run()``
   and cannot load LSP or x42 plugins (it passes no features): Calf MBC on the
   same file with the same controls, ours at block 1 (the same work) and at
   block 1024 (how we render).
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from rt_host import audio as audio_io
from rt_host.bench import write_results
from rt_host.errors import SetupError
from rt_host.lv2 import Chain, ChainSpec, World, engine
from rt_host.render import render_file
from rt_host.signals import unmastered_mix

LV2BENCH_RATE = 48000.0  # lv2bench instantiates every plugin at 48 kHz


def lv2bench_seconds(uri: str, block: int, frames: int) -> float:
    out = subprocess.run(
        ["lv2bench", "-b", str(block), "-n", str(frames), uri],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return float(out.split()[0])


def binding_seconds(world: World, uri: str, block: int, frames: int) -> float:
    """Our binding doing exactly lv2bench's timed work (see the module docstring)."""
    plugin = world.plugin(uri)
    with plugin.instantiate(LV2BENCH_RATE, block) as inst:
        silent_in = np.zeros(block, dtype=np.float32)
        out = np.zeros(block, dtype=np.float32)
        for port in plugin.ports:
            if port.kind in ("audio", "cv"):
                inst.connect(port.index, silent_in if port.is_input else out)
        inst.activate()
        args = (inst.run_address, inst.handle_address, inst._atom_out, inst._atom_out_reset)
        engine.run_blocks(*args, 1, block)  # compile / warm the code path, not timed
        start = time.perf_counter()
        engine.run_blocks(*args, frames // block, block)
        return time.perf_counter() - start


def bench_plugins(chain: Chain, blocks: list[int], frames: int, repeats: int, progress) -> list[dict]:
    rows = []
    uris = list(dict.fromkeys(s.plugin.uri for s in chain.stages))
    for uri in uris:
        name = chain.world.plugin(uri).name
        for block in blocks:
            c_times, ours = [], []
            for _ in range(repeats):
                c_times.append(lv2bench_seconds(uri, block, frames))
                ours.append(binding_seconds(chain.world, uri, block, frames))
                progress.update(1)
            rows.append(
                {
                    "plugin": name,
                    "uri": uri,
                    "block": block,
                    "frames": frames,
                    "lv2bench_s_min": min(c_times),
                    "ours_s_min": min(ours),
                    "lv2bench_s_median": statistics.median(c_times),
                    "ours_s_median": statistics.median(ours),
                    "ratio_min": min(ours) / min(c_times),
                    "ratio_median": statistics.median(ours) / statistics.median(c_times),
                    "goal": 1.05 if block >= 1024 else 1.10,
                }
            )
    return rows


def bench_chain_rtf(chain: Chain, blocks: list[int], seconds: float, progress) -> list[dict]:
    rate = chain.sample_rate or 44100
    x = unmastered_mix(seconds, rate)
    chain(x[:, : rate // 10], rate)  # instantiate and compile outside the timing
    rows = []
    for block in blocks:
        times = []
        for _ in range(3):
            start = time.perf_counter()
            chain(x, rate, block_size=block)
            times.append(time.perf_counter() - start)
        progress.update(1)
        best = min(times)
        rows.append({"block": block, "seconds_audio": seconds, "elapsed_s": best, "rtf": seconds / best})
    return rows


def bench_vs_lv2apply(world: World, seconds: float, progress) -> list[dict]:
    uri = "http://calf.sourceforge.net/plugins/MultibandCompressor"
    controls = {"bypass0": 0.0, "bypass1": 0.0, "bypass2": 0.0, "bypass3": 0.0}
    spec = ChainSpec.from_dict(
        {"name": "calf-mbc", "channels": 2,
         "stage": [{"name": "mbc", "plugin": uri, "fixed": controls}]}
    )  # fmt: skip
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        src, c_out, our_out = Path(tmp, "in.wav"), Path(tmp, "c.wav"), Path(tmp, "ours.wav")
        audio_io.write_audio(src, unmastered_mix(seconds, 44100), 44100, "FLOAT")
        cmd = ["lv2apply", "-i", str(src), "-o", str(c_out)]
        for sym, val in controls.items():
            cmd += ["-c", sym, str(val)]
        start = time.perf_counter()
        subprocess.run([*cmd, uri], check=True, capture_output=True)
        c_time = time.perf_counter() - start
        progress.update(1)
        chain = Chain(spec, world)
        for block in (1, 1024):
            render_file(src, our_out, chain, block_size=block)  # warm: instantiate, compile
            start = time.perf_counter()
            render_file(src, our_out, chain, block_size=block, subtype="FLOAT")
            ours = time.perf_counter() - start
            rows.append(
                {
                    "plugin": "Calf Multiband Compressor",
                    "seconds_audio": seconds,
                    "lv2apply_s": c_time,
                    "ours_block": block,
                    "ours_s": ours,
                    "ratio": ours / c_time,
                }
            )
            progress.update(1)
    return rows


def run(
    blocks: list[int],
    frames: int,
    repeats: int,
    seconds: float,
    json_path: Path | None,
    chain_name: str = "mastering",
) -> dict:
    for tool in ("lv2bench", "lv2apply"):
        if shutil.which(tool) is None:
            raise SetupError(f"{tool} not found: install lilv-utils (./install.sh does)")
    chain = Chain.load(chain_name)
    n_plugins = len({s.plugin.uri for s in chain.stages})
    total = n_plugins * len(blocks) * repeats + len(blocks) + 3
    with tqdm(total=total, desc="bench render", unit="run", leave=False) as progress:
        plugins = bench_plugins(chain, blocks, frames, repeats, progress)
        rtf = bench_chain_rtf(chain, blocks, seconds, progress)
        lv2apply = bench_vs_lv2apply(chain.world, min(seconds, 10.0), progress)
    result = {
        "baseline": "lilv-utils lv2bench / lv2apply, same run",
        "plugins_vs_lv2bench": plugins,
        "chain_rtf": {"chain": chain.name, "rate": chain.sample_rate, "rows": rtf},
        "file_vs_lv2apply": lv2apply,
    }
    print_report(result)
    write_results(result, json_path)
    return result


def print_report(result: dict) -> None:
    print("Per plugin vs lv2bench (48 kHz, defaults, silence; fastest of the repeats)")
    print(f"  {'plugin':<34} {'block':>5} {'lv2bench':>10} {'ours':>10} {'ratio':>6} {'median':>6}  goal")
    for r in result["plugins_vs_lv2bench"]:
        ok = "ok" if r["ratio_min"] <= r["goal"] else "MISSED"
        print(
            f"  {r['plugin']:<34} {r['block']:>5} {r['lv2bench_s_min'] * 1e3:>8.1f}ms "
            f"{r['ours_s_min'] * 1e3:>8.1f}ms {r['ratio_min']:>6.3f} {r['ratio_median']:>6.3f}  "
            f"≤{r['goal']:.2f} {ok}"
        )
    c = result["chain_rtf"]
    print(f"\nChain {c['chain']!r} at {c['rate']} Hz, stereo: real-time factor")
    for r in c["rows"]:
        print(
            f"  block {r['block']:>5}: {r['rtf']:7.1f}× real time "
            f"({r['elapsed_s']:.2f} s for {r['seconds_audio']:g} s)"
        )
    print("\nWhole-file render vs lv2apply (one frame per run(); whole process incl. file I/O)")
    for r in result["file_vs_lv2apply"]:
        print(
            f"  {r['plugin']}, {r['seconds_audio']:g} s: lv2apply {r['lv2apply_s']:.2f} s, "
            f"ours at block {r['ours_block']:>4} {r['ours_s']:.2f} s → ratio {r['ratio']:.3f}"
        )
