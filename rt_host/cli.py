"""``deepafx-rt``: the command line.

Subcommands live in one table (``COMMANDS``) so later ones (the live JACK
host, ``--task`` rendering with a trained model) slot in beside these.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from pathlib import Path

from rt_host.errors import DeepAFxError
from rt_host.steer.geometry import DEFAULT_DELAY_S

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
    names = available_chains()
    width = max((len(n) for n in names), default=0)
    for name in names:
        chain = Chain.load(name)
        counts = f"{chain.channels} ch, {chain.n_params:>2} predicted"
        print(f"{name:<{width}}  {counts}  {chain.spec.description}")
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
    bundle = None
    if args.task or args.bundle:
        from rt_host.bundle import load_bundle

        if args.chain:
            raise DeepAFxError("give either a model (--task/--bundle) or --chain; the bundle names its chain")
        bundle = load_bundle(args.bundle or args.task)
        chain = Chain(bundle.chain_spec)
    elif args.chain:
        if args.params_log or args.plot:
            raise DeepAFxError("--params-log and --plot record a model's automation: add --task or --bundle")
        chain = Chain.load(args.chain)
    else:
        raise DeepAFxError("say what to render with: --chain NAME, or a model: --task NAME / --bundle DIR")
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
        bundle=bundle,
        smoothing_s=args.smoothing,
        delay_s=args.delay,
        params_log=args.params_log,
        plot=args.plot,
        progress=not args.quiet and sys.stderr.isatty(),
    )
    if bundle is not None:
        dropped = report.dropped_predictions
        lost = f", {dropped} of them NaN/Inf and dropped" if dropped else ""
        print(f"the {bundle.task!r} model ({bundle.path}) predicted {report.predictions} times "
              f"(median {report.inference_ms_p50 or 0:.1f} ms each{lost})")  # fmt: skip
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
    elif args.what == "live":
        from rt_host.bench import live

        blocks = [int(b) for b in args.blocks.split(",")]
        live.run(blocks, args.seconds, args.json, realtime=args.realtime, soak=args.soak)
    return 0


# --- live ------------------------------------------------------------------
def cmd_live(args: argparse.Namespace) -> int:
    from rt_host.bundle import bundle_dir
    from rt_host.live.host import LiveHost, LiveOptions
    from rt_host.lv2.spec import available_chains

    bundle = args.bundle
    chain = args.chain
    if bundle is None and args.task:
        if bundle_dir(args.task).is_dir():
            bundle = args.task
        elif args.task in available_chains():
            logging.getLogger("rt_host").warning(
                "no trained bundle for %r yet (exported_models/%s); running its chain at the "
                "default parameters", args.task, args.task,
            )  # fmt: skip
            chain = chain or args.task
        else:
            raise DeepAFxError(f"no bundle and no chain for task {args.task!r}")
    if bundle is None and chain is None:
        raise DeepAFxError("say what to run: --task NAME, --bundle DIR or --chain NAME")
    options = LiveOptions(
        bundle=bundle,
        chain=chain,
        client_name=args.name,
        inputs=args.inputs,
        outputs=args.outputs,
        play=args.play,
        record=args.record,
        params_log=args.params_log,
        plot=args.plot,
        freeze=args.freeze,
        smoothing_s=args.smoothing,
        delay_s=args.delay,
        controller=args.controller,
        duration=args.duration,
        status=not args.quiet,
        map_channels=args.map_channels,
        midi=not args.no_midi,
        midi_in=args.midi_in,
        midi_map=args.midi_map,
        midi_learn=args.midi_learn,
        web=args.web,
        web_token=args.web_token,
    )
    report = LiveHost(options).run()
    _print_live_summary(report, options)
    if args.stats_json:
        from rt_host.live.stats import write_stats

        write_stats(report, args.stats_json)
    return report.exit_code


def _print_live_summary(report, options) -> None:
    stream = sys.stderr if report.exit_code else sys.stdout
    late = report.steering.get("late", 0)
    extra = "".join(
        f", {n} {what}"
        for n, what in ((late, "late"), (report.dropped_predictions, "dropped (NaN/Inf)"),
                        (report.skipped_windows, "windows skipped"))
        if n
    )  # fmt: skip
    over = (
        int((report.callback_us > 1e6 * report.block / report.sample_rate).sum()) if report.sample_rate else 0
    )
    counts = f"{report.xruns} xruns, {over} callbacks over the period, {report.predictions} predictions"
    print(f"{PROG}: {report.reason} after {report.seconds:.1f} s ({counts}{extra})", file=stream)
    for label, path in (("recording", options.record), ("parameters", options.params_log),
                        ("automation plot", options.plot)):  # fmt: skip
        if path:
            print(f"  {label}: {path}", file=stream)


# --- midi ------------------------------------------------------------------
def cmd_midi(args: argparse.Namespace) -> int:
    import rtmidi

    from rt_host.live.midi import api_name, list_ports, midi_api

    api = midi_api()
    try:
        with _c_stderr_silenced():  # libjack prints its own lines when no server runs
            ports = list_ports(api)
    except rtmidi.RtMidiError as exc:
        if api == rtmidi.API_UNIX_JACK:  # no ALSA sequencer here: MIDI comes through JACK
            raise DeepAFxError(
                "no JACK server is running, and without ALSA (/dev/snd/seq) MIDI sources are JACK MIDI "
                "ports: start JACK (e.g. jackd -d alsa, or qjackctl) and list again"
            ) from None
        raise DeepAFxError(f"cannot list {api_name(api)} MIDI sources: {exc}") from None
    print(f"MIDI sources ({api_name(api)}):")
    for port in ports:
        print(f"  {port}")
    if not ports:
        print("  (none)")
    return 0


@contextlib.contextmanager
def _c_stderr_silenced():
    """Send what C libraries write to file descriptor 2 to /dev/null for a moment (Python's own
    ``sys.stderr`` writes are flushed first and go on as before afterwards)."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


