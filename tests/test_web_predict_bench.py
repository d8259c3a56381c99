"""``edge-har bench web-predict``: a real uvicorn on loopback, real uploads, figures in results.json."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("fastapi")

from edge_har.cli import main  # noqa: E402


def test_the_web_predict_suite_measures_real_requests(tiny_bundle, tiny_dataset_dir, tmp_path, capsys):
    recording = sorted((tiny_dataset_dir / "Walk").glob("*.txt"))[0]
    argv = ["bench", "web-predict", str(tiny_bundle), "--quick", "--requests", "15", "--warmup", "2"]
    argv += ["--seconds", "3", "--recording", str(recording), "--out", str(tmp_path), "--no-progress"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "POST /api/predict on loopback" in out and "HTTP round trip" in out
    section = json.loads((tmp_path / "results.json").read_text())["suites"]["web-predict"]
    up = section["upload"]
    assert up["samples"] == 96 and up["windows_per_request"] == 3  # 3 s at 32 Hz: windows of 64, stride 16
    assert section["http"]["n"] == 15 and section["interpreter_per_window"]["n"] == 45
    # the round trip holds the server's time, which holds the interpreter's
    assert section["http"]["p50_ms"] > section["server"]["p50_ms"] > section["interpreter_per_window"]["p50_ms"] > 0
    assert section["requests_per_s"] > 0 and section["interpreter"]["backend"]
    again = [*argv[:3], "--quick", "--requests", "5", "--warmup", "0", "--out", str(tmp_path / "again")]
    assert main([*again, "--compare", str(tmp_path / "results.json"), "--no-progress"]) == 0
    compared = capsys.readouterr().out
    assert "Compared with" in compared and "| HTTP round trip | p50 ms" in compared and "requests/s" in compared


def test_a_recording_shorter_than_a_window_is_refused(tiny_bundle, tmp_path, capsys):
    assert main(["bench", "web-predict", str(tiny_bundle), "--seconds", "1", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "fewer than one window" in err and "\n" not in err.strip()
