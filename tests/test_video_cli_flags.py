"""convert-video's gate and encoder flags are real argparse options (in --help, parsed, refused when wrong)."""

from __future__ import annotations

import subprocess
import sys


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge_har", "convert-video", *args], capture_output=True, text=True, timeout=120
    )


def test_allow_degenerate_and_the_pose_backbone_are_documented_options():
    shown = _run("--help")
    assert shown.returncode == 0, shown.stderr
    text = " ".join(shown.stdout.split())
    assert "--allow-degenerate" in text and "one class for nearly every test window" in text
    assert "{mobilenetv2,plain,pose}" in text and "BlazePose" in text


def test_an_unknown_backbone_is_refused_by_name():
    bad = _run("--data", ".", "--backbone", "resnet", "--out", "x")
    assert bad.returncode == 2 and "invalid choice: 'resnet'" in bad.stderr
