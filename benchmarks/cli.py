"""``edge-har bench SUITE``: the benchmark suites on the command line, one row of :data:`SUITES` each.

A suite is its flags function, its run function and a :class:`Suite` row naming them, so
adding one is two functions and one row. Registration imports nothing heavier than numpy,
so ``edge-har --help`` stays fast on a Pi; each suite imports what it needs when it runs.
Every suite prints its tables on stdout, writes its section of ``<out>/results.json``
(other suites' sections in the same file are kept) and its plots next to it.
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Optional

from edge_har.benchmarks import families as _families
from edge_har.benchmarks import personalise as _personalise
from edge_har.benchmarks import pose as _pose
from edge_har.benchmarks import rollout as rollout_suite
from edge_har.core.interpreter import BACKENDS

log = logging.getLogger(__name__)

DEFAULT_OUT = "bench-results"


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _load_bundle(path: Path, variants: list[str] | tuple[str, ...] = ()) -> Any:
    """The bundle and the variants asked for, or a CommandError naming the file: every suite starts so."""
    from edge_har.core.bundle import Bundle, BundleError
    from edge_har.core.errors import CommandError

    try:
        bundle = Bundle.load(path)
    except BundleError as exc:
        raise CommandError(str(exc)) from exc
    _check_variants(bundle, variants)
    return bundle


def _check_variants(bundle: Any, names: list[str] | tuple[str, ...]) -> None:
    from edge_har.core.bundle import BundleError
    from edge_har.core.errors import CommandError

    for name in names:
        try:
            bundle.variant(name)
        except BundleError as exc:
            raise CommandError(str(exc)) from exc


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def _int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated thread counts such as 1,2,4; got {text!r}"
        ) from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"thread counts must be >= 1; got {text!r}")
    return list(dict.fromkeys(values))


def _name_list(text: str) -> list[str]:
    values = [part.strip() for part in text.split(",") if part.strip()]
    if not values:
        raise argparse.ArgumentTypeError("expected at least one name")
    return values


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", type=Path, metavar="BUNDLE", help="model bundle directory (holding bundle.json)")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(DEFAULT_OUT),
        metavar="DIR",
        help=f"where results.json and the PNG plots go (default: ./{DEFAULT_OUT}); a results.json already there "
        "keeps the other suites' sections",
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        metavar="FILE",
        help="write the results to this file instead of <out>/results.json (e.g. a kept file under benchmarks/results/)",
    )
    parser.add_argument(
        "--compare",
        type=Path,
        default=None,
        metavar="FILE",
        help="a results file from an earlier run (or another machine): print this run's figures beside it",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a short run for CI and smoke tests (under two minutes on the test bundle): fewer runs, one thread",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")


def _add_data(parser: argparse.ArgumentParser, required: bool, help_text: str) -> None:
    """``--data`` and the data set loader's options (format, column mapping, ...) from ``edge_har.convert.datasets``."""
    from edge_har.convert.datasets import add_dataset_arguments

    add_dataset_arguments(parser, required=required)
    for action in parser._actions:  # noqa: SLF001 - say what --data means for this suite
        if "--data" in action.option_strings:
            action.help = help_text
            break


def register(subparsers: Any) -> None:
    bench = subparsers.add_parser(
        "bench",
        description=(
            "Benchmark suites that run unchanged on a workstation and on a Raspberry Pi. Each prints a table, "
            "writes every figure with the machine, runtime versions, git commit and date to a JSON results file, "
            "and draws PNG plots. See benchmarks/README.md."
        ),
    )
    suites = bench.add_subparsers(dest="suite", metavar="SUITE", required=True)
    for suite in SUITES:
        suite.add_to(suites)


@dataclass(frozen=True)
class Suite:
    """One ``edge-har bench`` suite: its sub-command's texts, its own flags and the function that runs it.

    A suite is one row of :data:`SUITES`, so every suite gets the shared flags the same way.
    ``shared="bundle"`` puts BUNDLE and :func:`_add_common`'s flags (--out, --json, --compare,
    --quick, --no-progress) before the suite's own; ``shared="output"`` puts :func:`_add_output`'s
    (--out, --json, --no-progress) after them, for suites that take no bundle or name their own;
    ``shared="own"`` adds none, for a suite whose --out means something else (``bench families``: required).
    """

    name: str
    help: str
    description: str
    flags: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    shared: Literal["bundle", "output", "own"]
    formatter_class: type[argparse.HelpFormatter] = argparse.ArgumentDefaultsHelpFormatter
    epilog: Optional[str] = None

    def add_to(self, suites: Any) -> None:
        """Add this suite's sub-parser to ``edge-har bench``'s sub-commands."""
        p = suites.add_parser(
            self.name,
            help=self.help,
            description=self.description,
            formatter_class=self.formatter_class,
            epilog=self.epilog,
        )
        if self.shared == "bundle":
            _add_common(p)
        self.flags(p)
        if self.shared == "output":
            _add_output(p)
        p.set_defaults(func=self.run)


# ---------------------------------------------------------------- latency


