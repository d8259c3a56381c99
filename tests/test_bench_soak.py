"""``edge-har bench soak``: the real daemon against a real mosquitto, its memory sampled every second."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edge_har.benchmarks.soak import rss_slope
from edge_har.cli import main
from edge_har.mqtt.local_broker import find_mosquitto

needs_mosquitto = pytest.mark.skipif(find_mosquitto() is None, reason="mosquitto is not installed")


@needs_mosquitto
def test_short_soak_samples_memory_and_fits_a_slope(tiny_bundle, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["bench", "soak", str(tiny_bundle), "--duration", "8", "--warmup", "2", "--out", str(out), "--no-progress"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    section = json.loads((out / "results.json").read_text())["suites"]["soak"]
    for key in ("date", "git", "machine", "bundle", "settings", "definition", "replay", "rss_mb", "slope", "flat"):
        assert key in section, key
    assert section["exit_status"] == 0  # SIGTERM at the end: a clean stop
    samples = section["samples"]
    assert len(samples) >= 6  # one a second over 8 s
    times = [s[0] for s in samples]
    assert times == sorted(times) and all(20 < s[1] < 2000 for s in samples)
    rss = section["rss_mb"]
    assert rss["min"] <= rss["start"] <= rss["max"] and rss["min"] <= rss["end"] <= rss["max"]
    slope = section["slope"]
    assert slope["samples"] >= 4 and isinstance(slope["mb_per_h"], float) and slope["span_s"] > 3
    # the tiny bundle: 32 Hz, stride 16, at 50 x real time is 100 windows/s; the daemon keeps up
    assert 50 < section["windows_per_s"] < 130
    assert section["seq_gaps"] == 0 and section["daemon_stats"]["windows_total"] > 300
    assert "slope MB/h" in printed
    if "soak" in section.get("plots", {}):
        assert (out / "soak.png").stat().st_size > 0


def test_slope_is_in_megabytes_per_hour():
    t = np.arange(0, 600, 1.0)
    rng = np.random.default_rng(0)
    growing = 60 + 3.0 * t / 3600 + rng.normal(0, 0.05, t.size)  # 3 MB/h and noise
    fit = rss_slope(t, growing)
    assert fit["mb_per_h"] == pytest.approx(3.0, abs=0.3) and fit["stderr_mb_per_h"] < 0.2
    assert fit["fitted_growth_mb"] == pytest.approx(3.0 * 599 / 3600, abs=0.05)
    flat = rss_slope(t, np.full(t.size, 61.5))
    assert flat["mb_per_h"] == pytest.approx(0.0, abs=1e-9)
    assert rss_slope([0.0, 1.0], [1.0, 2.0])["mb_per_h"] is None  # too few samples to fit


def test_a_video_bundle_or_missing_bundle_is_refused_with_its_path(tmp_path, capsys):
    assert main(["bench", "soak", str(tmp_path / "nope"), "--duration", "1", "--out", str(tmp_path)]) != 0
    assert str(tmp_path / "nope") in capsys.readouterr().err
