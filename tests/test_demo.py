"""README's main job, `edge-har demo`, on the tiny bundle: broker, daemon and subscriber for real."""

from __future__ import annotations

import json
import subprocess
import sys


def test_demo_shows_predictions_from_the_daemon(tiny_bundle, tiny_dataset_dir, tmp_path):
    work = tmp_path / "demo"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "edge_har",
            "demo",
            "--workdir",
            str(work),
            "--bundle",
            str(tiny_bundle),
            "--data",
            str(tiny_dataset_dir),
            "--seconds",
            "6",
            "--speed",
            "8",
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "predictions received; daemon exited with status 0 after SIGTERM" in proc.stdout
    lines = (work / "predictions.jsonl").read_text().splitlines()
    payloads = [json.loads(line) for line in lines]
    predictions = [p for p in payloads if "label" in p]
    assert len(predictions) >= 5
    labels = json.loads((tiny_bundle / "bundle.json").read_text())["labels"]
    assert {p["label"] for p in predictions} <= set(labels) | {"unknown"}
    assert all(p["device_id"] == "demo-pi" for p in predictions)
    summary = json.loads((work / "daemon-summary.json").read_text())
    assert summary["stop_reason"] == "SIGTERM received"
    # one recording per class is replayed, so the truth labels cover every class in turn
    truths = {p["extra"]["truth"] for p in predictions if p.get("extra", {}).get("truth")}
    assert truths and truths <= set(labels)
