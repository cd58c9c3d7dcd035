"""``deepafx-rt``: the command line.

Subcommands live in one table (``COMMANDS``) so later ones (the live JACK
host, ``--task`` rendering with a trained model) slot in beside these.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from rt_host.errors import DeepAFxError

PROG = "deepafx-rt"


class _OneLineFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        level = {logging.WARNING: "warning: ", logging.ERROR: "error: "}.get(record.levelno, "")
        return f"{PROG}: {level}{record.getMessage()}"


def _setup_logging(quiet: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLineFormatter())
    log = logging.getLogger("rt_host")
    log.handlers[:] = [handler]
    log.setLevel(logging.WARNING if quiet else logging.INFO)
    log.propagate = False


# --- plugins ---------------------------------------------------------------
def cmd_plugins(args: argparse.Namespace) -> int:
    from rt_host.lv2 import World

    world = World.default()
    if args.query:
        try:
            plugin = world.plugin(args.query)
        except DeepAFxError:
            hits = world.search(args.query)
            if len(hits) < 2:
                raise
            _list_plugins(hits)
            print(f"\n{len(hits)} plugins match {args.query!r}; name one to see its ports")
            return 0
        print(plugin.describe())
        return 0
    _list_plugins(world.plugins)
    return 0


def _list_plugins(plugins) -> None:
    for p in plugins:
        n_in, n_out = len(p.audio_inputs), len(p.audio_outputs)
        print(f"{p.name:<44} {n_in}/{n_out}  {p.uri}")


# --- chains ----------------------------------------------------------------
def cmd_chains(args: argparse.Namespace) -> int:
    from rt_host.lv2 import Chain
    from rt_host.lv2.spec import available_chains

    if args.name:
        print(Chain.load(args.name).describe())
        return 0
    for name in available_chains():
        chain = Chain.load(name)
        print(f"{name:<14} {chain.channels} ch, {chain.n_params:>2} predicted  {chain.spec.description}")
    return 0


# --- render ----------------------------------------------------------------
def cmd_render(args: argparse.Namespace) -> int:
    from rt_host.audio import check_writable
    from rt_host.lv2 import Chain
    from rt_host.render import parse_set, render_file

    sets = parse_set(args.set or [])
    check_writable(args.output, inputs=(args.input,))
    if args.block < 1 or args.block > 16384:
        raise DeepAFxError("--block must be between 1 and 16384 frames")
    chain = Chain.load(args.chain)
    report = render_file(
        args.input,
        args.output,
        chain,
        sets=sets,
        params_file=args.params,
        block_size=args.block,
        map_channels=args.map_channels,
        subtype=args.subtype,
        compensate_latency=not args.keep_latency,
    )
    lat = f"latency {report.latency_samples} samples " + ("kept" if args.keep_latency else "compensated")
    print(
        f"rendered {report.seconds:.2f} s through {report.chain!r} at {report.chain_rate} Hz "
        f"({report.realtime_factor:.1f}× real time, {lat}) → {report.output}"
    )
    return 0


# --- bench -----------------------------------------------------------------
def cmd_bench(args: argparse.Namespace) -> int:
    if args.what == "render":
        from rt_host.bench import render

        blocks = [int(b) for b in args.blocks.split(",")]
        render.run(blocks, args.frames, args.repeats, args.seconds, args.json, args.chain)
    return 0


# --- demo ------------------------------------------------------------------
def cmd_demo(args: argparse.Namespace) -> int:
    from rt_host.demo import run_demo

    run_demo(Path(args.out))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Neural networks that drive real LV2 plugins, offline and live.",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("plugins", help="list installed LV2 plugins, or describe one")
    p.add_argument("query", nargs="?", help="a URI, a name, or part of one (any case)")
    p.set_defaults(func=cmd_plugins)

    p = sub.add_parser("chains", help="list the shipped chains, or describe one")
    p.add_argument("name", nargs="?", help="a chain name or .toml file")
    p.set_defaults(func=cmd_chains)

    p = sub.add_parser("render", help="render an audio file through a chain offline")
    p.add_argument("input", type=Path, help="input audio (any format libsndfile reads)")
    p.add_argument("output", type=Path, help="output audio; the format follows the extension")
    p.add_argument("--chain", required=True, help="chain name (see `chains`) or .toml file")
    p.add_argument(
        "--set",
        action="append",
        metavar="STAGE.SYMBOL=VALUE",
        help="set a control port (repeatable), e.g. --set limiter.th=0.5",
    )
    p.add_argument(
        "--params", type=Path, metavar="FILE", help="port values (.toml/.json) or automation over time (.csv)"
    )
    p.add_argument("--block", type=int, default=1024, help="frames per plugin run (default 1024)")
    p.add_argument(
        "--map-channels",
        choices=["auto", "duplicate", "mix", "first"],
        default="auto",
        help="how the file's channels meet the chain's (auto: only lossless mappings)",
    )
    p.add_argument("--subtype", help="output sample format, e.g. PCM_16, PCM_24, FLOAT")
    p.add_argument(
        "--keep-latency",
        action="store_true",
        help="keep the chain's latency in the output instead of compensating it",
    )
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("bench", help="benchmarks against lilv's own tools")
    bench = p.add_subparsers(dest="what", metavar="WHAT", required=True)
    b = bench.add_parser("render", help="our binding vs lv2bench and lv2apply; chain RTF")
    b.add_argument("--blocks", default="128,1024,4096", help="comma-separated block sizes")
    b.add_argument("--frames", type=int, default=1 << 20, help="frames per timing run")
    b.add_argument("--repeats", type=int, default=5, help="alternating runs per case")
    b.add_argument("--seconds", type=float, default=30.0, help="audio length for the chain RTF")
    b.add_argument("--chain", default="mastering", help="chain whose plugins are timed")
    b.add_argument("--json", type=Path, default=Path("bench-results/render.json"))
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("demo", help="master a generated example through the mastering chain")
    p.add_argument("--out", default="demo-output", help="folder for the results")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.quiet)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except DeepAFxError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
