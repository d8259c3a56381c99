"""Model families suite: one table comparing the architectures ``convert --family`` picks.

A family's accuracy is a spread, not a number: one seed is one draw (see
:mod:`edge_har.convert.seeds`), so each family is converted with the same seeds on the
same split and reported as mean and sample standard deviation, beside what it costs on
a device: the int8 model's size, its MACs per window and its int8 latency on this
machine, and its training time.

Every conversion is the real ``edge-har convert`` in its own process
(``sys.executable -m edge_har convert ARGS --family F --seed S --out OUT/F/seed-S
--no-progress``), its output in ``OUT/F/seed-S.log``: TensorFlow's memory goes back to
the system after each one, and a crash stays in its row. The outcome of a seed is read
from what the conversion leaves:

* ``seed-S/bundle.json``: the per-seed row of :func:`edge_har.convert.seeds.seed_row`;
  a folder already holding one is reused, not retrained, so a stopped run resumes;
* exit status 3 with ``seed-S.refused/``: the int8 gate refused it; a row with verdict
  ``refused`` and the figures its ``refused.json`` records (reused on the next run as
  well; delete the folder to train that seed again);
* anything else: a row with verdict ``error`` and the log's last line; the suite goes on.

``OUT/results.json`` (section ``families``), ``OUT/families.md`` and ``OUT/families.png``
are written after every conversion, so a stopped run keeps what it finished.
"""

from __future__ import annotations

import json
import logging
import math
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from edge_har.benchmarks import report
from edge_har.benchmarks.cpuinfo import cpu_line
from edge_har.core.errors import EdgeHarError

log = logging.getLogger(__name__)

SUITE = "families"
FIRST_SEED = 42
DEFAULT_SEEDS = "5"
DEFAULT_LATENCY_RUNS = 300
MIN_LATENCY_RUNS = 200  # p90 from fewer calls moves with a handful of slow ones
LATENCY_WARMUP = 20
LATENCY_WINDOWS = 32
LATENCY_VARIANT = "int8"
PLOT_FILE = "families.png"
MARKDOWN_FILE = "families.md"
# convert's flags this suite sets for every conversion; given after ``--`` they would clash with it
OWNED_FLAGS = ("--family", "--seed", "--seeds", "--out", "--overwrite", "--from-bundle", "--from-keras")
LATENCY_INPUT = (
    f"{LATENCY_WINDOWS} random normalised windows (standard normal, the model's input shape; the test split "
    "would need the data set loaded by the suite, not only by convert)"
)


class FamiliesBenchError(EdgeHarError, ValueError):
    """The suite cannot start with these arguments; the message says which and why."""


@dataclass
class FamiliesSettings:
    families: tuple[str, ...]
    seeds: tuple[int, ...]
    out: Path
    convert_args: tuple[str, ...]  # passed to edge-har convert unchanged
    latency_runs: int = DEFAULT_LATENCY_RUNS
    latency_warmup: int = LATENCY_WARMUP
    python: str = field(default_factory=lambda: sys.executable)


# ---------------------------------------------------------------- arguments


def parse_seeds(text: str) -> list[int]:
    """``N`` (N seeds from 42 on) or a comma list: convert's ``--seeds`` rule, so a table is never one seed."""
    from edge_har.convert.seeds import parse_seeds as convert_seeds
    from edge_har.convert.skeleton import ConvertError

    try:
        return convert_seeds(text, FIRST_SEED)
    except ConvertError as exc:
        raise FamiliesBenchError(str(exc)) from None


def parse_families(text: str) -> list[str]:
    """The comma list of family names, each one ``convert --family`` knows."""
    from edge_har.convert.families import FAMILIES

    names = list(dict.fromkeys(n.strip() for n in str(text).split(",") if n.strip()))
    unknown = [n for n in names if n not in FAMILIES]
    if not names or unknown:
        raise FamiliesBenchError(
            f"--families {text!r}: unknown {', '.join(unknown) or '(none given)'}; known: {', '.join(FAMILIES)}"
        )
    return names


