"""The research scripts run from a checkout by path and are not part of the installed package.

They train with TensorFlow for most of an hour and drive ``edge-har convert`` and ``edge-har
bench``, so they live in ``research/``, outside what ``pip install edge-har`` ships, and the
commands the docs give for them (``python research/<name>.py``) must keep working.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["int8_study", "hapt"])
def test_a_research_script_runs_by_path_and_is_not_installed(name: str) -> None:
    shown = subprocess.run(
        [sys.executable, f"research/{name}.py", "--help"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith(f"usage: python research/{name}.py ")
    assert importlib.util.find_spec(f"edge_har.benchmarks.{name}") is None
    assert not (REPO / "benchmarks" / f"{name}.py").exists()
