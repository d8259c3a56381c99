"""``variant: auto``: time the bundle's variants on this device at start, run the fastest.

Which variant is fastest depends on the CPU: on the developer's AVX-512 VNNI
workstation int8 takes a fraction of float32's time, on an AVX2-only Zen 3 or a Pi 4's
Cortex-A72 it is slower than float32. So the device measures instead of trusting the
bundle's default:

* the candidates are the variants that passed the bundle's accuracy gate
  (:func:`eligible_variants`: ``metrics.drop_points`` within ``metrics.max_int8_drop_points``);
* each is loaded with the config's interpreter options and timed round robin on the same
  random windows (the distribution of normalised data) for about ``budget_s`` seconds,
  loading included; the lowest median wins, the bundle's default when it is within
  ``TIE_TOLERANCE`` of the fastest (a near tie is noise, and the default is what the
  conversion reported on);
* the choice, every variant's median and the CPU are logged, kept for the daemon's first
  stats message, and cached in a JSON file keyed by the bundle (sha256 of bundle.json,
  which holds every model's sha256), the runtime and its version, the thread count and
  delegate, the CPU model and flags, and the edge-har version: a restart reads the cache
  and loads one model; any change of those measures again.

Only sensor bundles are timed. A video bundle (two models per variant, an encoder per frame
and a head per window) runs its ``default_variant`` under ``auto`` (see
:func:`edge_har.device.runtime_api.load_runtime`).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np

from edge_har.core.bundle import BUNDLE_FILE, Bundle, BundleError
from edge_har.core.interpreter import InterpreterOptions, TFLiteModel
from edge_har.device.cpuinfo import CpuInfo, cpu_info

log = logging.getLogger(__name__)

AUTO = "auto"
CACHE_FILE = "variant-choice.json"
CACHE_SCHEMA = 1
CACHE_MAX_ENTRIES = 32  # one per bundle x runtime x CPU a device has seen; oldest dropped
DEFAULT_BUDGET_S = 1.0
MIN_CALLS = 5  # timed calls per variant even when one call outlasts the budget
MAX_ROUNDS = 5000
WARMUP = 3
TIE_TOLERANCE = 0.03  # the default variant wins within 3% of the fastest median


@dataclass
class VariantChoice:
    """The outcome of ``variant: auto``: what runs, and the figures it was chosen on."""

    variant: str
    timings_ms: dict[str, float]  # median per-window predict() time of each candidate
    calls: dict[str, int]
    excluded: dict[str, str]  # variant -> why it was not a candidate
    cpu: dict[str, Any]
    runtime: str
    runtime_version: str
    num_threads: Optional[int]
    seconds: float  # time spent choosing (loading and timing every candidate), when measured
    measured_at: str
    cached: bool = False  # True when read from the cache at this start
    cache_file: Optional[str] = None
    key: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> VariantChoice:
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in names})

    def describe(self) -> str:
        """``int8 (int8 0.094 ms, dynamic_range 0.101 ms, float32 0.112 ms)``: for the log."""
        order = sorted(self.timings_ms, key=self.timings_ms.__getitem__)
        figures = ", ".join(f"{name} {self.timings_ms[name]:.3g} ms" for name in order)
        return f"{self.variant} ({figures})"


@dataclass
class _Candidate:
    name: str
    model: TFLiteModel
    times_ns: list[int] = field(default_factory=list)


def eligible_variants(bundle: Bundle) -> tuple[list[str], dict[str, str]]:
    """(candidates in bundle order, {excluded variant: reason}) by the bundle's accuracy gate.

    A variant is a candidate unless ``metrics.drop_points`` records it more than
    ``metrics.max_int8_drop_points`` below the reference: the same limit the conversion
    applied to full-integer variants, here to every variant, so that ``auto`` never trades
    accuracy the conversion would have refused for speed. A bundle accepted with
    ``--allow-int8-drop`` therefore has its over-limit variant excluded. A bundle without
    these keys (an older writer) records no drops: every variant is a candidate. A variant
    that ``metrics.gate.degenerate`` names (written with ``--allow-degenerate``) is excluded too.
    """
    metrics = bundle.metrics
    drops = metrics.get("drop_points") or {}
    raw_gate = metrics.get("gate")
    gate: Mapping[str, Any] = raw_gate if isinstance(raw_gate, Mapping) else {}
    limit = metrics.get("max_int8_drop_points", gate.get("allowed_drop_points"))
    raw_degenerate = gate.get("degenerate")
    degenerate: Mapping[str, Any] = raw_degenerate if isinstance(raw_degenerate, Mapping) else {}
    candidates, excluded = [], {}
    for name, variant in bundle.variants.items():
        if variant.parts:
            excluded[name] = "a split (video) variant"
            continue
        if name in degenerate:  # metrics.gate: written with --allow-degenerate
            excluded[name] = "failed the accuracy gate: degenerate (one class for almost every window)"
            continue
        drop = drops.get(name) if isinstance(drops, Mapping) else None
        if isinstance(drop, (int, float)) and isinstance(limit, (int, float)) and drop > limit:
            excluded[name] = f"failed the accuracy gate: {drop:.2f} points below float32 (limit {limit:g})"
            continue
        candidates.append(name)
    return candidates, excluded


def default_cache_dir() -> Path:
    """Where the choice is cached when the config names no folder.

    systemd's ``CacheDirectory=``/``StateDirectory=`` (``$CACHE_DIRECTORY``,
    ``$STATE_DIRECTORY``: the shipped unit has ``StateDirectory=edge-har``, i.e.
    /var/lib/edge-har, the one folder its ``ProtectSystem=strict`` leaves writable), else
    ``$XDG_CACHE_HOME/edge-har``, else ``~/.cache/edge-har``.
    """
    for var in ("CACHE_DIRECTORY", "STATE_DIRECTORY"):
        value = os.environ.get(var)
        if value:
            return Path(value.split(":")[0])
    xdg = os.environ.get("XDG_CACHE_HOME")
    return Path(xdg) / "edge-har" if xdg else Path.home() / ".cache" / "edge-har"


def bundle_sha256(bundle: Bundle) -> str:
    """sha256 of bundle.json: it records every model file's sha256 and the gate's metrics."""
    return hashlib.sha256((Path(bundle.root) / BUNDLE_FILE).read_bytes()).hexdigest()


def cache_key_fields(
    bundle: Bundle, options: InterpreterOptions, runtime: str, runtime_version: str, cpu: CpuInfo, candidates: list[str]
) -> dict[str, Any]:
    """Everything a measured choice depends on; a change in any of them measures again."""
    from edge_har import __version__

    return {
        "bundle_sha256": bundle_sha256(bundle),
        "candidates": candidates,
        "runtime": runtime,
        "runtime_version": runtime_version,
        "num_threads": options.num_threads,
        "delegate": options.delegate,
        "delegate_options": dict(options.delegate_options),
        "cpu_model": cpu.model,
        "cpu_board": cpu.board,
        "cpu_arch": cpu.arch,
        "cpu_flags": sorted(cpu.raw_flags),
        "edge_har": __version__,
    }


def cache_key(fields: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:24]


class ChoiceCache:
    """The JSON file of measured choices: ``{"schema": 1, "entries": {key: choice}}``.

    Never fatal: an unreadable or corrupt file is a warning and a fresh measurement, a
    folder that cannot be written is a warning and no cache (the daemon still starts).
    Written atomically (temporary file + rename), so a crash mid-write leaves the old file.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.file = self.folder / CACHE_FILE

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.file.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("variant auto: ignoring the cache %s (%s); measuring again", self.file, exc)
            return {}
        entries = data.get("entries") if isinstance(data, dict) and data.get("schema") == CACHE_SCHEMA else None
        return entries if isinstance(entries, dict) else {}

    def get(self, key: str) -> Optional[VariantChoice]:
        entry = self._read().get(key)
        if not isinstance(entry, dict):
            return None
        try:
            return VariantChoice.from_json(entry)
        except TypeError:
            return None

    def put(self, choice: VariantChoice) -> bool:
        entries = self._read()
        entries[choice.key] = {k: v for k, v in choice.to_json().items() if k not in ("cached", "cache_file")}
        if len(entries) > CACHE_MAX_ENTRIES:
            for key in sorted(entries, key=lambda k: str(entries[k].get("measured_at", "")))[:-CACHE_MAX_ENTRIES]:
                del entries[key]
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".variant-choice-", dir=self.folder)
            with os.fdopen(fd, "w") as fh:
                json.dump({"schema": CACHE_SCHEMA, "entries": entries}, fh, indent=1, sort_keys=True)
            os.replace(tmp, self.file)
        except OSError as exc:
            log.warning("variant auto: cannot write the cache %s (%s); the next start measures again", self.file, exc)
            return False
        return True