# --- demo ------------------------------------------------------------------
def cmd_demo(args: argparse.Namespace) -> int:
    from rt_host.demo import run_demo

    return run_demo(Path(args.out), args.seconds, web=args.web)


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

    p = sub.add_parser("render", help="render an audio file through a chain, or a model's chain, offline")
    p.add_argument("input", type=Path, help="input audio (any format libsndfile reads)")
    p.add_argument("output", type=Path, help="output audio; the format follows the extension")
    p.add_argument("--chain", help="chain name (see `chains`) or .toml file, at fixed or --params values")
    p.add_argument("--task", help="let the task's trained model (exported_models/TASK) drive its chain")
    p.add_argument("--bundle", type=Path, metavar="DIR", help="…or the model bundle in DIR")
    p.add_argument(
        "--smoothing", type=float, default=0.1, metavar="SECONDS",
        help="time constant of the glide towards each prediction, as live (default 0.1)",
    )  # fmt: skip
    p.add_argument(
        "--delay", type=float, metavar="SECONDS",
        help=f"from a window's end to the first block its prediction steers, as live (default "
        f"{DEFAULT_DELAY_S:g} s, at most half the model's hop)",
    )  # fmt: skip
    p.add_argument("--params-log", type=Path, metavar="FILE.csv", help="write the model's automation")
    p.add_argument("--plot", type=Path, metavar="FILE.png", help="plot the model's automation")
    p.add_argument(
        "--set",
        action="append",
        metavar="STAGE.SYMBOL=VALUE",
        help="set a control port (repeatable), e.g. --set limiter.th=0.5",
    )
    p.add_argument(
        "--params", type=Path, metavar="FILE", help="port values (.toml/.json) or automation over time (.csv)"
    )
    p.add_argument(
        "--block", type=int, default=128,
        help="frames per plugin run and per automation step (default 128, the live host's usual period: "
        "at the live host's rate and period, a model's render plays what the live host plays)",
    )  # fmt: skip
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
    bench.add_parser("spsa", help="SPSA renders through the worker pools (options: bench spsa --help)")
    b = bench.add_parser("live", help="the live host vs three chained jalv on a dummy jackd")
    b.add_argument("--blocks", default="128,256", help="comma-separated JACK periods")
    b.add_argument("--seconds", type=float, default=60.0, help="length of each measured phase")
    b.add_argument("--soak", type=float, metavar="SECONDS", help="a long run instead (e.g. 600)")
    b.add_argument(
        "--realtime",
        choices=["on", "off", "both"],
        default="on",
        help="JACK server scheduling: real-time (default), not (jackd --no-realtime), or both runs",
    )
    b.add_argument("--json", type=Path, default=Path("bench-results/live.json"))
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("live", help="run as a JACK client (also: deepafx-rt --task NAME …)")
    p.add_argument("--task", help="task whose bundle (exported_models/TASK) drives the chain")
    p.add_argument("--bundle", help="a bundle folder (manifest.toml + encoder.onnx)")
    p.add_argument("--chain", help="run a chain at its defaults, without a model")
    p.add_argument("--name", default="deepafx-rt", help="JACK client name")
    p.add_argument(
        "--in",
        dest="inputs",
        nargs="*",
        metavar="PORT",
        help="ports to connect to our inputs (default: physical capture; none: leave open)",
    )
    p.add_argument(
        "--out",
        dest="outputs",
        nargs="*",
        metavar="PORT",
        help="ports to connect our outputs to (default: physical playback; none: leave open)",
    )
    p.add_argument("--play", type=Path, metavar="FILE", help="feed this file to the input, then stop")
    p.add_argument("--record", type=Path, metavar="OUT.wav", help="record the output")
    p.add_argument("--params-log", type=Path, metavar="FILE.csv", help="log the applied parameters")
    p.add_argument("--plot", type=Path, metavar="FILE.png", help="plot the parameter automation at exit")
    p.add_argument("--freeze", action="store_true", help="hold the first prediction")
    p.add_argument(
        "--smoothing",
        type=float,
        default=0.1,
        metavar="SECONDS",
        help="time constant of parameter smoothing (default 0.1 s)",
    )
    p.add_argument(
        "--delay", type=float, metavar="SECONDS",
        help=f"from a window's end to the first block its prediction steers (default {DEFAULT_DELAY_S:g} s, "
        "at most half the model's hop)",
    )  # fmt: skip
    p.add_argument(
        "--web", metavar="[HOST:]PORT",
        help="serve the control page (127.0.0.1 unless a host is given; other hosts need a token)",
    )  # fmt: skip
    p.add_argument(
        "--web-token", metavar="TOKEN", help="the token a non-loopback --web needs (default: generated)"
    )
    p.add_argument(
        "--controller",
        choices=["process", "thread"],
        default="process",
        help="where the model runs (default: a separate process)",
    )
    p.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this long")
    p.add_argument(
        "--map-channels",
        choices=["auto", "duplicate", "mix", "first"],
        default="auto",
        help="how a played file's channels meet the chain's",
    )
    p.add_argument("--midi-in", metavar="NAME", help="listen to this MIDI source (name or part of it)")
    p.add_argument("--midi-map", type=Path, metavar="FILE", help="CC → parameter map (TOML)")
    p.add_argument("--midi-learn", metavar="PARAM", help="bind PARAM to the next CC that moves; save the map")
    p.add_argument("--no-midi", action="store_true", help="no MIDI input")
    p.add_argument(
        "--stats-json",
        type=Path,
        metavar="FILE",
        help="write run statistics (callback times, inference, xruns, RSS) as JSON",
    )
    p.set_defaults(func=cmd_live)

    p = sub.add_parser("midi", help="MIDI helpers")
    midi_sub = p.add_subparsers(dest="what", metavar="WHAT", required=True)
    midi_sub.add_parser("ports", help="list the MIDI sources the live host can listen to")
    p.set_defaults(func=cmd_midi)

    p = sub.add_parser("demo", help="master an example live on a self-started dummy JACK server")
    p.add_argument("--out", default="demo-output", help="folder for the results")
    p.add_argument("--seconds", type=float, default=15.0, help="length of the example")
    p.add_argument(
        "--web", metavar="[HOST:]PORT",
        help="serve the control page while it plays (127.0.0.1 unless a host is given; other hosts get a "
        "generated token)",
    )  # fmt: skip
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:2] == ["bench", "spsa"]:
        # the training benchmark parses its own options (training/spsa/bench.py); the product itself
        # never imports training code, and runs without the training extra
        try:
            from training.spsa.bench import main as spsa_main
        except ImportError as exc:
            need = f"`bench spsa` needs the training code and its extra ({exc.name} is missing)"
            how = "run it from a checkout with `pip install -e '.[training]'` (./install.sh does)"
            print(f"{PROG}: error: {need}; {how}", file=sys.stderr)
            return 2
        return spsa_main(argv[2:])
    # `deepafx-rt --task mastering …` is the live host: route it to `live`
    first = next((i for i, a in enumerate(argv) if a not in ("-q", "--quiet")), None)
    if first is not None and argv[first].split("=")[0] in ("--task", "--bundle"):
        argv.insert(first, "live")
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
    except BrokenPipeError:  # e.g. `deepafx-rt plugins | head`: the reader left, nothing to report
        sys.stdout = None
        return 0


if __name__ == "__main__":
    sys.exit(main())