def _latency_flags(p: argparse.ArgumentParser) -> None:
    from edge_har.benchmarks.latency import DEFAULT_RUNS, DEFAULT_WARMUP

    p.add_argument(
        "--variants",
        type=_name_list,
        default=None,
        metavar="A,B",
        help="variants to time, comma-separated (default: all of the bundle's)",
    )
    p.add_argument(
        "--runtimes",
        type=_name_list,
        default=list(BACKENDS),
        metavar="A,B",
        help="TFLite runtimes to try; those not installed get a 'not installed' row",
    )
    p.add_argument(
        "--threads",
        type=_int_list,
        default=None,
        metavar="1,2,4",
        help="interpreter thread counts (default: 1, 2, 4 up to the number of cores)",
    )
    count = p.add_mutually_exclusive_group()
    count.add_argument(
        "--runs", type=_positive_int, default=None, help=f"timed runs per step (default: {DEFAULT_RUNS})"
    )
    count.add_argument(
        "--min-seconds",
        type=_positive_float,
        default=None,
        metavar="S",
        help="time each step for at least S seconds instead of a fixed count",
    )
    p.add_argument(
        "--warmup", type=_non_negative_int, default=None, help=f"untimed runs first (default: {DEFAULT_WARMUP})"
    )
    p.add_argument(
        "--keras-runs",
        type=_positive_int,
        default=None,
        help="cap on timed Keras calls per step (model.predict costs tens of ms; default: 100)",
    )
    p.add_argument(
        "--no-keras", action="store_true", help="do not time the Keras model even when TensorFlow is installed"
    )
    p.add_argument(
        "--in-process",
        action="store_true",
        help="run all steps in this process: faster, but peak memory cannot be told apart per runtime and is left out",
    )
    p.add_argument(
        "--paced-runs",
        type=_non_negative_int,
        default=None,
        metavar="N",
        help="also time N calls spaced --pace apart in real time, as the daemon meets windows (cold caches); "
        "0: back to back only (default: 20; --quick: 3 at most 0.1 s apart)",
    )
    p.add_argument(
        "--pace",
        type=_positive_float,
        default=None,
        metavar="S",
        help="seconds between paced calls (default: the bundle's stride, e.g. 0.5 s for HMP)",
    )
    p.add_argument(
        "--no-floor",
        action="store_true",
        help="leave out the floor (MACs per window from the .tflite graph, and their time at this CPU's "
        "one-thread peak, measured with TensorFlow-built probe models)",
    )
    p.add_argument(
        "--peers",
        type=_name_list,
        default=None,
        metavar="onnxruntime",
        help="also time other runtimes on the same windows: onnxruntime (the float model converted with tf2onnx, "
        "ONNX Runtime float32 and its dynamic/static int8 quantizations, agreement with LiteRT float32); needs "
        "the bench and train extras",
    )
    p.add_argument(
        "--profile",
        default=None,
        metavar="VARIANT",
        help="also print the per-op profile of this variant (edge_har.benchmarks.profile_ops), to name a slow op",
    )
    _add_data(
        p,
        required=False,
        help_text=(
            "time real windows from this data set (the bundle's test split when it is found, normalised with the "
            "bundle's preprocessing); random windows otherwise, since zeros hide data-dependent cost"
        ),
    )


def run_latency_command(args: argparse.Namespace) -> int:
    from edge_har.benchmarks.latency import LatencySettings, dataset_inputs, format_latency, random_inputs, run_latency
    from edge_har.core.errors import CommandError

    bundle = _load_bundle(args.bundle)
    settings = LatencySettings.quick_settings() if args.quick else LatencySettings()
    overrides = {
        "variants": args.variants,
        "runtimes": args.runtimes,
        "threads": args.threads,
        "warmup": args.warmup,
        "keras_runs": args.keras_runs,
        "profile": args.profile,
    }
    for key, value in overrides.items():
        if value is not None:
            setattr(settings, key, value)
    if args.min_seconds is not None:
        settings.runs, settings.min_seconds = None, args.min_seconds
    elif args.runs is not None:
        settings.runs = args.runs
    settings.keras = not args.no_keras
    settings.isolate = not args.in_process
    if args.paced_runs is not None:
        settings.paced_runs = args.paced_runs
    if args.pace is not None:
        settings.pace_s, settings.max_pace_s = args.pace, None
    settings.floor = not args.no_floor
    if args.peers:
        from edge_har.benchmarks.peers import PEERS

        unknown = [peer for peer in args.peers if peer not in PEERS]
        if unknown:
            raise CommandError(f"--peers: unknown peer(s) {', '.join(unknown)}; choose from {', '.join(PEERS)}")
        settings.peers = list(args.peers)
    _check_variants(bundle, (settings.variants or []) + ([settings.profile] if settings.profile else []))
    from edge_har.core.interpreter import BACKENDS

    bad = [r for r in settings.runtimes if r not in BACKENDS]
    if bad:
        raise CommandError(f"--runtimes: unknown runtime(s) {', '.join(bad)}; choose from {', '.join(BACKENDS)}")

    shape = tuple(bundle.input_shape[1:])
    if getattr(args, "data", None):
        dataset = _load_dataset(args, bundle)
        inputs, info = dataset_inputs(bundle, dataset, limit=64 if args.quick else 256)
    else:
        inputs = random_inputs(shape)
        info = {"source": "random", "detail": "standard normal, seed 0, 64 windows", "windows": len(inputs)}
    section = run_latency(bundle, settings, inputs, info, progress=not args.no_progress)
    _finish(args, section, "latency", format_latency(section))
    return 0


def _load_dataset(args: argparse.Namespace, bundle: Any = None) -> Any:
    """The data set of ``--data``; data-set flags not given (and ``--data`` itself) come from the bundle."""
    from edge_har.convert.datasets import dataset_from_args
    from edge_har.convert.evaluate import fill_data_flags
    from edge_har.core.errors import CommandError

    try:
        if bundle is not None:
            fill_data_flags(args, bundle.data, where=str(bundle.root / "bundle.json"))
        return dataset_from_args(args)
    except (OSError, ValueError) as exc:
        raise CommandError(f"--data {args.data}: {exc}") from exc


def _finish(args: argparse.Namespace, section: dict[str, Any], suite: str, text: str) -> None:
    """Plots, the JSON section, the comparison and the terminal output, in that order."""
    from edge_har.benchmarks import report
    from edge_har.core.errors import CommandError

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    plots = section.setdefault("plots", {})
    try:
        if suite == "latency":
            png = report.latency_png(
                section["rows"], out / "latency.png", f"Latency per window: {section['bundle']['model_id']}"
            )
            if png:
                plots["latency"] = str(png)
        elif suite == "accuracy":
            from edge_har.benchmarks.accuracy import accuracy_plot_entries

            png = report.accuracy_png(
                accuracy_plot_entries(section), out / "accuracy.png", f"Test split: {section['bundle']['model_id']}"
            )
            if png:
                plots["accuracy"] = str(png)
    except Exception as exc:  # a missing matplotlib must not lose the figures
        log.warning("plot not drawn: %s", exc)
    # Read the comparison before writing: --compare may name the very file this run is about to update.
    comparison = _comparison(args.compare, section, suite) if args.compare else None
    json_path = args.json or out / report.RESULTS_FILE
    try:
        written = report.write_section(json_path, section)
    except report.ReportError as exc:
        raise CommandError(f"{exc}; choose another --out or --json") from exc
    print(text)
    if comparison:
        print()
        print(comparison)
    print(f"\nresults: {written}" + (f"; plots: {', '.join(plots.values())}" if plots else ""))


