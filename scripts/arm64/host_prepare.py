"""Host side of ``scripts/arm64_check.sh``: the bundle, the windows and the replay it needs.

Runs in the workstation environment (``.venv``, TensorFlow), from the repository root:

    python scripts/arm64/host_prepare.py WORK [--bundle DIR] [--windows-from DATA] [--max-windows N]

* without ``--bundle``: the demo's synthetic wrist-IMU recordings (``edge-har demo``'s data,
  walk/sit/wave) and a small bundle converted from them with the test fixture's options
  (``tests/plugins/bundle.py``: Conv1D(8) + LSTM(8), all three variants);
* ``WORK/windows.npy``: model-ready windows (scaled, windowed, normalised by the bundle's own
  preprocessing) of the recordings in ``--windows-from`` (default: the synthetic ones), at most
  ``--max-windows``, evenly spread over all of them;
* ``WORK/replay/<Class>/``: one recording per class for the daemon run.

Prints one JSON line: the bundle, its variants, the window count.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np


def synthetic_data(work: Path) -> Path:
    from edge_har.convert.synthetic import write_synthetic_imu_dataset

    data = work / "data"
    if not data.is_dir():  # the same recordings `edge-har demo` writes
        write_synthetic_imu_dataset(data, recordings_per_class=8, subjects=4, seconds=(20.0, 40.0))
    return data


def tiny_bundle(work: Path, data: Path) -> Path:
    """The test fixture's bundle, with layers just wide enough (Conv1D(16) + LSTM(32)) that the
    converter really quantizes their weights in the dynamic_range variant, as it does for a real
    bundle: the fixture's 8-unit layers stay float there (TFLite leaves weights under 1024 values
    unquantized), which once hid that tflite-runtime 2.14 cannot load a real dynamic_range file."""
    from edge_har.convert.models import ModelConfig
    from edge_har.convert.pipeline import run_convert
    from tests.plugins.bundle import tiny_convert_options

    out = work / "bundle"
    if (out / "bundle.json").is_file():
        return out
    model = ModelConfig(conv_filters=(16,), kernel_size=3, lstm_units=(32,), conv_dropout=0.0, dropout=0.1)
    return run_convert(tiny_convert_options(out, data=data, model=model, command="scripts/arm64_check.sh"))


def windows_of(bundle_dir: Path, data: Path, max_windows: int) -> tuple[np.ndarray, int]:
    """Every window of every recording under ``data`` (folder or HMP layout), at most ``max_windows``."""
    from edge_har.core.bundle import Bundle
    from edge_har.core.preprocessing import recording_to_windows
    from edge_har.core.recordings import load_folder_recordings

    bundle = Bundle.load(bundle_dir)
    pre = bundle.preprocessing
    recordings = load_folder_recordings(data, n_channels=pre.n_channels, skip_bad=True)
    parts = [recording_to_windows(r.samples, pre, r.sample_rate_hz) for r in recordings]
    parts = [w for w in parts if len(w)]
    if not parts:
        raise SystemExit(f"error: {data}: no recording is long enough for one {pre.window}-sample window")
    windows = np.concatenate(parts).astype(np.float32)
    total = len(windows)
    if total > max_windows:
        windows = windows[np.linspace(0, total - 1, max_windows).round().astype(int)]
    return windows, total


def replay_subset(data: Path, out: Path) -> Path:
    """The last recording of each class (as ``edge-har demo`` replays), HMP's *_MODEL folders left out."""
    shutil.rmtree(out, ignore_errors=True)
    for folder in sorted(p for p in data.iterdir() if p.is_dir() and not p.name.endswith("_MODEL")):
        files = sorted(f for f in folder.iterdir() if f.suffix in (".txt", ".csv"))
        if files:
            (out / folder.name).mkdir(parents=True)
            shutil.copy2(files[-1], out / folder.name / files[-1].name)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("work", type=Path, help="folder for data/, bundle/, windows.npy and replay/")
    p.add_argument("--bundle", type=Path, default=None, help="a bundle converted beforehand (default: convert one)")
    p.add_argument(
        "--windows-from", type=Path, default=None, help="recordings to cut into windows (default: synthetic)"
    )
    p.add_argument("--max-windows", type=int, default=1000, help="at most this many windows (default 1000)")
    args = p.parse_args(argv)

    args.work.mkdir(parents=True, exist_ok=True)
    synthetic = None
    if args.bundle is None or args.windows_from is None:
        synthetic = synthetic_data(args.work)
    bundle = args.bundle if args.bundle is not None else tiny_bundle(args.work, synthetic)  # type: ignore[arg-type]
    data = args.windows_from if args.windows_from is not None else synthetic
    assert data is not None
    windows, total = windows_of(bundle, data, args.max_windows)
    np.save(args.work / "windows.npy", windows)
    replay_subset(data, args.work / "replay")
    from edge_har.core.bundle import Bundle

    info = {
        "bundle": str(Path(bundle).resolve()),
        "variants": [n for n, v in Bundle.load(bundle).variants.items() if not v.parts],
        "windows": int(len(windows)),
        "windows_available": int(total),
        "windows_from": str(Path(data).resolve()),
    }
    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