def check_convert_args(args: Sequence[str]) -> list[str]:
    """The arguments after ``--``: they must name the data, and leave the suite's own flags to it."""
    rest = list(args)
    example = "e.g. edge-har bench families --out DIR -- --data ../shared/data/hapt --preset uci-har"
    if rest[:1] == ["--"]:  # argparse keeps the separator before a REMAINDER (some versions drop it)
        rest = rest[1:]
    elif rest and not rest[0].startswith("-"):  # a stray word before --: everything from it would go to convert
        raise FamiliesBenchError(
            f"unexpected argument {rest[0]!r}; edge-har convert's arguments go after --, {example}"
        )
    if not rest:
        raise FamiliesBenchError(f"no arguments for edge-har convert: give them after --, {example}")
    if not any(a == "--data" or a.startswith("--data=") for a in rest):
        raise FamiliesBenchError(f"the arguments after -- give no --data for edge-har convert; {example}")
    owned = [a for a in rest if a.split("=", 1)[0] in OWNED_FLAGS]
    if owned:
        raise FamiliesBenchError(
            f"after --: {', '.join(owned)} set by the suite itself (--families, --seeds, --out); leave them out"
        )
    return rest


# ---------------------------------------------------------------- one conversion


def seed_dir(out: Path, family: str, seed: int) -> Path:
    return Path(out) / family / f"seed-{seed}"


def convert_command(settings: FamiliesSettings, family: str, seed: int) -> list[str]:
    out = seed_dir(settings.out, family, seed)
    return [
        settings.python,
        "-m",
        "edge_har",
        "convert",
        *settings.convert_args,
        "--family",
        family,
        "--seed",
        str(seed),
        "--out",
        str(out),
        "--no-progress",
    ]


def _last_line(path: Path) -> str:
    try:
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError as exc:
        return f"(log unreadable: {exc})"
    return lines[-1] if lines else "(empty log)"


def _refused_row(seed: int, folder: Path, message: str) -> dict[str, Any]:
    """A refused seed's figures from the ``refused.json`` its conversion keeps (evaluation ran before the gate)."""
    from edge_har.convert.seeds import document_row
    from edge_har.convert.skeleton import REFUSED_FILE

    try:
        document = json.loads((folder / REFUSED_FILE).read_text())
    except (OSError, ValueError):
        document = {}
    metrics = document.get("metrics") or {}
    return {
        **document_row(seed, document, folder),
        "verdict": "refused",
        "val_loss": math.inf,  # a refused seed is never the one to publish
        "bundle": None,
        "refused": str(folder),
        "message": (metrics.get("gate") or {}).get("message") or message,
    }


def _error_row(seed: int, message: str, exit_code: int | None) -> dict[str, Any]:
    return {
        "seed": seed,
        "verdict": "error",
        "int8_accuracy": None,
        "int8_macro_f1": None,
        "float32_accuracy": None,
        "val_loss": math.inf,
        "epochs_run": None,
        "train_seconds": None,
        "bundle": None,
        "exit_code": exit_code,
        "message": message,
    }