def _comparison(path: Path, section: dict[str, Any], suite: str) -> str:
    from edge_har.benchmarks import report
    from edge_har.core.errors import CommandError

    try:
        previous = report.suite_section(path, suite)
    except report.ReportError as exc:
        raise CommandError(f"--compare: {exc}") from exc
    m = previous.get("machine", {})
    title = (
        f"Compared with {path} ({previous.get('date')}, {m.get('cpu_model')}, "
        f"commit {((previous.get('git') or {}).get('commit') or '?')[:10]})"
    )
    if suite in ("latency", "pose"):  # p50 per (variant, runtime or part, threads)
        rows_key, middle = ("rows", "runtime") if suite == "latency" else ("latency", "part")
        rows = report.compare_rows(
            section[rows_key], previous.get(rows_key, []), ("variant", middle, "threads"), "p50_ms"
        )
        headers = ["variant", middle, "thr", "p50 ms then", "p50 ms now", "now/then"]
        table = [
            [
                r["variant"],
                r[middle],
                r["threads"],
                r["previous"],
                r["current"],
                "-" if r["ratio"] is None else f"{r['ratio']:.2f}x",
            ]
            for r in rows
        ]
    elif suite == "e2e":
        then = {p["phase"]: p for p in previous.get("phases", [])}
        headers = ["phase", "figure", "then", "now", "now/then"]
        table = []
        for phase in section.get("phases", []):
            old = then.get(phase["phase"], {})
            for figure, get in (
                ("latency p50 ms", lambda p: (p.get("latency_ms") or {}).get("p50_ms")),
                ("latency p99 ms", lambda p: (p.get("latency_ms") or {}).get("p99_ms")),
                ("windows/s", lambda p: p.get("windows_per_s")),
                ("CPU % of a core", lambda p: p.get("cpu_percent_of_one_core")),
                ("RSS MB peak", lambda p: p.get("rss_mb_peak")),
            ):
                a, b = get(old), get(phase)
                if a is None and b is None:
                    continue
                ratio = f"{b / a:.2f}x" if isinstance(a, (int, float)) and isinstance(b, (int, float)) and a else "-"
                table.append([phase["phase"], figure, a, b, ratio])
    elif suite == "web-predict":
        from edge_har.benchmarks.web_predict import comparison_rows

        headers = ["time", "figure", "then", "now", "now/then"]
        table = comparison_rows(section, previous)
    else:
        now = {e["name"]: e for e in _score_rows(section)}
        then = {e["name"]: e for e in _score_rows(previous)}
        headers = ["model", "accuracy then", "accuracy now", "change (points)"]
        table = []
        for name, entry in now.items():
            old = then.get(name, {}).get("accuracy")
            new = entry.get("accuracy")
            change = None if old is None or new is None else 100 * (new - old)
            table.append([name, old, new, change])
    return report.format_table(headers, table, title=title)


def _score_rows(section: dict[str, Any]) -> list[dict[str, Any]]:
    from edge_har.benchmarks.accuracy import accuracy_plot_entries

    return accuracy_plot_entries(section)


# ---------------------------------------------------------------- accuracy


def _accuracy_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--variants",
        type=_name_list,
        default=None,
        metavar="A,B",
        help="variants to score (default: all; float32 is always scored, it is the reference)",
    )
    p.add_argument("--runtime", default="auto", help="TFLite runtime for the variants (auto: the device's choice)")
    p.add_argument("--trees", type=_positive_int, default=None, help="random-forest trees (default: 200, --quick 50)")
    p.add_argument("--no-baseline", action="store_true", help="skip the random-forest baseline")
    p.add_argument("--no-streaming", action="store_true", help="skip streaming accuracy")
    p.add_argument("--seed", type=int, default=0, help="random seed of the baseline")
    stream = p.add_argument_group("streaming accuracy (scored without smoothing and with the smoothing below)")
    stream.add_argument(
        "--stream-variant",
        default=None,
        metavar="VARIANT",
        help="variant replayed (default: the bundle's default variant, what the daemon runs)",
    )
    stream.add_argument(
        "--smoothing-method",
        choices=["mean_prob", "majority"],
        default=None,
        help="smoothing method (default: the daemon's default, mean_prob)",
    )
    stream.add_argument(
        "--smoothing-window",
        type=_positive_int,
        default=None,
        metavar="N",
        help="windows smoothed over (default: the daemon's default, 5)",
    )
    stream.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="confidence under which the label is 'unknown' (default: the daemon's default, 0)",
    )
    _add_data(
        p,
        required=False,
        help_text="the data set the bundle was converted from (its test split is re-created from bundle.json; "
        "default: the path bundle.json records, read with the data-set flags convert was given)",
    )
    from edge_har.convert.cli import add_event_arguments

    add_event_arguments(p)


def run_accuracy_command(args: argparse.Namespace) -> int:
    from edge_har.benchmarks.accuracy import AccuracySettings, format_accuracy, run_accuracy
    from edge_har.core.errors import CommandError

    bundle = _load_bundle(args.bundle, args.variants or [])
    settings = AccuracySettings.quick_settings() if args.quick else AccuracySettings()
    if args.variants:
        settings.variants = (
            list(dict.fromkeys(["float32"] + args.variants)) if "float32" in bundle.variants else args.variants
        )
    if args.trees:
        settings.trees = args.trees
    settings.runtime = args.runtime
    settings.baseline = not args.no_baseline
    settings.streaming = not args.no_streaming
    settings.seed = args.seed
    _check_variants(bundle, [args.stream_variant] if args.stream_variant else [])
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        raise CommandError(f"--threshold must be in [0, 1], got {args.threshold}")
    settings.stream_variant = args.stream_variant
    settings.smoothing_method = args.smoothing_method
    settings.smoothing_window = args.smoothing_window
    settings.threshold = args.threshold
    from edge_har.convert.cli import event_options

    settings.events = event_options(args)
    if settings.events and settings.events["positive"] not in bundle.labels:
        raise CommandError(
            f"--positive-class {args.positive_class!r}: not a class of the model ({', '.join(bundle.labels)})"
        )
    dataset = _load_dataset(args, bundle)
    try:
        section = run_accuracy(bundle, dataset, settings, out_dir=args.out, progress=not args.no_progress)
    except ValueError as exc:  # EvaluationError and friends name the data and the key
        raise CommandError(str(exc)) from exc
    _finish(args, section, "accuracy", format_accuracy(section))
    return 0


