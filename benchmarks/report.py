"""What every suite writes: terminal tables, one JSON results file, PNG plots.

A figure is only comparable with another when the machine, the runtime
versions, the code and the load on the machine are known, so every suite
section of the results file carries them (:func:`suite_header`). Several suites
share one results file (``results.json``): each writes its own section and
leaves the others, so a latency run and an accuracy run of the same bundle end
up side by side, and a kept file from a Pi can be compared with a new run key
by key (:func:`compare_rows`).

Tables are printed in Markdown pipe syntax: readable on a terminal and pasted
unchanged into an issue or a README.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import sys
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from edge_har.core.errors import EdgeHarError

RESULTS_SCHEMA = "edge-har-bench/1"
RESULTS_FILE = "results.json"
VERSION_PACKAGES = (
    "edge-har",
    "ai-edge-litert",
    "tflite-runtime",
    "tensorflow",
    "tf-keras",
    "numpy",
    "scikit-learn",
    "paho-mqtt",
    "psutil",
)


class ReportError(EdgeHarError, RuntimeError):
    """A results file that cannot be read or merged into."""


# ---------------------------------------------------------------- context of a run


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return None


def cpu_model() -> str:
    """The CPU's marketing name; on a Raspberry Pi the board model, which says more."""
    board = _read("/proc/device-tree/model")
    text = _read("/proc/cpuinfo") or ""
    name = None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model", "Hardware", "cpu model") and value.strip():
            name = value.strip()
            break
    if board:
        board = board.strip("\x00 \n")
        return f"{board} ({name})" if name and name not in board else board
    return name or platform.processor() or platform.machine()


def os_name() -> str:
    text = _read("/etc/os-release") or ""
    for line in text.splitlines():
        if line.startswith("PRETTY_NAME="):
            return f"{line.split('=', 1)[1].strip().strip(chr(34))} ({platform.system()} {platform.release()})"
    return platform.platform()


def machine_info() -> dict[str, Any]:
    import psutil

    return {
        "cpu_model": cpu_model(),
        "arch": platform.machine(),
        "cores_logical": os.cpu_count(),
        "cores_physical": psutil.cpu_count(logical=False),
        "ram_mb": round(psutil.virtual_memory().total / 2**20),
        "os": os_name(),
        "python": platform.python_version(),
        "hostname": platform.node(),
    }


def runtime_versions() -> dict[str, str | None]:
    """Installed versions, read from package metadata (importing TensorFlow would take seconds)."""
    from edge_har.convert.export import package_versions

    return package_versions(VERSION_PACKAGES)


def git_info() -> dict[str, Any] | None:
    from edge_har.convert.export import git_revision

    return git_revision(Path(__file__).resolve().parent)


def load_average() -> list[float] | None:
    """1, 5 and 15 minute load: figures taken while other work runs are noisy, and this says so."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def command_line() -> str:
    from edge_har.convert.export import command_line as _command_line

    return _command_line()


def bundle_info(bundle: Any) -> dict[str, Any]:
    return {
        "path": str(Path(bundle.root).resolve()),
        "model_id": bundle.model_id,
        "kind": bundle.kind,
        "input_shape": list(bundle.input_shape),
        "labels": list(bundle.labels),
        "default_variant": bundle.default_variant,
        "variants": {
            name: {"quantization": v.quantization, "size_bytes": v.size_bytes} for name, v in bundle.variants.items()
        },
    }


def suite_header(suite: str, bundle: Any | None = None) -> dict[str, Any]:
    """The context every suite section starts with; ``finish_section`` adds the end time and load."""
    header: dict[str, Any] = {
        "suite": suite,
        "date": now_iso(),
        "git": git_info(),
        "command": command_line(),
        "machine": machine_info(),
        "runtimes": runtime_versions(),
        "load_average_before": load_average(),
    }
    if bundle is not None:
        header["bundle"] = bundle_info(bundle)
    return header


def finish_section(section: dict[str, Any], started: float) -> dict[str, Any]:
    import time

    section["load_average_after"] = load_average()
    section["seconds"] = round(time.perf_counter() - started, 2)
    cores = section.get("machine", {}).get("cores_logical") or 1
    loads = [x for x in (section.get("load_average_before"), section.get("load_average_after")) if x]
    busy = max((x[0] for x in loads), default=0.0)
    section["noisy"] = busy > 0.5 * cores
    return section


# ---------------------------------------------------------------- statistics


def latency_summary(values_ms: Sequence[float] | np.ndarray) -> dict[str, float | int]:
    """mean, std, min, percentiles and max of latencies in milliseconds (``nan`` when empty)."""
    arr = np.asarray(values_ms, dtype=np.float64)
    if arr.size == 0:
        nan = float("nan")
        return {
            "n": 0,
            "mean_ms": nan,
            "std_ms": nan,
            "min_ms": nan,
            "p50_ms": nan,
            "p90_ms": nan,
            "p95_ms": nan,
            "p99_ms": nan,
            "max_ms": nan,
        }
    p50, p90, p95, p99 = np.percentile(arr, [50, 90, 95, 99])
    return {
        "n": int(arr.size),
        "mean_ms": float(arr.mean()),
        "std_ms": float(arr.std(ddof=1)) if arr.size > 1 else 0.0,
        "min_ms": float(arr.min()),
        "p50_ms": float(p50),
        "p90_ms": float(p90),
        "p95_ms": float(p95),
        "p99_ms": float(p99),
        "max_ms": float(arr.max()),
    }


# ---------------------------------------------------------------- tables


def fmt(value: Any, digits: int = 3) -> str:
    """A table cell: numbers to ``digits`` significant decimals, None and NaN as '-'."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(value):
            return "-"
        if value != 0 and abs(value) < 10**-digits:
            return f"{value:.{digits}g}"
        return f"{value:.{digits}f}"
    return str(value)