def time_candidates(candidates: list[_Candidate], inputs: np.ndarray, budget_s: float, started: float) -> None:
    """Round robin over the candidates, one window each per round, until the budget is spent.

    Round robin so that a burst of load on the machine falls on every variant alike; at
    least ``MIN_CALLS`` timed calls each, however slow the model.
    """
    clock = time.perf_counter_ns
    for i in range(WARMUP):
        for c in candidates:
            c.model.predict(inputs[i % len(inputs)])
    deadline = started + budget_s
    for i in range(MAX_ROUNDS):
        x = inputs[i % len(inputs)]
        for c in candidates:
            t0 = clock()
            c.model.predict(x)
            c.times_ns.append(clock() - t0)
        if i + 1 >= MIN_CALLS and time.perf_counter() >= deadline:
            break


def choose_variant(
    bundle: Bundle,
    options: InterpreterOptions,
    *,
    budget_s: float = DEFAULT_BUDGET_S,
    cache_dir: Optional[Path] = None,
    use_cache: bool = True,
    cpu: Optional[CpuInfo] = None,
) -> tuple[VariantChoice, TFLiteModel]:
    """Measure (or read from the cache) the fastest eligible variant; returns it and its loaded model.

    The winner's model is handed back so the runtime does not load it a second time.
    Raises :class:`BundleError` when no variant is a candidate, or the first candidate's
    load error when none loads.
    """
    started = time.perf_counter()
    cpu = cpu or cpu_info()
    candidates, excluded = eligible_variants(bundle)
    if not candidates:
        reasons = "; ".join(f"{k}: {v}" for k, v in excluded.items())
        raise BundleError(f"{bundle.root / BUNDLE_FILE}: variant auto: no variant can run ({reasons})")
    # The runtime's name and version come from loading the first candidate: the one import.
    first = bundle.load_model(candidates[0], options=options)
    backend = first.backend
    fields = cache_key_fields(bundle, options, backend.name, backend.version, cpu, candidates)
    key = cache_key(fields)
    cache = ChoiceCache(cache_dir or default_cache_dir()) if use_cache else None
    if cache is not None:
        hit = cache.get(key)
        if hit is not None and hit.variant in candidates:
            hit.cached, hit.cache_file, hit.key = True, str(cache.file), key
            model = first if hit.variant == candidates[0] else bundle.load_model(hit.variant, options=options)
            log.info(
                "variant auto: %s, cached choice from %s (%s), on %s, %s %s",
                hit.describe(),
                hit.measured_at,
                cache.file,
                cpu.summary(),
                backend.name,
                backend.version,
            )
            return hit, model
    loaded = [_Candidate(candidates[0], first)]
    for name in candidates[1:]:
        try:
            loaded.append(_Candidate(name, bundle.load_model(name, options=options)))
        except Exception as exc:  # one variant that does not load (a delegate's refusal) is not a failed start
            excluded[name] = f"does not load: {exc}"
            log.warning("variant auto: %s left out: %s", name, exc)
    shape = loaded[0].model.input.shape[1:]
    inputs = np.random.default_rng(0).standard_normal((8, *shape)).astype(np.float32)
    time_candidates(loaded, inputs, budget_s, started)
    medians = {c.name: float(np.median(c.times_ns)) / 1e6 for c in loaded}
    fastest = min(medians, key=medians.__getitem__)
    default = bundle.default_variant
    if default in medians and medians[default] <= medians[fastest] * (1 + TIE_TOLERANCE):
        fastest = default
    choice = VariantChoice(
        variant=fastest,
        timings_ms=medians,
        calls={c.name: len(c.times_ns) for c in loaded},
        excluded=excluded,
        cpu=cpu.to_json(),
        runtime=backend.name,
        runtime_version=backend.version,
        num_threads=options.num_threads,
        seconds=time.perf_counter() - started,
        measured_at=_dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        key=key,
    )
    if cache is not None and cache.put(choice):
        choice.cache_file = str(cache.file)
    log.info(
        "variant auto: %s, measured in %.2f s (%s calls each) on %s, %s %s%s",
        choice.describe(),
        choice.seconds,
        "/".join(str(n) for n in choice.calls.values()),
        cpu.summary(),
        backend.name,
        backend.version,
        "; left out: " + "; ".join(f"{k} ({v})" for k, v in excluded.items()) if excluded else "",
    )
    model = next(c.model for c in loaded if c.name == fastest)
    return choice, model