# ---------------------------------------------------------------- e2e


def _e2e_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--seconds",
        type=_positive_float,
        default=None,
        metavar="S",
        help="how long to measure after the first prediction (default: 30, --quick 8)",
    )
    p.add_argument("--variant", default=None, help="variant the daemon runs (default: the bundle's default)")
    p.add_argument(
        "--speed",
        type=_positive_float,
        default=None,
        help="replay speed as a multiple of real time (default: 1, what a sensor delivers); "
        "higher speeds measure the sustainable throughput",
    )
    p.add_argument("--mosquitto", default=None, metavar="PATH", help="mosquitto binary (default: found on PATH)")
    _add_data(p, required=False, help_text="replay recordings of this data set (default: synthetic recordings)")


def run_e2e_command(args: argparse.Namespace) -> int:
    from edge_har.benchmarks.e2e import E2EError, E2ESettings, format_e2e, run_e2e
    from edge_har.core.errors import CommandError

    bundle = _load_bundle(args.bundle, [args.variant] if args.variant else [])
    settings = E2ESettings.quick_settings() if args.quick else E2ESettings()
    if args.seconds:
        settings.seconds = args.seconds
    if args.speed:
        settings.speed = args.speed
    settings.variant = args.variant
    settings.mosquitto = args.mosquitto
    dataset = _load_dataset(args) if getattr(args, "data", None) else None
    started = time.perf_counter()
    try:
        section = run_e2e(bundle, settings, dataset=dataset, work_dir=args.out, progress=not args.no_progress)
    except E2EError as exc:
        raise CommandError(str(exc)) from exc
    log.debug("e2e suite took %.1f s", time.perf_counter() - started)
    _finish(args, section, "e2e", format_e2e(section))
    return 0


# ---------------------------------------------------------------- fleet


