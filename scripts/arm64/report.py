"""Compare the arm64 probabilities with the host's and write the arm64 check's summary.

    python report.py RESULTS --windows-name demo --max-disagree 0.01 [--json OUT]

``RESULTS`` is the folder ``scripts/arm64_check.sh`` fills::

    host/probs/<variant>.npy, host/probs/meta.json      the x86-64 reference (predict.py)
    <extra>/probs/<variant>.npy, <extra>/probs/meta.json the same windows in the arm64 root
    <extra>/versions.json                               `pip list --format=json` of that venv
    <extra>/daemon-<variant>.json                       what the host subscriber received
    timings.tsv                                         "<step>\\t<seconds>" lines, in order

Needs numpy only (no edge_har), so the host can run it from any venv. Prints the table and exits
1 when any variant of any extra disagrees on the label of more than ``--max-disagree`` of the
windows, when a variant is missing on one side, or when a daemon run delivered nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

# The distributions whose versions the summary reports (pip names, lower case).
REPORTED = (
    "edge-har",
    "numpy",
    "ai-edge-litert",
    "tflite-runtime",
    "paho-mqtt",
    "pydantic",
    "pydantic-core",
    "opencv-python-headless",
    "pyyaml",
    "psutil",
    "pyserial",
    "smbus2",
)


def agreement(reference: np.ndarray, other: np.ndarray) -> dict[str, Any]:
    """Argmax agreement share and the largest absolute probability difference of two (windows x classes) arrays."""
    if reference.shape != other.shape:
        raise ValueError(f"shapes differ: {reference.shape} vs {other.shape}")
    if reference.ndim != 2 or len(reference) == 0:
        raise ValueError(f"expected a non-empty (windows, classes) array, got shape {reference.shape}")
    same = reference.argmax(axis=1) == other.argmax(axis=1)
    return {
        "windows": int(len(reference)),
        "label_agreement": float(same.mean()),
        "labels_differ": int((~same).sum()),
        "max_abs_diff": float(np.abs(reference.astype(np.float64) - other.astype(np.float64)).max()),
    }


def read_timings(path: Path) -> dict[str, float]:
    out: dict[str, float] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            if line.strip():
                step, seconds = line.split("\t")
                out[step] = round(float(seconds), 1)
    return out


def versions(pip_list: list[dict[str, str]], python: str | None) -> dict[str, str]:
    have = {d["name"].lower().replace("_", "-"): d["version"] for d in pip_list}
    out = {"python": python} if python else {}
    out.update({name: have[name] for name in REPORTED if name in have})
    out["tensorflow"] = have.get("tensorflow", "not installed")
    return out


def collect(
    results: Path, windows_name: str, max_disagree: float, known_unloadable: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """The summary dict (what goes to --json); ``problems`` lists every reason to fail.

    ``known_unloadable`` holds ``"<extra>:<variant>"`` pairs whose runtime is known not to load that
    variant: their load failure (and the daemon's exit 78 on them) is reported under ``known``
    instead of failing; any other load failure fails.
    """
    problems: list[str] = []
    known: list[str] = []
    host_dir = results / "host" / "probs"
    host_meta = json.loads((host_dir / "meta.json").read_text())
    summary: dict[str, Any] = {
        "windows_set": windows_name,
        "windows": host_meta["windows"],
        "max_disagree": max_disagree,
        "emulation": (results / "emulation.txt").read_text().strip() if (results / "emulation.txt").is_file() else None,
        "reference": {k: host_meta[k] for k in ("machine", "backend", "backend_version", "numpy", "python")},
        "timings_s": read_timings(results / "timings.tsv"),
        "extras": {},
    }
    extras = sorted(p.name for p in results.iterdir() if p.is_dir() and p.name != "host" and (p / "probs").is_dir())
    if not extras:
        problems.append(f"{results}: no arm64 results")
    for extra in extras:
        d = results / extra
        meta = json.loads((d / "probs" / "meta.json").read_text())
        pip_list = json.loads((d / "versions.json").read_text()) if (d / "versions.json").is_file() else []
        entry: dict[str, Any] = {
            "machine": meta["machine"],
            "backend": f"{meta['backend']} {meta['backend_version']}",
            "versions": versions(pip_list, meta.get("python")),
            "agreement": {},
            "daemon": {},
        }
        if entry["versions"]["tensorflow"] != "not installed":
            problems.append(f"{extra}: TensorFlow is installed ({entry['versions']['tensorflow']})")
        errors = meta.get("errors", {})
        for variant in host_meta["seconds"]:
            file = d / "probs" / f"{variant}.npy"
            if variant in errors:
                entry["agreement"][variant] = {"error": errors[variant]}
                note = f"{extra} {variant}: {entry['backend']} cannot load it: {errors[variant]}"
                (known if f"{extra}:{variant}" in known_unloadable else problems).append(note)
                continue
            if not file.is_file():
                problems.append(f"{extra}: no arm64 probabilities for variant {variant}")
                continue
            a = agreement(np.load(host_dir / f"{variant}.npy"), np.load(file))
            entry["agreement"][variant] = a
            if 1.0 - a["label_agreement"] > max_disagree:
                problems.append(
                    f"{extra} {variant}: labels differ on {a['labels_differ']} of {a['windows']} windows "
                    f"({1 - a['label_agreement']:.2%} > {max_disagree:.2%})"
                )
        for file in sorted(d.glob("daemon-*.json")):
            variant = file.stem[len("daemon-") :]
            got = json.loads(file.read_text())
            entry["daemon"][variant] = {k: got[k] for k in ("predictions", "stopped", "exit", "error") if k in got}
            if got.get("exit") == 78 and f"{extra}:{variant}" in known_unloadable:
                known.append(f"{extra} daemon {variant}: exit 78 (the variant cannot load), as expected")
            elif not got["predictions"] or not got["stopped"]:
                problems.append(f"{extra} daemon {variant}: {got['predictions']} predictions, stopped={got['stopped']}")
        summary["extras"][extra] = entry
    summary["known"] = known
    summary["problems"] = problems
    summary["ok"] = not problems
    return summary


def table(summary: dict[str, Any]) -> str:
    """The human summary: versions, then agreement per extra and variant, then timings."""
    lines = [
        f"arm64 check: {summary['windows']} {summary['windows_set']} windows, reference "
        f"{summary['reference']['machine']} {summary['reference']['backend']} {summary['reference']['backend_version']}"
        + (f"; arm64: {summary['emulation']}" if summary.get("emulation") else ""),
        "",
        "| extra | runtime | variant | label agreement | labels differ | max abs prob diff | daemon predictions |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for extra, e in summary["extras"].items():
        for variant, a in e["agreement"].items():
            daemon = e["daemon"].get(variant, {}).get("predictions", "-")
            if "error" in a:
                lines.append(f"| {extra} | {e['backend']} | {variant} | cannot load | - | - | {daemon} |")
                continue
            lines.append(
                f"| {extra} | {e['backend']} | {variant} | {a['label_agreement']:.2%} | "
                f"{a['labels_differ']}/{a['windows']} | {a['max_abs_diff']:.2e} | {daemon} |"
            )
    lines.append("")
    for extra, e in summary["extras"].items():
        lines.append(f"{extra} versions ({e['machine']}): " + ", ".join(f"{k} {v}" for k, v in e["versions"].items()))
    if summary["timings_s"]:
        lines.append("")
        lines.append(
            "steps (s, emulated: not Pi timings): " + ", ".join(f"{k} {v}" for k, v in summary["timings_s"].items())
        )
    for note in summary["known"]:
        lines.append(f"KNOWN: {note}")
    for problem in summary["problems"]:
        lines.append(f"FAIL: {problem}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", type=Path)
    p.add_argument("--windows-name", type=str, default="demo", help="what the windows are, for the report")
    p.add_argument("--max-disagree", type=float, default=0.01, help="largest share of windows whose labels may differ")
    p.add_argument("--json", type=Path, default=None, help="write the summary here")
    p.add_argument(
        "--known-unloadable",
        type=str,
        default="",
        help="comma-separated EXTRA:VARIANT pairs whose runtime is known not to load the variant",
    )
    args = p.parse_args(argv)
    known = frozenset(x.strip() for x in args.known_unloadable.split(",") if x.strip())
    summary = collect(args.results, args.windows_name, args.max_disagree, known)
    print(table(summary))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
