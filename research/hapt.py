"""The published benchmark: the UCI HAR protocol on HAPT's raw signals, run end to end and tabled.

UCI HAR (Anguita et al., ESANN 2013) is the benchmark human-activity papers report; HAPT
(Reyes-Ortiz et al., Neurocomputing 2016) holds the raw accelerometer and gyroscope
signals behind it, with interval labels. The protocol: the six basic activities, 2.56 s
windows (128 samples at 50 Hz) with 50% overlap, test subjects 2, 4, 9, 10, 12, 13, 18,
20, 24, training (and, here, validation, by subject) on the other 21. Published CNN-LSTM
results on UCI HAR are about 92-96% accuracy.

Three conversions, each through the real ``edge-har convert`` command line (so the figures
are what a user gets from the documented commands), then ``edge-har bench accuracy``
(every variant through the device's interpreter, a random-forest baseline, confusion
matrices) and ``edge-har bench latency`` (one thread, real test windows):

* ``basic6``: ``--preset uci-har`` (accelerometer + gyroscope, 6 channels)
* ``basic3``: ``--preset uci-har --columns acc_x,acc_y,acc_z`` (the accelerometer alone)
* ``all12``: ``--preset hapt-12`` (the 12 classes with the six postural transitions)

Everything goes under ``--out``: ``bundles/<config>``, ``<config>.json`` (the bench
results), ``<config>-int8-confusion.png``, ``hapt.json`` and ``hapt.md`` (the tables).
The int8 gate is the default one: a refused conversion is a row that says so.

    python research/hapt.py --data ../shared/data/hapt --out /tmp/hapt-bench
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

log = logging.getLogger("hapt_bench")

ACC_ONLY = "acc_x,acc_y,acc_z"
CONFIGS: dict[str, dict[str, Any]] = {
    "basic6": {"flags": ["--preset", "uci-har"], "what": "6 basic activities, acc + gyro (6 channels)"},
    "basic3": {
        "flags": ["--preset", "uci-har", "--columns", ACC_ONLY],
        "what": "6 basic activities, accelerometer alone (3 channels)",
    },
    "all12": {"flags": ["--preset", "hapt-12"], "what": "12 classes with the postural transitions, 6 channels"},
}
REPRODUCE = "python research/hapt.py --data ../shared/data/hapt --out /tmp/hapt-bench"


def _edge_har(args: Sequence[str], log_file: Path) -> tuple[int, float]:
    """Run ``edge-har ARGS`` in a child process (its own TensorFlow, its own memory); return (status, seconds)."""
    started = time.perf_counter()
    with log_file.open("w") as out:
        code = subprocess.call([sys.executable, "-m", "edge_har", *args], stdout=out, stderr=subprocess.STDOUT)
    return code, time.perf_counter() - started


def run_config(name: str, data: Path, out: Path, extra: Sequence[str]) -> dict[str, Any]:
    """Convert, then bench accuracy and latency, for one configuration; return its figures."""
    cfg = CONFIGS[name]
    bundle = out / "bundles" / name
    results = out / f"{name}.json"
    convert = ["convert", "--data", str(data), *cfg["flags"], *extra, "--out", str(bundle), "--overwrite"]
    convert += ["--no-progress"]
    log.info("%s: edge-har %s", name, " ".join(convert))
    code, seconds = _edge_har(convert, out / f"{name}-convert.log")
    row: dict[str, Any] = {"config": name, "what": cfg["what"], "command": "edge-har " + " ".join(convert)}
    row["convert_seconds"] = round(seconds, 1)
    if code != 0:
        tail = (out / f"{name}-convert.log").read_text().strip().splitlines()[-1:]
        row.update(status="refused" if code == 3 else "error", exit_status=code, error=" ".join(tail))
        log.warning("%s: convert exited %d: %s", name, code, row["error"])
        return row
    doc = json.loads((bundle / "bundle.json").read_text())
    row.update(
        status="ok",
        model_id=doc["model_id"],
        labels=doc["labels"],
        channels=doc["preprocessing"]["channels"],
        gate=doc["metrics"].get("gate"),
        training_seconds=doc["training"]["seconds"],
        epochs_run=doc["training"]["epochs_run"],
        best_epoch=doc["training"]["best_epoch"],
        split=doc["metrics"]["split"].get("windows"),
        val_subjects=doc["metrics"]["split"].get("val_subjects"),
    )
    if results.exists():
        results.unlink()
    bench = ["bench", "accuracy", str(bundle), "--no-streaming", "--json", str(results), "--out", str(out / name)]
    code, _ = _edge_har(bench + ["--no-progress"], out / f"{name}-accuracy.log")
    if code == 0:
        latency = ["bench", "latency", str(bundle), "--data", str(data), "--threads", "1", "--no-keras"]
        code, _ = _edge_har(latency + ["--json", str(results), "--out", str(out / name)], out / f"{name}-latency.log")
    if code != 0 or not results.exists():
        row.update(status="error", error=f"bench exited {code}; see {out}/{name}-*.log")
        return row
    suites = json.loads(results.read_text())["suites"]
    row["accuracy"] = {
        r["name"]: {
            k: r.get(k)
            for k in ("accuracy", "macro_f1", "drop_points", "size_bytes", "per_class_f1", "confusion_matrix")
        }
        for r in suites["accuracy"]["rows"]
        if r.get("status") == "ok"
    }
    row["latency_p50_ms"] = {
        r["variant"]: r["p50_ms"]
        for r in suites.get("latency", {}).get("rows", [])
        if r.get("status") == "ok" and r.get("runtime") == "ai_edge_litert" and r.get("threads") == 1
    }
    png = out / name / "confusion" / "int8" / "confusion_matrix.png"
    if png.exists():
        shutil.copyfile(png, out / f"{name}-int8-confusion.png")
        row["confusion_png"] = f"{name}-int8-confusion.png"
    row["noisy"] = bool(suites["accuracy"].get("noisy"))
    return row


def _pct(v: Any) -> str:
    return "-" if v is None else f"{100 * v:.2f}%"


def format_tables(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown: one summary table, then per configuration the per-class F1 table."""
    lines = [
        "| config | float32 acc | int8 acc | int8 macro-F1 | int8 vs float32 | gate | RF baseline acc | "
        "int8 size | int8 p50 (1 thread) | training |",
        "| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        if r["status"] != "ok":
            lines.append(f"| {r['config']}: {r['what']} | {r['status']}: {r.get('error', '')} |" + " |" * 8)
            continue
        acc = r["accuracy"]
        f32, i8, rf = acc.get("float32", {}), acc.get("int8", {}), acc.get("random_forest", {})
        drop = i8.get("drop_points")
        gate = (r.get("gate") or {}).get("verdict", "?")
        lat = r["latency_p50_ms"].get("int8")
        size = i8.get("size_bytes")
        lines.append(
            f"| {r['config']}: {r['what']} | {_pct(f32.get('accuracy'))} | {_pct(i8.get('accuracy'))} | "
            f"{_pct(i8.get('macro_f1'))} | {'-' if drop is None else f'{-drop:+.2f}'} | {gate} | "
            f"{_pct(rf.get('accuracy'))} | {'-' if size is None else f'{size / 1024:.1f} KB'} | "
            f"{'-' if lat is None else f'{lat:.3f} ms'} | {r['training_seconds']:.0f} s, {r['epochs_run']} epochs "
            f"(best {r['best_epoch']}) |"
        )
    for r in rows:
        if r["status"] != "ok":
            continue
        acc = r["accuracy"]
        names = [n for n in ("float32", "int8", "random_forest") if n in acc]
        lines += ["", f"Per-class F1, {r['config']} ({r['what']}):", ""]
        lines.append("| class | " + " | ".join(names) + " |")
        lines.append("| --- |" + " ---: |" * len(names))
        for label in r["labels"]:
            lines.append(
                f"| {label} | "
                + " | ".join(f"{acc[n]['per_class_f1'].get(label, float('nan')):.3f}" for n in names)
                + " |"
            )
        if r.get("confusion_png"):
            lines += ["", f"int8 confusion matrix: `{r['confusion_png']}`"]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python research/hapt.py",
        description="The UCI HAR protocol on HAPT's raw signals: convert (6 and 3 channels, 12 classes), "
        "bench accuracy and latency, and write the tables (hapt.md, hapt.json) to --out.",
        epilog=f"example: {REPRODUCE}",
    )
    parser.add_argument("--data", type=Path, required=True, help="the HAPT folder (read in place)")
    parser.add_argument("--out", type=Path, required=True, help="where bundles, results and tables go")
    parser.add_argument(
        "--configs",
        default=",".join(CONFIGS),
        help=f"comma-separated configurations to run, from {', '.join(CONFIGS)} (default: all)",
    )
    parser.add_argument(
        "--convert-flags",
        default="",
        metavar="FLAGS",
        help="extra flags for every edge-har convert, e.g. '--epochs 80 --seed 1' (one string)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    names = [n.strip() for n in args.configs.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        parser.error(f"--configs: unknown {', '.join(unknown)}; choose from {', '.join(CONFIGS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    rows = [run_config(n, args.data, args.out, args.convert_flags.split()) for n in names]
    kept = args.out / "hapt.json"
    if kept.exists():  # a run of some configurations keeps the others' rows, in CONFIGS order
        earlier = {r["config"]: r for r in json.loads(kept.read_text()).get("rows", [])}
        earlier.update({r["config"]: r for r in rows})
        rows = [earlier[n] for n in CONFIGS if n in earlier]
    kept.write_text(json.dumps({"reproduce": REPRODUCE, "rows": rows}, indent=2))
    text = format_tables(rows)
    (args.out / "hapt.md").write_text(text + "\n")
    print(text)
    return 0 if all(r["status"] == "ok" for r in rows) else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