def _add_output(parser: argparse.ArgumentParser) -> None:
    """--out, --json and --no-progress for the suites that take no bundle."""
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(DEFAULT_OUT),
        metavar="DIR",
        help=f"where results.json and the PNG plots go (default: ./{DEFAULT_OUT}); other suites' sections are kept",
    )
    parser.add_argument(
        "--json", type=Path, default=None, metavar="FILE", help="write the results to this file instead"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress lines on stderr")
    parser.set_defaults(compare=None)


def _qos(text: str) -> int:
    if text not in ("0", "1", "2"):
        raise argparse.ArgumentTypeError(f"QoS is 0, 1 or 2; got {text!r}")
    return int(text)


def _fleet_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--devices", type=_positive_int, default=100, help="simulated devices in the main run")
    p.add_argument("--rate", type=_positive_float, default=10.0, help="predictions per second per device")
    p.add_argument("--duration", type=_positive_float, default=60.0, metavar="S", help="seconds of publishing")
    p.add_argument("--qos", type=_qos, default=1, help="QoS of the predictions and the subscriptions")
    p.add_argument(
        "--broker",
        default=None,
        metavar="HOST:PORT",
        help="an existing broker (anonymous access) instead of a private mosquitto; its CPU is then not measured",
    )
    p.add_argument("--mosquitto", default=None, metavar="PATH", help="mosquitto binary (default: found on PATH)")
    p.add_argument(
        "--workers",
        type=_positive_int,
        default=None,
        help="publisher processes (default: one per core, more when a process would hold over 250 devices)",
    )
    p.add_argument("--subscribers", type=_positive_int, default=1, help="subscriber processes splitting the devices")
    p.add_argument(
        "--max-p99-ms",
        type=_positive_float,
        default=1000.0,
        metavar="MS",
        help="a trial whose delivery p99 exceeds this is not sustained",
    )
    search = p.add_argument_group("capacity search")
    search.add_argument("--search", action="store_true", help="after the main run, find the largest sustained count")
    search.add_argument("--search-rate", type=_positive_float, default=10.0, help="predictions/s per device")
    search.add_argument("--search-start", type=_positive_int, default=50, help="devices in the first trial")
    search.add_argument("--search-trial-s", type=_positive_float, default=15.0, metavar="S", help="seconds per trial")
    search.add_argument(
        "--search-budget-s",
        type=_positive_float,
        default=300.0,
        metavar="S",
        help="no new trial starts once the previous trial's length would overrun this total",
    )


def run_fleet_command(args: argparse.Namespace) -> int:
    from edge_har.benchmarks.fleet import FleetError, FleetSettings, fleet_png, format_fleet, run_fleet
    from edge_har.core.errors import CommandError

    settings = FleetSettings(
        devices=args.devices,
        rate_hz=args.rate,
        duration_s=args.duration,
        qos=args.qos,
        broker=args.broker,
        mosquitto=args.mosquitto,
        workers=args.workers,
        subscribers=args.subscribers,
        max_p99_ms=args.max_p99_ms,
        search=args.search,
        search_rate_hz=args.search_rate,
        search_start=args.search_start,
        search_trial_s=args.search_trial_s,
        search_budget_s=args.search_budget_s,
        progress=not args.no_progress,
    )
    try:
        section = run_fleet(settings)
    except FleetError as exc:
        raise CommandError(str(exc)) from exc
    _plot(section, "fleet", lambda path: fleet_png(section, path), args.out / "fleet.png")
    _finish(args, section, "fleet", format_fleet(section))
    return 0


def _plot(section: dict[str, Any], name: str, draw: Any, path: Path) -> None:
    """Draw one optional plot into section["plots"]; without matplotlib the figures still stand."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        png = draw(path)
    except Exception as exc:  # noqa: BLE001 - a missing matplotlib (a train/bench extra) must not lose the figures
        log.warning("%s plot not drawn: %s", name, exc)
        return
    if png:
        section.setdefault("plots", {})[name] = str(png)


# ---------------------------------------------------------------- soak


def _soak_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle", type=Path, metavar="BUNDLE", help="model bundle directory (holding bundle.json)")
    p.add_argument("--duration", type=_positive_float, default=600.0, metavar="S", help="seconds of soak")
    p.add_argument(
        "--warmup",
        type=_non_negative_float,
        default=240.0,
        metavar="S",
        help="seconds left out of the slope's fit (at most 40%% of --duration): the daemon's latency reservoirs "
        "(20,000 windows) fill in the first minutes",
    )
    pace = p.add_mutually_exclusive_group()
    pace.add_argument("--speed", type=_positive_float, default=50.0, help="replay speed, a multiple of real time")
    pace.add_argument("--unpaced", action="store_true", help="replay as fast as the daemon takes it (lossless)")
    p.add_argument("--variant", default=None, help="variant the daemon runs (default: the bundle's default)")
    p.add_argument(
        "--flat-mb-per-h", type=_positive_float, default=1.0, metavar="MB", help="largest slope still called flat"
    )
    p.add_argument("--mosquitto", default=None, metavar="PATH", help="mosquitto binary (default: found on PATH)")


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def run_soak_command(args: argparse.Namespace) -> int:
    from edge_har.benchmarks.soak import SoakError, SoakSettings, format_soak, run_soak, soak_png
    from edge_har.core.errors import CommandError

    bundle = _load_bundle(args.bundle, [args.variant] if args.variant else [])
    if bundle.kind != "sensor":
        raise CommandError(f"{args.bundle}: a {bundle.kind} bundle; the soak replays sensor data (a sensor bundle)")
    settings = SoakSettings(
        duration_s=args.duration,
        warmup_s=args.warmup,
        speed=args.speed,
        unpaced=args.unpaced,
        variant=args.variant,
        mosquitto=args.mosquitto,
        flat_mb_per_h=args.flat_mb_per_h,
        progress=not args.no_progress,
    )
    try:
        section = run_soak(bundle, settings)
    except SoakError as exc:
        raise CommandError(str(exc)) from exc
    _plot(section, "soak", lambda path: soak_png(section, path), args.out / "soak.png")
    _finish(args, section, "soak", format_soak(section))
    return 0


# ---------------------------------------------------------------- faults


def _faults_flags(p: argparse.ArgumentParser) -> None:
    from edge_har.benchmarks.faults import SCENARIOS

    p.add_argument(
        "--seconds",
        type=_positive_float,
        default=None,
        metavar="S",
        help="run length per scenario (default: 15, --quick 6)",
    )
    p.add_argument(
        "--kills",
        type=_positive_int,
        default=None,
        metavar="K",
        help="broker deaths per kill/restart scenario (default: 3, --quick 2)",
    )
    p.add_argument(
        "--down",
        type=_positive_float,
        default=None,
        metavar="S",
        help="seconds the broker stays away each time (default: 1.5, --quick 1)",
    )
    p.add_argument(
        "--queue-size",
        type=_positive_int,
        default=None,
        metavar="N",
        help="the daemon's mqtt.queue_size (default: 1000)",
    )
    p.add_argument(
        "--scenarios", type=_name_list, default=None, metavar="A,B", help=f"subset of: {', '.join(SCENARIOS)}"
    )
    p.add_argument("--mosquitto", default=None, metavar="PATH", help="mosquitto binary (default: found on PATH)")


def run_faults_command(args: argparse.Namespace) -> int:
    from edge_har.benchmarks.faults import SCENARIOS, FaultSettings, format_faults, run_faults
    from edge_har.core.errors import CommandError

    bundle = _load_bundle(args.bundle)
    settings = FaultSettings.quick_settings() if args.quick else FaultSettings()
    for name, value in (
        ("seconds", args.seconds),
        ("kills", args.kills),
        ("down_s", args.down),
        ("queue_size", args.queue_size),
        ("mosquitto", args.mosquitto),
    ):
        if value is not None:
            setattr(settings, name, value)
    if args.scenarios:
        unknown = sorted(set(args.scenarios) - set(SCENARIOS))
        if unknown:
            raise CommandError(f"--scenarios: unknown {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
        settings.scenarios = tuple(args.scenarios)
    section = run_faults(bundle, settings, progress=not args.no_progress)
    _finish(args, section, "faults", format_faults(section))
    return 0


# ---------------------------------------------------------------- web-predict (edge-har serve)


def _web_predict_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--requests", type=_positive_int, default=None, help="measured requests (default: 300, --quick 40)")
    p.add_argument("--warmup", type=_non_negative_int, default=None, help="requests not counted (default: 20)")
    p.add_argument("--seconds", type=_positive_float, default=3.0, help="length of the uploaded recording")
    p.add_argument("--variant", default=None, help="variant the server loads (default: the bundle's default)")
    p.add_argument(
        "--recording", type=Path, default=None, metavar="FILE", help="upload the start of this recording file"
    )


def run_web_predict_command(args: argparse.Namespace) -> int:
    from edge_har.core.errors import CommandError, require_modules

    require_modules(("fastapi", "uvicorn", "multipart"), "web", "edge-har bench web-predict needs the web extra")
    from edge_har.benchmarks.web_predict import WebPredictError, WebPredictSettings, format_web_predict, run_web_predict

    bundle = _load_bundle(args.bundle, [args.variant] if args.variant else [])
    settings = WebPredictSettings.quick_settings() if args.quick else WebPredictSettings()
    settings.seconds, settings.variant, settings.recording = args.seconds, args.variant, args.recording
    if args.requests:
        settings.requests = args.requests
    if args.warmup is not None:
        settings.warmup = args.warmup
    try:
        section = run_web_predict(bundle, settings, progress=not args.no_progress)
    except WebPredictError as exc:
        raise CommandError(str(exc)) from exc
    _finish(args, section, "web-predict", format_web_predict(section))
    return 0


# ---------------------------------------------------------------- web-ingest (edge-har serve)


def _rate_list(text: str) -> list[int]:
    try:
        rates = [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected predictions/s such as 500,1000,2000; got {text!r}") from None
    if not rates or any(r < 1 for r in rates):
        raise argparse.ArgumentTypeError(f"rates must be >= 1 prediction per second; got {text!r}")
    return sorted(set(rates))


def _web_ingest_flags(p: argparse.ArgumentParser) -> None:
    from edge_har.benchmarks.web_ingest import BASELINE_REV, DEFAULT_POSTGRES, DEFAULT_RATES

    p.add_argument(
        "--backlog",
        type=int,
        default=40_000,
        metavar="N",
        help="the drain comparison: N predictions queued while serve is away, then drained by the baseline's "
        "serve and this checkout's (default: 40000; 0 skips it)",
    )
    p.add_argument(
        "--baseline",
        default=BASELINE_REV,
        metavar="REV",
        help=f"git revision whose serve drains beside this checkout's (default: {BASELINE_REV}; none: skip it)",
    )
    p.add_argument(
        "--processes",
        type=_rate_list,
        default=[1, 2, 4],
        metavar="N,N,...",
        help="ingest process counts this checkout's serve drains PostgreSQL with (default: 1,2,4)",
    )
    p.add_argument(
        "--rates",
        type=_rate_list,
        default=[],
        metavar="N,N,...",
        help="also step paced publishing up through these predictions/s in total "
        f"(e.g. {','.join(map(str, DEFAULT_RATES))}; default: none)",
    )
    p.add_argument("--devices", type=_positive_int, default=20, help="device ids the predictions cycle through (20)")
    p.add_argument("--trial-s", type=_positive_float, default=10.0, metavar="S", help="seconds per rate (10)")
    p.add_argument(
        "--max-drain-s",
        type=_positive_float,
        default=1.0,
        metavar="S",
        help="a rate is kept up when the store holds everything within S after publishing stops (1)",
    )
    p.add_argument(
        "--backends",
        type=_name_list,
        default=["sqlite", "postgresql"],
        metavar="LIST",
        help="sqlite, postgresql or both (default: sqlite,postgresql)",
    )
    p.add_argument(
        "--postgres-url",
        default=DEFAULT_POSTGRES,
        metavar="URL",
        help=f"a PostgreSQL server where a database edge_har_bench_<random> may be created and dropped "
        f"(default: {DEFAULT_POSTGRES})",
    )
    p.add_argument("--mosquitto", default=None, metavar="PATH", help="mosquitto binary (default: found on PATH)")


def run_web_ingest_command(args: argparse.Namespace) -> int:
    from edge_har.core.errors import CommandError, require_modules

    require_modules(("fastapi", "uvicorn", "sqlalchemy"), "web", "edge-har bench web-ingest needs the web extra")
    from edge_har.benchmarks.web_ingest import WebIngestError, WebIngestSettings, format_web_ingest, run_web_ingest

    unknown = sorted(set(args.backends) - {"sqlite", "postgresql"})
    if unknown:
        raise CommandError(f"--backends: unknown {', '.join(unknown)}; choose sqlite, postgresql or both")
    settings = WebIngestSettings(
        rates=tuple(args.rates),
        devices=args.devices,
        trial_s=args.trial_s,
        max_drain_s=args.max_drain_s,
        backends=tuple(args.backends),
        postgres_url=args.postgres_url,
        mosquitto=args.mosquitto,
        progress=not args.no_progress,
        backlog=max(0, args.backlog),
        baseline=None if args.baseline.lower() == "none" else args.baseline,
        processes=tuple(args.processes),
    )
    try:
        section = run_web_ingest(settings)
    except WebIngestError as exc:
        raise CommandError(str(exc)) from exc
    _finish(args, section, "web-ingest", format_web_ingest(section))
    return 0


# ---------------------------------------------------------------- serve-faults (edge-har serve under faults)


def _serve_faults_flags(p: argparse.ArgumentParser) -> None:
    from edge_har.benchmarks.serve_faults import SCENARIOS

    p.add_argument("--devices", type=_positive_int, default=20, help="simulated devices")
    p.add_argument("--rate", type=_positive_float, default=5.0, help="predictions per second per device")
    p.add_argument(
        "--before",
        type=_positive_float,
        default=None,
        metavar="S",
        help="publishing before the fault (default: 6, --quick 3)",
    )
    p.add_argument(
        "--down",
        type=_positive_float,
        default=None,
        metavar="S",
        help="how long the fault holds (default: 4, --quick 2)",
    )
    p.add_argument(
        "--after",
        type=_positive_float,
        default=None,
        metavar="S",
        help="publishing after the fault (default: 10, --quick 6)",
    )
    p.add_argument(
        "--max-queued",
        type=_positive_int,
        default=10000,
        metavar="N",
        help="mosquitto's max_queued_messages (what it keeps for the server while it is away)",
    )
    p.add_argument(
        "--scenarios",
        type=_name_list,
        default=list(SCENARIOS),
        metavar="A,B",
        help=f"subset of: {', '.join(SCENARIOS)}",
    )
    p.add_argument("--quick", action="store_true", help="shorter phases: 3 s, 2 s, 6 s (about 20 s a scenario)")
    p.add_argument("--mosquitto", default=None, metavar="PATH", help="mosquitto binary (default: found on PATH)")
    p.add_argument(
        "--postgres-bin",
        default=None,
        metavar="DIR",
        help="folder with initdb and pg_ctl (default: PATH, then /usr/lib/postgresql/*/bin)",
    )


def run_serve_faults_command(args: argparse.Namespace) -> int:
    from edge_har.core.errors import CommandError, require_modules

    require_modules(("fastapi", "uvicorn", "sqlalchemy"), "web", "edge-har bench serve-faults needs the web extra")
    from edge_har.benchmarks.serve_faults import SCENARIOS, ServeFaultsSettings, format_serve_faults, run_serve_faults

    unknown = sorted(set(args.scenarios) - set(SCENARIOS))
    if unknown:
        raise CommandError(f"--scenarios: unknown {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    settings = ServeFaultsSettings.quick_settings() if args.quick else ServeFaultsSettings()
    for name, value in (("before_s", args.before), ("down_s", args.down), ("after_s", args.after)):
        if value is not None:
            setattr(settings, name, value)
    settings.devices, settings.rate_hz, settings.max_queued = args.devices, args.rate, args.max_queued
    settings.scenarios = tuple(dict.fromkeys(args.scenarios))
    settings.mosquitto, settings.postgres_bin = args.mosquitto, args.postgres_bin
    settings.progress = not args.no_progress
    section = run_serve_faults(settings)
    _finish(args, section, "serve-faults", format_serve_faults(section))
    return 0


# ---------------------------------------------------------------- video


def _video_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--clip", type=Path, default=None, metavar="FILE", help="clip file for the fps run (default: synthetic)"
    )
    p.add_argument("--variants", type=_name_list, default=None, metavar="A,B", help="variants (default: all)")
    p.add_argument("--threads", type=_int_list, default=None, metavar="N,N", help="interpreter threads (default: 1)")
    p.add_argument(
        "--strides",
        type=_int_list,
        default=None,
        metavar="N,N",
        help="speed-up strides (default: 1,2,4,8; --quick 1,4)",
    )
    p.add_argument(
        "--broker", default=None, metavar="HOST[:PORT]", help="also run the real daemon on the clip, publishing here"
    )


def run_video_command(args: argparse.Namespace) -> int:
    from edge_har.benchmarks.video import VideoBenchError, VideoSettings, format_video, run_video
    from edge_har.core.bundle import BundleError
    from edge_har.core.errors import CommandError

    bundle = _load_bundle(args.bundle, args.variants or [])
    if _pose.is_pose_bundle(bundle):  # two pose models + a head, not one encoder: the pose suite measures it
        return _pose_from_bench_video(args, bundle)
    settings = VideoSettings.quick_settings() if args.quick else VideoSettings()
    for name in ("variants", "threads", "strides", "clip", "broker"):
        if getattr(args, name) is not None:
            setattr(settings, name, getattr(args, name))
    try:
        section = run_video(args.bundle, settings, args.out)
    except (VideoBenchError, BundleError) as exc:
        raise CommandError(str(exc)) from exc
    _finish(args, section, "video", format_video(section))
    return 0


def _pose_from_bench_video(args: argparse.Namespace, bundle: Any) -> int:
    """``bench video`` given a pose bundle: the pose suite (``bench pose``) on --clip, else the bundle's own clips."""
    from edge_har.core.errors import CommandError

    data = args.clip
    if data is None:
        recorded = ((bundle.data.get("provenance") or {}).get("dataset") or {}).get("path")
        if not recorded or not Path(recorded).is_dir():
            raise CommandError(
                f"{bundle.root}: a pose bundle, measured by edge-har bench pose {bundle.root} --data CLIPS "
                f"(or give bench video --clip FILE); its training clips ({recorded or 'not recorded'}) are not here"
            )
        data = Path(recorded)
    settings = _pose.PoseSettings.quick_settings() if args.quick else _pose.PoseSettings()
    settings.data = Path(data)
    settings.variants = args.variants
    settings.threads = args.threads[0] if args.threads else 1
    settings.daemon = args.broker is not None  # as bench video: the real daemon only with --broker
    settings.broker = args.broker
    settings.no_daemon_why = "bench video runs it with --broker HOST[:PORT]"
    print(f"{bundle.root}: a pose bundle; running the pose suite (edge-har bench pose) on {data}")
    return _pose.run_settings(args, settings)


# ---------------------------------------------------------------- the suites


SUITES: tuple[Suite, ...] = (
    Suite(
        "latency",
        help="inference latency of every variant x runtime x thread count, and of the Keras model",
        description=(
            f"Time every variant of the bundle on every installed TFLite runtime ({', '.join(BACKENDS)}) "
            "at each thread count: init time, first inference, mean, std, p50/p90/p95/p99, throughput, "
            "peak resident memory and model size; and the bundle's Keras float model (keras_model.h5, when "
            "TensorFlow is installed) via model.predict on one window and via a direct call, with the ratio of "
            "TFLite to Keras. Each step runs in its own process so that memory is per runtime and a crash "
            "stays in its row."
        ),
        flags=_latency_flags,
        run=run_latency_command,
        shared="bundle",
    ),
    Suite(
        "accuracy",
        help="float vs quantized accuracy on the test split, a random-forest baseline, streaming accuracy",
        description=(
            "Score the float32 variant and every quantized variant on the bundle's own test split (re-created "
            "from bundle.json): accuracy, macro-F1, per-class F1, the drop in points, confusion matrices as PNG. "
            "Train a random forest on per-window statistics of the same training recordings as the user's "
            "alternative to any network, and say by how much the CNN-LSTM beats it. Then replay whole test "
            "recordings through the daemon's own windowing and smoothing code (edge_har.device.runtime) and score the "
            "published labels over time against the ground truth."
        ),
        flags=_accuracy_flags,
        run=run_accuracy_command,
        shared="bundle",
    ),
    Suite(
        "e2e",
        help="the daemon against a real mosquitto: sample-in to prediction-received latency, windows/s, CPU, memory",
        description=(
            "Start a private mosquitto on a free loopback port, run the edge-har daemon (edge-har run) as a "
            "subprocess on a replay of sensor data, subscribe to its predictions and measure the time from the "
            "replay emitting a window's last sample (the payload's window_end_ts) to the prediction arriving at "
            "the subscriber (p50, p99), the windows per second sustained, and the daemon's CPU share and resident "
            "memory (psutil). Needs the mosquitto binary."
        ),
        flags=_e2e_flags,
        run=run_e2e_command,
        shared="bundle",
    ),
    Suite(
        "fleet",
        help="N simulated devices (the daemon's Publisher) against a real broker: loss, duplicates, latency, CPU",
        description=(
            "Start a private mosquitto on a free loopback port (or use --broker), run N simulated devices, each the "
            "daemon's own Publisher with its own client id, topics and Last Will, spread over a few processes, each "
            "publishing real prediction payloads at --rate with --qos; subscribers count every message by device, "
            "run_id and seq. Prints sent, received, lost, duplicated, out of order, delivery latency p50/p99 and the "
            "CPU of the broker, the publishers and the subscribers. --search then finds the largest device count this "
            "machine sustains without loss (step up, then bisect, within --search-budget-s). Needs mosquitto."
        ),
        flags=_fleet_flags,
        run=run_fleet_command,
        shared="output",
    ),
    Suite(
        "rollout",
        help="N real daemons take a staged rollout from a real serve: time to every device, predictions lost, "
        "a bad bundle stopped at the canary",
        description=(rollout_suite.__doc__ or "").split("\n\n")[0],
        flags=rollout_suite.add_flags,
        run=rollout_suite.run_command,
        shared="output",
    ),
    Suite(
        "soak",
        help="the daemon for a long time at a high window rate: resident memory each second, its slope in MB/h",
        description=(
            "Start a private mosquitto, run the edge-har daemon (edge-har run, as systemd does) on a looping replay "
            "of synthetic recordings at --speed x real time (or --unpaced, as fast as it goes) for --duration "
            "seconds, sample its resident memory every second, and report windows/s, the start, end and peak RSS and "
            "the least-squares slope of RSS after the warm-up, in MB per hour, with a plot of RSS over time. "
            "Needs mosquitto."
        ),
        flags=_soak_flags,
        run=run_soak_command,
        shared="output",
    ),
    Suite(
        "faults",
        help="the daemon through broker faults (kill -9 x K, SIGTERM restarts, frozen, unresolvable host, wrong "
        "port): made / delivered / dropped / duplicated / out of order / still queued / stop time",
        description=(
            "For each fault scenario start a private mosquitto with persistence and a persistent QoS 1 subscriber, "
            "run the edge-har daemon (edge-har run, as systemd does) on a looping replay, apply the fault, stop the "
            "daemon with SIGTERM (timed) and count per fault what it made, what arrived once, what was dropped by "
            "the offline queue's bound, repeated, out of order, still queued, and lost by the broker in a SIGKILL. "
            "See benchmarks/faults.py for the definitions. Needs mosquitto."
        ),
        flags=_faults_flags,
        run=run_faults_command,
        shared="bundle",
    ),
    Suite(
        "video",
        help="a video bundle: encoder/head latency per part, streaming speed-up over the whole clip model, frames/s "
        "sustained on a clip file (--clip: yours)",
        description=(
            "Measure a video bundle (edge-har convert-video) as the device runs it: per-call latency of each "
            "variant's frame encoder and temporal head, split streaming against the whole clip model, and frames per "
            "second sustained by the daemon's two stages on a clip file read by the camera source. With --clip the "
            "fps run and the part latencies use your clip (your camera's size, codec and rate), otherwise a "
            "synthetic 320x240 one. See benchmarks/video.py.\n\nexamples:\n"
            "  edge-har bench video bundles/kth-video --clip ../shared/data/video/kth-partial/boxing/"
            "person01_boxing_d2_uncomp.mp4 --quick\n"
            "  edge-har bench video bundles/kth-video --threads 1,2,4 --broker 127.0.0.1:1883"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        flags=_video_flags,
        run=run_video_command,
        shared="bundle",
    ),
    Suite(
        "web-predict",
        help="edge-har serve's POST /api/predict over HTTP on loopback: p50/p95 for a 3 s sensor recording",
        description=(
            "Serve the bundle with edge-har serve's app on a real uvicorn (a free loopback port, in this process) "
            "and upload the same white-space recording N times on one keep-alive connection, as the Predict page "
            "does. Reports the client's round trip, the server's time after the upload and the interpreter's time "
            "per window (p50, p95). Needs the web extra."
        ),
        flags=_web_predict_flags,
        run=run_web_predict_command,
        shared="bundle",
    ),
    Suite(
        "web-ingest",
        help="edge-har serve's MQTT ingest into SQLite and PostgreSQL: predictions stored per second, page latency",
        description=(
            "Start a private mosquitto and the real `edge-har serve --broker` (its own process) on a fresh SQLite "
            "file and a fresh PostgreSQL database. The drain comparison (--backlog): queue N QoS 1 predictions "
            "while serve's persistent session is away, then time how fast serve stores them, for the --baseline "
            "revision's serve and this checkout's (with each --processes count on PostgreSQL), side by side: "
            "stored/s, stored per CPU second of the process and of the ingest's threads, GET /api/devices p50 "
            "meanwhile, and whether every prediction is stored exactly once. --rates adds paced steps: publish "
            "at each rate for --trial-s seconds and report stored/s, how long the store took to catch up and "
            "the page's latency; stepping stops at the first rate not kept up. Needs mosquitto and the web "
            "extra; PostgreSQL only for that backend."
        ),
        epilog=(
            "examples:\n"
            "  edge-har bench web-ingest\n"
            "  edge-har bench web-ingest --backends sqlite --backlog 0 --rates 500,1000,2000 --trial-s 20\n"
            "  edge-har bench web-ingest --postgres-url postgresql+psycopg://bench@db.lan:5432/postgres\n"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        flags=_web_ingest_flags,
        run=run_web_ingest_command,
        shared="output",
    ),
    Suite(
        "serve-faults",
        help="edge-har serve under 20 publishing devices through broker kill -9, serve kill -9, PostgreSQL restarts "
        "and a full disk: published = stored + rejected + gaps, outage and recovery seconds",
        description=(
            "For each fault start a private mosquitto with persistence, the real `edge-har serve --broker` on a "
            "fresh store (SQLite; a throwaway PostgreSQL cluster of its own on a free port; SQLite on a small "
            "tmpfs), and --devices simulated devices (the daemon's Publisher) publishing QoS 1 predictions at "
            "--rate each; apply the fault mid-run, stop the devices, wait until GET /api/ingest shows nothing "
            "queued and its counts stand still, and take the books: published by the devices against stored "
            "(counted by SQL) + rejected + gaps (the server's counters). See benchmarks/serve_faults.py. Needs "
            "mosquitto and the web extra; the PostgreSQL faults need initdb/pg_ctl, disk_full needs root (mount)."
        ),
        flags=_serve_faults_flags,
        run=run_serve_faults_command,
        shared="output",
    ),
    _personalise.suite(),
    _pose.suite(),
    _families.suite(),
)