def format_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], title: str = "") -> str:
    """A Markdown pipe table with aligned columns (numbers right-aligned)."""
    cells = [[fmt(c) if not isinstance(c, str) else c for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def is_number(text: str) -> bool:
        try:
            float(text.rstrip("%x"))
            return True
        except ValueError:
            return False

    def line(row: Sequence[str]) -> str:
        parts = [c.rjust(widths[i]) if is_number(c) else c.ljust(widths[i]) for i, c in enumerate(row)]
        return "| " + " | ".join(parts) + " |"

    out = [title, ""] if title else []
    out.append(line(headers))
    out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    out.extend(line(row) for row in cells)
    return "\n".join(out)


def context_lines(section: Mapping[str, Any]) -> str:
    """Two lines naming where and on what the figures were taken, printed above the tables."""
    m = section.get("machine", {})
    git = section.get("git") or {}
    commit = (git.get("commit") or "unknown")[:10] + (" (local changes)" if git.get("dirty") else "")
    load = section.get("load_average_before")
    text = (
        f"{m.get('cpu_model')} | {m.get('cores_logical')} cores | {m.get('ram_mb')} MB RAM | {m.get('os')} | "
        f"Python {m.get('python')}\ncommit {commit} | {section.get('date')} | load average before {load}"
    )
    if section.get("noisy"):
        text += "\nNOTE: the machine was busy with other work (load average above half the cores): figures are noisy"
    return text


# ---------------------------------------------------------------- JSON


def _json_ready(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, np.ndarray):
        return _json_ready(value.tolist())
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, Path):
        return str(value)
    return value


def read_results(path: str | Path) -> dict[str, Any]:
    file = Path(path)
    try:
        data = json.loads(file.read_text())
    except FileNotFoundError:
        raise ReportError(f"{file}: no such results file") from None
    except json.JSONDecodeError as exc:
        raise ReportError(f"{file}: invalid JSON at line {exc.lineno}: {exc.msg}") from exc
    if not isinstance(data, dict) or data.get("schema") != RESULTS_SCHEMA or not isinstance(data.get("suites"), dict):
        raise ReportError(f"{file}: not an edge-har benchmark results file (key 'schema' must be {RESULTS_SCHEMA!r})")
    return data


def write_section(path: str | Path, section: Mapping[str, Any]) -> Path:
    """Put one suite's section into the results file at ``path``, keeping the other suites' sections.

    Written to a temporary file and renamed, so an interrupted run never leaves
    a half-written file in place of a good one.
    """
    file = Path(path)
    file.parent.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = {"schema": RESULTS_SCHEMA, "suites": {}}
    if file.exists():
        data = read_results(file)
    data["suites"][section["suite"]] = _json_ready(dict(section))
    tmp = file.with_name(f".{file.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n")
    tmp.replace(file)
    return file


def suite_section(path: str | Path, suite: str) -> dict[str, Any]:
    data = read_results(path)
    if suite not in data["suites"]:
        raise ReportError(f"{path}: has no '{suite}' results (it has: {', '.join(data['suites']) or 'none'})")
    return data["suites"][suite]


def compare_rows(
    current: Sequence[Mapping[str, Any]],
    previous: Sequence[Mapping[str, Any]],
    key_fields: Sequence[str],
    value_field: str,
) -> list[dict[str, Any]]:
    """Match rows by ``key_fields`` and give the previous value, the current one and their ratio."""
    before = {tuple(r.get(k) for k in key_fields): r for r in previous}
    out = []
    for row in current:
        key = tuple(row.get(k) for k in key_fields)
        old = before.get(key)
        new_value = row.get(value_field)
        old_value = None if old is None else old.get(value_field)
        ratio = None
        if isinstance(new_value, (int, float)) and isinstance(old_value, (int, float)) and old_value:
            ratio = new_value / old_value
        out.append({**dict(zip(key_fields, key)), "previous": old_value, "current": new_value, "ratio": ratio})
    return out


# ---------------------------------------------------------------- plots


def _pyplot() -> Any:
    from edge_har.convert.plots import pyplot

    return pyplot()


def save_figure(fig: Any, path: str | Path) -> Path:
    from edge_har.convert.plots import save_figure as save

    return save(fig, path)


def latency_png(rows: Sequence[Mapping[str, Any]], path: str | Path, title: str) -> Path | None:
    """Horizontal bars at p50 with a whisker to p99, one per successful (variant, runtime, threads).

    The scale turns logarithmic when the figures span more than 50x: a Keras
    ``model.predict`` call can cost a thousand TFLite invokes, and both must
    stay readable on one chart.
    """
    ok = [r for r in rows if r.get("status") == "ok" and r.get("p50_ms") is not None]
    if not ok:
        return None
    plt = _pyplot()
    labels = [f"{r['variant']} | {r['runtime']} | {r['threads']}t" for r in ok]
    p50 = np.array([r["p50_ms"] for r in ok], dtype=float)
    p99 = np.array([r["p99_ms"] for r in ok], dtype=float)
    runtimes = sorted({r["runtime"] for r in ok})
    palette = plt.get_cmap("tab10")
    colours = [palette(runtimes.index(r["runtime"]) % 10) for r in ok]
    fig, ax = plt.subplots(figsize=(9, max(2.5, 0.38 * len(ok) + 1.2)))
    try:
        y = np.arange(len(ok))
        ax.barh(
            y,
            p50,
            color=colours,
            xerr=[np.zeros_like(p50), np.maximum(p99 - p50, 0)],
            capsize=3,
            error_kw={"elinewidth": 1, "ecolor": "black"},
        )
        for yi, value, top in zip(y, p50, p99):
            ax.text(max(value, top), yi, f"  p50 {value:.3g}", va="center", ha="left", fontsize=7)
        ax.set_yticks(y, labels=labels, fontsize=8)
        ax.invert_yaxis()
        log_scale = float(p99.max()) / max(float(p50.min()), 1e-9) > 50
        if log_scale:
            ax.set_xscale("log")
            ax.set_xlim(float(p50.min()) / 2, float(p99.max()) * 6)
        else:
            ax.set_xlim(0, float(p99.max()) * 1.25)
        ax.set_xlabel("latency per window, ms (bar: p50, whisker: p99" + ("; log scale)" if log_scale else ")"))
        ax.set_title(title, fontsize=10)
        ax.grid(True, axis="x", which="both", alpha=0.3)
        handles = [plt.Rectangle((0, 0), 1, 1, color=palette(i % 10)) for i in range(len(runtimes))]
        ax.legend(handles, runtimes, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
        return save_figure(fig, path)
    finally:
        plt.close(fig)


def accuracy_png(entries: Sequence[Mapping[str, Any]], path: str | Path, title: str) -> Path | None:
    """Accuracy and macro-F1 side by side for each model (variants, baseline, streaming)."""
    ok = [e for e in entries if e.get("accuracy") is not None]
    if not ok:
        return None
    plt = _pyplot()
    names = [str(e["name"]) for e in ok]
    acc = np.array([e["accuracy"] for e in ok], dtype=float)
    f1 = np.array([e.get("macro_f1") if e.get("macro_f1") is not None else np.nan for e in ok], dtype=float)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(ok) + 2), 4))
    try:
        x = np.arange(len(ok))
        width = 0.38
        bars = ax.bar(x - width / 2, acc, width, label="accuracy")
        ax.bar(x + width / 2, np.nan_to_num(f1), width, label="macro-F1")
        for rect, value in zip(bars, acc):
            ax.text(rect.get_x() + rect.get_width() / 2, value, f"{value:.3f}", ha="center", va="bottom", fontsize=7)
        ax.set_xticks(x, labels=names, rotation=20, ha="right", fontsize=8)
        low = float(np.nanmin(np.concatenate([acc, f1])))
        ax.set_ylim(max(0.0, min(0.9, low - 0.05)), 1.0)
        ax.set_ylabel("test split score")
        ax.set_title(title, fontsize=10)
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize=8)
        return save_figure(fig, path)
    finally:
        plt.close(fig)


def stderr(text: str) -> None:
    """Progress notes that must not mix with the tables on stdout."""
    print(text, file=sys.stderr, flush=True)
