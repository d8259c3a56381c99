"""``convert --seeds``: the same conversion trained with several seeds, reported as mean and spread.

One seed's accuracy is one draw: on UCI HAR's protocol the same model gave 93.3% with
seed 42 and 92.1% on average over three. A headline figure is therefore the mean and
the spread over seeds, on the same split (only training's seed changes: weights,
dropout, shuffling), with the table per seed kept. Every seed's bundle goes through
the whole conversion, int8 gate included, into ``<out>.seeds/seed-<n>``; the one
published at ``<out>`` is the seed with the lowest validation loss among those the gate
passed: chosen without looking at the test split, whose figures it reports as they are.
``bundle.json`` ``metrics.seeds`` carries the table and the summary, and
``<out>.seeds/seeds.json`` and ``seeds.md`` the same for people and scripts.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from edge_har.convert.skeleton import AccuracyGateError, ConvertError

log = logging.getLogger(__name__)

MAX_SEEDS = 50
FIGURES = ("int8_accuracy", "int8_macro_f1", "float32_accuracy")


def parse_seeds(text: str | None, first: int) -> list[int]:
    """``N`` (N seeds from ``first`` on) or ``a,b,c``; ConvertError naming the flag otherwise."""
    if text is None or str(text).strip() == "":
        return []
    spec = str(text).strip()
    try:
        if "," not in spec:
            n = int(spec)
            if not 2 <= n <= MAX_SEEDS:
                raise ConvertError(f"--seeds {spec}: between 2 and {MAX_SEEDS} seeds")
            return [first + i for i in range(n)]
        seeds = [int(v) for v in spec.split(",") if v.strip()]
    except ValueError:
        raise ConvertError(f"--seeds {spec!r}: a count (5) or a comma-separated list of integers (1,2,3)") from None
    if len(seeds) < 2 or len(set(seeds)) != len(seeds) or len(seeds) > MAX_SEEDS:
        raise ConvertError(f"--seeds {spec!r}: 2 to {MAX_SEEDS} different seeds")
    if any(s < 0 for s in seeds):
        raise ConvertError(f"--seeds {spec!r}: seeds are >= 0")
    return seeds


def seeds_dir(out: str | Path) -> Path:
    dest = Path(out).absolute()
    return dest.with_name(dest.name + ".seeds")


def _best_val_loss(bundle_dir: Path) -> float:
    try:
        history = json.loads((bundle_dir / "training" / "history.json").read_text())
    except (OSError, ValueError):
        return math.inf
    watched = history.get(history.get("monitor") or "val_loss") or history.get("loss") or []
    return float(min(watched)) if watched else math.inf


def seed_row(seed: int, bundle_dir: Path) -> dict[str, Any]:
    """One seed's figures from its bundle (the test split's, as the conversion recorded them)."""
    return document_row(seed, json.loads((bundle_dir / "bundle.json").read_text()), bundle_dir)


def document_row(seed: int, document: Mapping[str, Any], bundle_dir: Path) -> dict[str, Any]:
    """One seed's figures from a conversion's document (``bundle.json``, or a refusal's ``refused.json``)."""
    metrics = document.get("metrics") or {}
    variants = metrics.get("variants") or {}
    return {
        "seed": seed,
        "verdict": (metrics.get("gate") or {}).get("verdict", "pass"),
        "int8_accuracy": (variants.get("int8") or {}).get("accuracy"),
        "int8_macro_f1": (variants.get("int8") or {}).get("macro_f1"),
        "float32_accuracy": (variants.get("float32") or {}).get("accuracy"),
        "val_loss": _best_val_loss(bundle_dir),
        "epochs_run": (document.get("training") or {}).get("epochs_run"),
        "train_seconds": (document.get("training") or {}).get("seconds"),
        "bundle": str(bundle_dir),
    }


def summarise(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Mean, sample standard deviation, min and max of each figure over the seeds that have it."""
    out: dict[str, Any] = {"seeds": len(rows), "refused": sum(r["verdict"] == "refused" for r in rows)}
    for key in FIGURES:
        values = np.asarray([r[key] for r in rows if isinstance(r.get(key), (int, float))], np.float64)
        if not len(values):
            out[key] = None
            continue
        out[key] = {
            "mean": round(float(values.mean()), 6),
            "std": round(float(values.std(ddof=1)), 6) if len(values) > 1 else 0.0,
            "min": round(float(values.min()), 6),
            "max": round(float(values.max()), 6),
            "n": int(len(values)),
        }
    return out


def table(rows: Sequence[dict[str, Any]], summary: dict[str, Any], chosen: int | None) -> str:
    """The per-seed table and the mean +- std line, in Markdown (``seeds.md`` and the terminal)."""

    def pct(v: Any) -> str:
        return "-" if not isinstance(v, (int, float)) else f"{100 * v:.2f}"

    lines = [
        "| seed | int8 accuracy % | int8 macro-F1 % | float32 accuracy % | best val loss | gate |",
        "|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        loss = "-" if not math.isfinite(r.get("val_loss", math.inf)) else f"{r['val_loss']:.4f}"
        mark = " (published)" if r["seed"] == chosen else ""
        lines.append(
            f"| {r['seed']}{mark} | {pct(r['int8_accuracy'])} | {pct(r['int8_macro_f1'])} | "
            f"{pct(r['float32_accuracy'])} | {loss} | {r['verdict']} |"
        )
    cells = []
    for key in FIGURES:
        s = summary.get(key)
        cells.append("-" if not s else f"{100 * s['mean']:.2f} +- {100 * s['std']:.2f}")
    lines.append(f"| mean +- std | {' | '.join(cells)} | | {summary['refused']} refused |")
    return "\n".join(lines)


def run_seeds(options: Any, seeds: Sequence[int], run: Any, dataset: Any = None, split: Any = None) -> Path:
    """Convert once per seed with ``run(options, dataset=, split=)``; publish the chosen seed's bundle at ``options.out``.

    Raises AccuracyGateError when the gate refuses every seed (each seed's refused model is kept
    in its folder, as a single conversion keeps it).
    """
    from edge_har.convert import export

    export.check_destination(options.out, options.overwrite)  # before hours of training
    root = seeds_dir(options.out)
    root.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    for i, seed in enumerate(seeds):
        log.info("seed %d (%d of %d)", seed, i + 1, len(seeds))
        one = replace(options, out=root / f"seed-{seed}", overwrite=True, train=replace(options.train, seed=seed))
        try:
            rows.append(seed_row(seed, Path(run(one, dataset=dataset, split=split))))
        except AccuracyGateError as exc:
            quantized = exc.quantized or {}
            rows.append(
                {
                    "seed": seed,
                    "verdict": "refused",
                    "int8_accuracy": quantized.get("int8"),
                    "int8_macro_f1": None,
                    "float32_accuracy": exc.float_accuracy,
                    "val_loss": math.inf,
                    "message": str(exc),
                }
            )
            log.warning("seed %d refused by the gate: %s", seed, str(exc).split(". ")[0])
    summary = summarise(rows)
    passed = [r for r in rows if r["verdict"] != "refused"]
    chosen = min(passed, key=lambda r: (r["val_loss"], r["seed"]))["seed"] if passed else None
    text = table(rows, summary, chosen)
    record = {
        "seeds": list(seeds),
        "varied": "training's seed only (weights, dropout, shuffling); the split is the same for every seed",
        "per_seed": [
            {k: (None if k == "val_loss" and not math.isfinite(v) else v) for k, v in r.items() if k != "bundle"}
            for r in rows
        ],
        "summary": summary,
        "published_seed": chosen,
        "chosen_by": "lowest validation loss among the seeds the gate passed (the test split is not looked at)",
        "folder": str(root),
    }
    (root / "seeds.json").write_text(json.dumps(export.json_ready(record), indent=2, allow_nan=False) + "\n")
    (root / "seeds.md").write_text(text + "\n")
    log.info("seeds:\n%s", text)
    if chosen is None:
        raise AccuracyGateError(
            f"refusing to write the bundle: the int8 gate refused all {len(seeds)} seeds (table: {root / 'seeds.md'})",
            float(summary["float32_accuracy"]["mean"]) if summary["float32_accuracy"] else float("nan"),
            {},
        )
    with export.staging_dir(options.out) as staging:
        shutil.rmtree(staging)
        shutil.copytree(root / f"seed-{chosen}", staging)
        document = json.loads((staging / "bundle.json").read_text())
        document.setdefault("metrics", {})["seeds"] = record
        export.write_json(staging, document)
        return export.publish(staging, options.out, options.overwrite)
