"""``edge-har convert`` / ``evaluate`` command lines: help texts, missing TensorFlow, bad options."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edge_har.cli import main

ROOT = Path(__file__).resolve().parents[1]


def python(code: str, *args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def test_top_level_help_lists_convert_and_evaluate_without_importing_tensorflow():
    code = (
        "import sys\n"
        "from edge_har.cli import build_parser\n"
        "text = build_parser().format_help()\n"
        "print(text)\n"
        "print('TF-LOADED' if 'tensorflow' in sys.modules or 'tf_keras' in sys.modules else 'TF-NOT-LOADED')\n"
    )
    result = python(code)
    assert result.returncode == 0, result.stderr
    assert "convert" in result.stdout and "evaluate" in result.stdout
    assert "TF-NOT-LOADED" in result.stdout


def test_convert_help_explains_the_options(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["convert", "--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines anywhere
    for flag in (
        "--data",
        "--out",
        "--window",
        "--stride",
        "--target-rate",
        "--conv-filters",
        "--lstm-units",
        "--bidirectional",
        "--epochs",
        "--batch-size",
        "--patience",
        "--calibration-size",
        "--max-int8-drop",
        "--allow-int8-drop",
        "--seed",
        "--logical-cpus",
        "--overwrite",
    ):
        assert flag in text, flag
    assert "default: 3s" in text and "default: 0.5s" in text and "default: 300" in text
    assert "/work/shared/data/hmp/HMP" in text  # the worked example


def test_evaluate_help_explains_the_options(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for flag in ("BUNDLE", "--data", "--variant", "--split", "--out", "--backend"):
        assert flag in text, flag
    assert "No TensorFlow needed" in text


def test_convert_without_tensorflow_says_which_extra_to_install(tmp_path):
    code = (
        "import sys; sys.modules['tensorflow'] = None; sys.modules['tf_keras'] = None\n"
        "from edge_har.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    )
    result = python(code, "convert", "--data", str(tmp_path), "--out", str(tmp_path / "b"))
    assert result.returncode == 2
    assert "needs TensorFlow" in result.stderr and "pip install 'edge-har[train]'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--calibration-size", "0"], "--calibration-size: expected a positive integer"),
        (["--variants", "float32,int4"], "unknown variant(s) int4"),
        (["--variants", "int8"], "'int8' lacks float32"),
        (["--conv-filters", "a,b"], "--conv-filters: expected comma-separated integers"),
        (["--target-rate", "-5"], "--target-rate: expected a positive number"),
    ],
)
def test_bad_convert_options_are_rejected_by_the_parser(argv, fragment, capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["convert", "--data", str(tmp_path), *argv])
    assert exc.value.code == 2
    assert fragment in capsys.readouterr().err


def test_convert_video_without_float32_is_a_parser_error_not_a_traceback(capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["convert-video", "--data", str(tmp_path), "--variants", "int8"])
    assert exc.value.code == 2
    assert "'int8' lacks float32" in capsys.readouterr().err


def test_bad_window_is_a_one_line_error(tiny_dataset_dir, tmp_path, capsys):
    code = main(["convert", "--data", str(tiny_dataset_dir), "--out", str(tmp_path / "b"), "--window", "3 lightyears"])
    err = capsys.readouterr().err
    assert code == 2 and "--window" in err and "3 lightyears" in err
    assert not (tmp_path / "b").exists()


def test_out_that_is_not_a_bundle_is_refused_before_training(tiny_dataset_dir, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("keep me")
    code = main(["convert", "--data", str(tiny_dataset_dir), "--out", str(tmp_path), "--overwrite"])
    assert code == 2 and "not a model bundle" in capsys.readouterr().err
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_out_holding_a_bundle_needs_overwrite(tiny_bundle_copy, tiny_dataset_dir, capsys):
    code = main(["convert", "--data", str(tiny_dataset_dir), "--out", str(tiny_bundle_copy)])
    assert code == 2 and "--overwrite" in capsys.readouterr().err


def test_missing_data_folder_is_a_one_line_error(tmp_path, capsys):
    code = main(["convert", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "b")])
    err = capsys.readouterr().err
    assert code == 2 and "nowhere" in err