def convert_seed(settings: FamiliesSettings, family: str, seed: int) -> dict[str, Any]:
    """One seed's row: its bundle's figures (reused or converted now), a refusal or an error."""
    from edge_har.convert.cli import EXIT_GATE_REFUSED
    from edge_har.convert.seeds import seed_row
    from edge_har.convert.skeleton import refused_dir

    out = seed_dir(settings.out, family, seed)
    log_file = out.with_name(out.name + ".log")
    refused = refused_dir(out)
    if (out / "bundle.json").is_file():
        return {**seed_row(seed, out), "reused": True, "log": str(log_file)}
    if refused.is_dir():
        row = _refused_row(seed, refused, _last_line(log_file))
        return {**row, "reused": True, "log": str(log_file)}
    command = convert_command(settings, family, seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with open(log_file, "w") as stream:
        stream.write("$ " + subprocess.list2cmdline(command) + "\n")
        stream.flush()
        code = subprocess.run(command, stdout=stream, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL).returncode
    seconds = round(time.perf_counter() - started, 1)
    done = {"reused": False, "log": str(log_file), "wall_seconds": seconds}
    if code == 0 and (out / "bundle.json").is_file():
        return {**seed_row(seed, out), **done}
    if code == EXIT_GATE_REFUSED and refused.is_dir():
        return {**_refused_row(seed, refused, _last_line(log_file)), **done}
    reason = _last_line(log_file) if code != 0 else f"exit status 0 but no {out / 'bundle.json'}"
    return {**_error_row(seed, reason, code), **done}


# ---------------------------------------------------------------- per family


def measure_latency(bundle_dir: Path, runs: int, warmup: int) -> dict[str, Any]:
    """The int8 variant's p50/p90 per window, ``TFLiteModel.predict`` with one thread, through the shared loop."""
    import numpy as np

    from edge_har.core.bundle import Bundle
    from edge_har.core.timing import time_calls

    bundle = Bundle.load(bundle_dir)
    model = bundle.load_model(LATENCY_VARIANT, num_threads=1)
    shape = tuple(int(d) for d in bundle.input_shape[1:])
    windows = np.random.default_rng(0).standard_normal((LATENCY_WINDOWS, 1, *shape)).astype(np.float32)
    seconds = time_calls(model.predict, windows, warmup, runs)
    stats = report.latency_summary(seconds * 1e3)
    return {
        "variant": LATENCY_VARIANT,
        "backend": model.backend.name,
        "threads": 1,
        "warmup": warmup,
        "calls": int(stats["n"]),
        "p50_ms": stats["p50_ms"],
        "p90_ms": stats["p90_ms"],
        "mean_ms": stats["mean_ms"],
        "input": "random",
        "from_bundle": str(bundle_dir),
    }


def _cost(bundle_dir: Path) -> dict[str, Any]:
    """The int8 model's size and the MACs per window, from one bundle of the family (every seed's are alike)."""
    from edge_har.core.bundle import Bundle

    bundle = Bundle.load(bundle_dir)
    variant = bundle.variants.get(LATENCY_VARIANT)
    return {
        "int8_size_bytes": None if variant is None else int(variant.size_bytes),
        "macs": (bundle.data.get("training") or {}).get("macs"),
        "from_bundle": str(bundle_dir),
    }


def family_entry(
    family: str, rows: Sequence[dict[str, Any]], measured: Mapping[str, Any] | None, total_seeds: int
) -> dict[str, Any]:
    """A family's section: the per-seed rows, their summary and what the model costs."""
    from edge_har.convert.seeds import summarise

    converted = [r for r in rows if r["verdict"] != "error"]
    seconds = [r["train_seconds"] for r in converted if isinstance(r.get("train_seconds"), (int, float))]
    entry: dict[str, Any] = {
        "family": family,
        "seeds_asked": total_seeds,
        "rows": [dict(r) for r in rows],
        "summary": summarise(converted),
        "errors": sum(r["verdict"] == "error" for r in rows),
        "training_seconds_mean": round(sum(seconds) / len(seconds), 2) if seconds else None,
        "int8_size_bytes": None,
        "macs": None,
        "latency": None,
    }
    if measured:
        entry.update({k: measured.get(k) for k in ("int8_size_bytes", "macs", "latency")})
        if measured.get("latency_error"):
            entry["latency_error"] = measured["latency_error"]
    return entry


def _measure_family(bundle_dir: Path, settings: FamiliesSettings) -> dict[str, Any]:
    measured: dict[str, Any] = {}
    try:
        measured.update(_cost(bundle_dir))
    except EdgeHarError as exc:
        measured["latency_error"] = str(exc)
        return measured
    if measured.get("int8_size_bytes") is None:
        measured["latency_error"] = f"{bundle_dir}: no {LATENCY_VARIANT} variant (convert --variants left it out)"
        return measured
    try:
        measured["latency"] = measure_latency(bundle_dir, settings.latency_runs, settings.latency_warmup)
    except Exception as exc:  # noqa: BLE001 - a runtime that cannot load the model must not lose the accuracy figures
        log.warning("%s: int8 latency not measured: %s", bundle_dir, exc)
        measured["latency_error"] = str(exc)
    return measured


# ---------------------------------------------------------------- the run


def run_families(
    settings: FamiliesSettings, checkpoint: Callable[[dict[str, Any]], None] | None = None
) -> dict[str, Any]:
    """Convert every family x seed (or reuse what is there) and return the suite's section.

    ``checkpoint`` gets the section after every seed, so what a stopped run finished is on disk.
    """
    started = time.perf_counter()
    section = report.suite_header(SUITE)
    section.update(
        {
            "cpu": cpu_line(),
            "complete": False,
            "settings": {
                "families": list(settings.families),
                "seeds": list(settings.seeds),
                "convert_args": list(settings.convert_args),
                "convert_command": "python -m edge_har convert ARGS --family F --seed S --out OUT/F/seed-S "
                "--no-progress, one process per seed",
                "latency_runs": settings.latency_runs,
                "latency_warmup": settings.latency_warmup,
                "latency": f"{LATENCY_VARIANT} variant, TFLiteModel.predict, 1 thread, edge_har.core.timing.time_calls",
                "latency_input": LATENCY_INPUT,
                "varied": "training's seed only; the split and every other flag are the same for all rows",
            },
            "out": str(Path(settings.out).resolve()),
            "conversions_run": 0,
            "conversions_reused": 0,
            "families": {},
        }
    )
    total = len(settings.families) * len(settings.seeds)
    step = 0
    for family in settings.families:
        rows: list[dict[str, Any]] = []
        measured: dict[str, Any] | None = None
        for seed in settings.seeds:
            step += 1
            log.info("%s seed %d (%d of %d)", family, seed, step, total)
            row = convert_seed(settings, family, seed)
            rows.append(row)
            section["conversions_reused" if row["reused"] else "conversions_run"] += 1
            log.info(
                "%s seed %d: %s%s (%s)",
                family,
                seed,
                row["verdict"],
                "" if row["int8_accuracy"] is None else f", int8 accuracy {100 * row['int8_accuracy']:.2f}%",
                "reused" if row["reused"] else f"{row.get('wall_seconds')} s, log {row['log']}",
            )
            if row["verdict"] == "error":
                log.warning("%s seed %d failed: %s (log: %s)", family, seed, row["message"], row["log"])
            if measured is None and row.get("bundle"):
                measured = _measure_family(Path(row["bundle"]), settings)
            section["families"][family] = family_entry(family, rows, measured, len(settings.seeds))
            report.finish_section(section, started)
            if checkpoint is not None:
                checkpoint(section)
    section["complete"] = True
    return report.finish_section(section, started)


# ---------------------------------------------------------------- tables, plot, files


def _pct(stat: Mapping[str, Any] | None) -> str:
    if not stat:
        return "-"
    return f"{100 * stat['mean']:.2f} ± {100 * stat['std']:.2f}"


def _seeds_cell(entry: Mapping[str, Any]) -> str:
    rows = entry["rows"]
    good = sum(r["verdict"] not in ("refused", "error") for r in rows)
    text = f"{good}/{entry['seeds_asked']}"
    notes = [f"{n} {v}" for v in ("refused", "error") for n in [sum(r["verdict"] == v for r in rows)] if n]
    if len(rows) < entry["seeds_asked"]:
        notes.append(f"{entry['seeds_asked'] - len(rows)} to do")
    return text + (f" ({', '.join(notes)})" if notes else "")


def summary_table(section: Mapping[str, Any]) -> str:
    """One row per family: accuracy mean ± std over its seeds, and what the model costs."""
    headers = [
        "family",
        "seeds",
        "int8 accuracy % mean ± std",
        "int8 macro-F1 % mean ± std",
        "float32 accuracy %",
        "int8 size KB",
        "MACs",
        "p50 ms",
        "training s",
    ]
    rows = []
    for family, e in section["families"].items():
        s = e["summary"]
        size = e.get("int8_size_bytes")
        latency = e.get("latency") or {}
        rows.append(
            [
                family,
                _seeds_cell(e),
                _pct(s.get("int8_accuracy")),
                _pct(s.get("int8_macro_f1")),
                _pct(s.get("float32_accuracy")),
                "-" if size is None else f"{size / 1024:.1f}",
                "-" if e.get("macs") is None else f"{int(e['macs']):,}",
                "-" if latency.get("p50_ms") is None else f"{latency['p50_ms']:.3f}",
                "-" if e.get("training_seconds_mean") is None else f"{e['training_seconds_mean']:.1f}",
            ]
        )
    return report.format_table(headers, rows)


def family_tables(section: Mapping[str, Any]) -> str:
    """Each family's per-seed table, as ``convert --seeds`` prints it."""
    from edge_har.convert.seeds import table

    parts = []
    for family, e in section["families"].items():
        text = table(e["rows"], e["summary"], None)
        errors = [r for r in e["rows"] if r["verdict"] == "error"]
        lines = [f"- seed {r['seed']}: error, {r['message']} (log: {r['log']})" for r in errors]
        parts.append("\n".join([f"### {family}", "", text, *([""] + lines if lines else [])]))
    return "\n\n".join(parts)


def _latency_line(section: Mapping[str, Any]) -> str:
    done = [e["latency"] for e in section["families"].values() if e.get("latency")]
    backend = ", ".join(sorted({d["backend"] for d in done})) or "-"
    st = section["settings"]
    return (
        f"int8 latency: TFLiteModel.predict, backend {backend}, 1 thread, {st['latency_runs']} timed calls after "
        f"{st['latency_warmup']} warm-up (edge_har.core.timing.time_calls), on {st['latency_input']}"
    )


def format_families(section: Mapping[str, Any]) -> str:
    """What the terminal shows at the end: context, the family table, the per-seed tables."""
    parts = [
        report.context_lines(section),
        section.get("cpu") or "",
        _latency_line(section),
        summary_table(section),
        family_tables(section),
    ]
    if not section.get("complete"):
        parts.append("PARTIAL: the run stopped before every family and seed was done")
    return "\n\n".join(p for p in parts if p)


def markdown(section: Mapping[str, Any]) -> str:
    """``families.md``: what was run, on what, the family table and each family's per-seed table."""
    m = section.get("machine") or {}
    st = section["settings"]
    noisy = " (noisy: load above half the cores)" if section.get("noisy") else ""
    lines = [
        "# Model families",
        "",
        f"- command: `{section.get('command')}`",
        f"- date {section.get('date')}, commit {((section.get('git') or {}).get('commit') or '?')[:10]}, "
        f"{section.get('seconds')} s wall{noisy}",
        f"- {section.get('cpu') or 'CPU: ' + str(m.get('cpu_model'))}; {m.get('cores_logical')} logical cores",
        f"- each family x seed: `edge-har convert {' '.join(st['convert_args'])} --family F --seed S` "
        f"(seeds {', '.join(map(str, st['seeds']))}); only training's seed varies",
        f"- {_latency_line(section)}",
        "- accuracy and macro-F1: the test split, as each conversion evaluated it; mean ± sample std over "
        "the seeds the conversion finished (refused seeds included)",
        "",
        summary_table(section),
        "",
        family_tables(section),
        "",
    ]
    if not section.get("complete"):
        lines.append("PARTIAL: the run stopped before every family and seed was done")
    return "\n".join(lines)


def families_png(section: Mapping[str, Any], path: str | Path) -> Path | None:
    """int8 accuracy (mean, std as error bar) against MACs per window, one labelled point per family."""
    points = []
    for family, e in section["families"].items():
        acc = (e.get("summary") or {}).get("int8_accuracy")
        if acc and isinstance(e.get("macs"), (int, float)) and e["macs"] > 0:
            points.append((family, float(e["macs"]), 100 * acc["mean"], 100 * acc["std"], acc["n"]))
    if not points:
        return None
    plt = report._pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    try:
        for family, macs, mean, std, n in points:
            below, above = min(std, mean), min(std, 100.0 - mean)  # a std wider than 0-100 % is clipped there
            ax.errorbar([macs], [mean], yerr=[[below], [above]], fmt="o", capsize=4)
            ax.annotate(f"{family} (n={n})", (macs, mean), textcoords="offset points", xytext=(6, 6), fontsize=8)
        ax.set_xscale("log")
        xs = [p[1] for p in points]
        ax.set_xlim(min(xs) / 2, max(xs) * 2)
        ax.set_xlabel("MACs per window (log scale)")
        ax.set_ylabel("int8 test accuracy % (mean ± std over seeds)")
        ax.set_title(f"Model families: {len(section['settings']['seeds'])} seeds each", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        return report.save_figure(fig, path)
    finally:
        plt.close(fig)


def write_outputs(section: dict[str, Any], out: Path) -> None:
    """results.json (this suite's section), families.md and families.png, each time a seed finishes."""
    from edge_har.benchmarks.cli import _plot

    out.mkdir(parents=True, exist_ok=True)
    _plot(section, SUITE, lambda path: families_png(section, path), out / PLOT_FILE)
    (out / MARKDOWN_FILE).write_text(markdown(section) + "\n")
    report.write_section(out / report.RESULTS_FILE, section)


# ---------------------------------------------------------------- command line


def _latency_runs(text: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < MIN_LATENCY_RUNS:
        raise argparse.ArgumentTypeError(f"at least {MIN_LATENCY_RUNS} calls for a p90, got {value}")
    return value


def flags(p: Any) -> None:
    """``edge-har bench families``' flags; everything after ``--`` goes to edge-har convert."""
    import argparse

    from edge_har.convert.families import FAMILIES

    p.add_argument(
        "--families",
        default=",".join(FAMILIES),
        metavar="A,B",
        help="model families to convert, comma-separated (convert --family's names)",
    )
    p.add_argument(
        "--seeds",
        default=DEFAULT_SEEDS,
        metavar="N|LIST",
        help=f"N: N seeds from {FIRST_SEED} on; or a comma list such as 42,43,44",
    )
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        default=argparse.SUPPRESS,
        metavar="DIR",
        help="where OUT/FAMILY/seed-S bundles, their logs, results.json, families.md and families.png go; "
        "seeds already converted there are reused",
    )
    p.add_argument(
        "--latency-runs",
        type=_latency_runs,
        default=DEFAULT_LATENCY_RUNS,
        metavar="N",
        help=f"timed int8 calls per family (>= {MIN_LATENCY_RUNS}), after {LATENCY_WARMUP} warm-up calls",
    )
    p.add_argument(
        "convert_args",
        nargs=argparse.REMAINDER,
        metavar="-- CONVERT_ARGS",
        help="edge-har convert's arguments (data, preset, window and model-size flags), passed unchanged",
    )
    p.set_defaults(json=None, compare=None)


def settings_from_args(args: Any) -> FamiliesSettings:
    """Every argument checked before anything runs: a mistake is one line, not an hour of training later."""
    return FamiliesSettings(
        families=tuple(parse_families(args.families)),
        seeds=tuple(parse_seeds(args.seeds)),
        out=Path(args.out),
        convert_args=tuple(check_convert_args(args.convert_args or [])),
        latency_runs=args.latency_runs,
    )


def run_command(args: Any) -> int:
    from edge_har.benchmarks.cli import _finish
    from edge_har.core.errors import CommandError

    try:
        settings = settings_from_args(args)
    except FamiliesBenchError as exc:
        raise CommandError(str(exc)) from exc
    out = settings.out
    log.info(
        "%d families x %d seeds into %s (logs: %s/FAMILY/seed-S.log)",
        len(settings.families),
        len(settings.seeds),
        out,
        out,
    )
    section = run_families(settings, lambda s: write_outputs(s, out))
    write_outputs(section, out)
    _finish(args, section, SUITE, format_families(section))
    rows = [r for e in section["families"].values() for r in e["rows"]]
    if rows and all(r["verdict"] == "error" for r in rows):
        log.error("every conversion failed; the first one's log: %s", rows[0]["log"])
        return 1
    return 0


def suite() -> Any:
    """This suite's row of ``edge_har.benchmarks.cli.SUITES``."""
    import argparse

    from edge_har.benchmarks.cli import Suite

    class Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
        pass

    return Suite(
        SUITE,
        help="model families x seeds through edge-har convert: int8 accuracy mean ± std, size, MACs, int8 "
        "latency and training time per family",
        description=(
            "For each --families name and --seeds seed, run one conversion in its own process:\n"
            "  python -m edge_har convert CONVERT_ARGS --family F --seed S --out OUT/F/seed-S --no-progress\n"
            "its output in OUT/F/seed-S.log. A seed folder already holding bundle.json (or a seed-S.refused\n"
            "folder) is reused, not retrained, so a stopped run resumes; a conversion the int8 gate refuses\n"
            "(exit 3) is a row with verdict refused, any other failure a row with verdict error and the log's\n"
            "last line, and the suite goes on. Per family: int8 accuracy, int8 macro-F1 and float32 accuracy\n"
            "(mean and sample std over the seeds), the int8 model's size, MACs per window, the int8 p50/p90\n"
            "latency on this machine (TFLiteModel.predict, 1 thread, on random normalised windows) and the\n"
            "mean training time. OUT/results.json, OUT/families.md (the table and each family's per-seed\n"
            "table) and OUT/families.png (int8 accuracy against MACs) are written after every conversion.\n"
            "See benchmarks/families.py.\n\n"
            "example:\n"
            "  edge-har bench families --families cnn-lstm,tinyhar --seeds 42,43,44,45,46 \\\n"
            "      --out benchmarks/results/families-hapt6 -- --data ../shared/data/hapt --preset uci-har"
        ),
        formatter_class=Formatter,
        flags=flags,
        run=run_command,
        shared="own",
    )
