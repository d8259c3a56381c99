"""``variant: auto`` on the tiny bundle: real interpreters timed, a real cache file, a real daemon and broker."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
import yaml

from edge_har.core.bundle import Bundle, BundleError
from edge_har.device.config import AutoVariantConfig, check_files, load_config
from edge_har.device.cpuinfo import parse_cpuinfo
from edge_har.device.daemon import Daemon
from edge_har.device.runtime import Runtime
from edge_har.device.variant_choice import (
    CACHE_FILE,
    ChoiceCache,
    choose_variant,
    default_cache_dir,
    eligible_variants,
)

VARIANTS = {"float32", "dynamic_range", "int8"}


def _auto(tmp_path: Path, **kw) -> AutoVariantConfig:
    return AutoVariantConfig(cache_dir=tmp_path / "cache", budget_s=kw.pop("budget_s", 0.3), **kw)


def _set_drops(bundle: Path, drops: dict, limit: float = 1.0) -> None:
    doc = json.loads((bundle / "bundle.json").read_text())
    doc["metrics"]["drop_points"] = drops
    doc["metrics"]["max_int8_drop_points"] = limit
    (bundle / "bundle.json").write_text(json.dumps(doc, indent=2))


def test_auto_times_every_gate_passing_variant_and_a_restart_reads_the_cache(tiny_bundle, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="edge_har.device.variant_choice")
    first = Runtime.load(tiny_bundle, "auto", auto=_auto(tmp_path))
    choice = first.variant_choice
    assert choice is not None and not choice.cached
    assert set(choice.timings_ms) == VARIANTS and all(t > 0 for t in choice.timings_ms.values())
    assert first.variant == choice.variant
    fastest = min(choice.timings_ms.values())
    default = Bundle.load(tiny_bundle).default_variant
    # the fastest median, or the bundle's default within 3% of it
    assert choice.timings_ms[choice.variant] == fastest or (
        choice.variant == default and choice.timings_ms[default] <= fastest * 1.03
    )
    assert min(choice.calls.values()) >= 5
    assert choice.seconds < 0.3 + 3.0  # bounded by the budget (plus loading three tiny models)
    assert choice.cpu["model"] and choice.runtime == first.model.backend.name
    cache_file = tmp_path / "cache" / CACHE_FILE
    assert choice.cache_file == str(cache_file) and cache_file.is_file()
    assert "variant auto:" in caplog.text and "measured in" in caplog.text and choice.cpu["model"] in caplog.text

    # a restart: the same figures come back from the file, nothing is timed again
    caplog.clear()
    second = Runtime.load(tiny_bundle, "auto", auto=_auto(tmp_path))
    again = second.variant_choice
    assert again is not None and again.cached
    assert again.variant == choice.variant == second.variant
    assert again.timings_ms == choice.timings_ms and again.measured_at == choice.measured_at
    assert "cached choice" in caplog.text and "measured in" not in caplog.text

    # another thread count is another measurement (and another entry beside the first)
    third = Runtime.load(tiny_bundle, "auto", num_threads=2, auto=_auto(tmp_path))
    assert third.variant_choice is not None and not third.variant_choice.cached
    assert len(json.loads(cache_file.read_text())["entries"]) == 2


def test_a_changed_bundle_or_cpu_measures_again(tiny_bundle_copy, tmp_path):
    runtime = Runtime.load(tiny_bundle_copy, "auto", auto=_auto(tmp_path))
    assert not runtime.variant_choice.cached
    bundle = Bundle.load(tiny_bundle_copy)
    options = runtime.model.options
    other_cpu = parse_cpuinfo("processor\t: 0\nmodel name\t: Other CPU\nflags\t\t: fpu sse2 avx2\n\n", "x86_64")
    choice, _ = choose_variant(bundle, options, budget_s=0.2, cache_dir=tmp_path / "cache", cpu=other_cpu)
    assert not choice.cached and choice.cpu["model"] == "Other CPU"
    _set_drops(tiny_bundle_copy, {"dynamic_range": 0.0, "int8": 0.5})  # bundle.json changed: its sha256 too
    choice, _ = choose_variant(Bundle.load(tiny_bundle_copy), options, budget_s=0.2, cache_dir=tmp_path / "cache")
    assert not choice.cached


def test_a_variant_over_the_accuracy_limit_is_never_a_candidate(tiny_bundle_copy, tmp_path):
    _set_drops(tiny_bundle_copy, {"dynamic_range": 0.2, "int8": 4.5}, limit=1.0)
    bundle = Bundle.load(tiny_bundle_copy)
    candidates, excluded = eligible_variants(bundle)
    assert candidates == ["float32", "dynamic_range"]
    assert "int8" in excluded and "accuracy gate" in excluded["int8"] and "4.50" in excluded["int8"]
    runtime = Runtime.load(tiny_bundle_copy, "auto", auto=_auto(tmp_path))
    assert set(runtime.variant_choice.timings_ms) == {"float32", "dynamic_range"}
    assert runtime.variant in ("float32", "dynamic_range")
    assert runtime.variant_choice.excluded == excluded

    _set_drops(tiny_bundle_copy, {"float32": 9.0, "dynamic_range": 9.0, "int8": 9.0}, limit=1.0)
    with pytest.raises(BundleError, match="variant auto: no variant can run"):
        Runtime.load(tiny_bundle_copy, "auto", auto=_auto(tmp_path))


def test_a_bundle_without_gate_metrics_times_every_variant(tiny_bundle_copy):
    doc = json.loads((tiny_bundle_copy / "bundle.json").read_text())
    doc["metrics"] = {}
    (tiny_bundle_copy / "bundle.json").write_text(json.dumps(doc))
    assert eligible_variants(Bundle.load(tiny_bundle_copy)) == (["float32", "dynamic_range", "int8"], {})


def test_a_corrupt_or_unwritable_cache_never_stops_the_start(tiny_bundle, tmp_path, caplog):
    folder = tmp_path / "cache"
    folder.mkdir()
    (folder / CACHE_FILE).write_text("{not json")
    caplog.set_level(logging.WARNING)
    runtime = Runtime.load(tiny_bundle, "auto", auto=AutoVariantConfig(cache_dir=folder, budget_s=0.2))
    assert not runtime.variant_choice.cached and "ignoring the cache" in caplog.text
    assert json.loads((folder / CACHE_FILE).read_text())["schema"] == 1  # rewritten whole

    blocker = tmp_path / "a-file"
    blocker.write_text("x")  # a "folder" that is a file: cannot be created or written
    caplog.clear()
    runtime = Runtime.load(tiny_bundle, "auto", auto=AutoVariantConfig(cache_dir=blocker / "sub", budget_s=0.2))
    assert runtime.variant in VARIANTS and runtime.variant_choice.cache_file is None
    assert "cannot write the cache" in caplog.text

    runtime = Runtime.load(tiny_bundle, "auto", auto=AutoVariantConfig(cache_dir=folder, cache=False, budget_s=0.2))
    assert not runtime.variant_choice.cached


def test_a_fixed_variant_is_loaded_as_before(tiny_bundle):
    for name in VARIANTS:
        runtime = Runtime.load(tiny_bundle, name)
        assert runtime.variant == name and runtime.variant_choice is None
    assert Runtime.load(tiny_bundle).variant == Bundle.load(tiny_bundle).default_variant


def test_the_default_cache_folder_follows_systemd_then_xdg(monkeypatch, tmp_path):
    for var in ("CACHE_DIRECTORY", "STATE_DIRECTORY", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / ".cache" / "edge-har"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "edge-har"
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/edge-har")  # the shipped unit's StateDirectory=edge-har
    assert default_cache_dir() == Path("/var/lib/edge-har")
    monkeypatch.setenv("CACHE_DIRECTORY", "/var/cache/edge-har:/other")
    assert default_cache_dir() == Path("/var/cache/edge-har")


def test_cache_keeps_a_bounded_number_of_entries(tiny_bundle, tmp_path):
    runtime = Runtime.load(tiny_bundle, "auto", auto=_auto(tmp_path))
    cache = ChoiceCache(tmp_path / "cache")
    base = runtime.variant_choice
    for i in range(40):
        base.key, base.measured_at = f"k{i:02d}", f"2026-01-01T00:00:{i:02d}+00:00"
        assert cache.put(base)
    entries = json.loads(cache.file.read_text())["entries"]
    assert len(entries) == 32 and "k39" in entries and "k00" not in entries


def test_config_accepts_auto_and_checks_every_variants_file(tiny_bundle_copy, tmp_path):
    cfg_file = tmp_path / "device.yaml"
    cfg_file.write_text(
        yaml.safe_dump(
            {
                "bundle": str(tiny_bundle_copy),
                "variant": "auto",
                "auto_variant": {"budget_s": 0.5, "cache_dir": "state"},
                "source": {"type": "replay", "path": str(tmp_path)},
            }
        )
    )
    loaded = load_config(cfg_file)
    assert loaded.config.variant == "auto" and loaded.config.auto_variant.cache_dir == tmp_path / "state"
    errors, _ = check_files(loaded)
    assert errors == []
    (tiny_bundle_copy / "model_float32.tflite").unlink()  # auto may time it, so its absence is an error
    errors, _ = check_files(loaded)
    assert any("model_float32.tflite does not exist" in e for e in errors), errors

    bad = tmp_path / "bad.yaml"
    bad.write_text(cfg_file.read_text().replace("budget_s: 0.5", "budget_s: 0"))
    with pytest.raises(Exception, match="auto_variant.budget_s"):
        load_config(bad)


def test_the_daemon_publishes_the_choice_once_in_stats(
    tiny_bundle, tiny_dataset_dir, mosquitto_broker, mqtt_listener, tmp_path
):
    listener = mqtt_listener(mosquitto_broker, ["edge-har/#"])
    data = {
        "device_id": "pi-auto",
        "bundle": str(tiny_bundle),
        "variant": "auto",
        "auto_variant": {"budget_s": 0.3, "cache_dir": str(tmp_path / "cache")},
        "source": {"type": "replay", "path": str(tiny_dataset_dir), "realtime": True, "speed": 20, "stop_at_end": True},
        "mqtt": {"host": mosquitto_broker.host, "port": mosquitto_broker.port, "stats_interval_s": 0.3},
    }
    cfg = tmp_path / "auto.yaml"
    cfg.write_text(yaml.safe_dump(data))
    assert Daemon(load_config(cfg), install_signal_handlers=False).run() == 0
    listener.wait_last("edge-har/pi-auto/status", b"stopped")
    stats = listener.payloads("edge-har/pi-auto/stats")
    assert len(stats) >= 2, "the replay should outlast a few stats intervals"
    carrying = [s for s in stats if "variant_choice" in s.get("extra", {})]
    assert len(carrying) == 1 and carrying[0] is stats[0]
    choice = carrying[0]["extra"]["variant_choice"]
    assert set(choice["timings_ms"]) == VARIANTS and not choice["cached"]
    preds = listener.payloads("edge-har/pi-auto/prediction")
    assert preds and {p["variant"] for p in preds} == {choice["variant"]}
    assert all(s["extra"]["variant"] == choice["variant"] for s in stats)


def test_shipped_sensor_configs_run_auto_and_coral_stays_int8():
    folder = Path(__file__).resolve().parents[1] / "firmware_configs"
    for path in sorted(folder.glob("*.yaml")):
        variant = yaml.safe_load(path.read_text()).get("variant")
        assert variant == ("int8" if path.name == "pi4-coral-usb.yaml" else "auto"), path.name


@pytest.mark.skipif(not os.path.exists("/proc/cpuinfo"), reason="Linux only")
def test_the_cache_key_names_this_cpu(tiny_bundle, tmp_path):
    runtime = Runtime.load(tiny_bundle, "auto", auto=_auto(tmp_path))
    entry = json.loads((tmp_path / "cache" / CACHE_FILE).read_text())["entries"][runtime.variant_choice.key]
    assert entry["cpu"]["model"] == runtime.variant_choice.cpu["model"] and entry["cpu"]["arch"]


def test_a_degenerate_variant_recorded_by_the_gate_is_left_out(tiny_bundle_copy):
    doc = json.loads((tiny_bundle_copy / "bundle.json").read_text())
    doc["metrics"]["gate"] = {
        "verdict": "accepted",
        "allowed_drop_points": 1.0,
        "degenerate": {"int8": {"share": 0.99}},
    }
    (tiny_bundle_copy / "bundle.json").write_text(json.dumps(doc))
    candidates, excluded = eligible_variants(Bundle.load(tiny_bundle_copy))
    assert "int8" not in candidates and "degenerate" in excluded["int8"]
