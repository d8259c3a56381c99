"""A small real pose bundle for the tests marked ``pose`` (no fixture here: a plain helper).

:func:`pose_bundle` converts drawn clips (``convert/pose_synthetic.py``: wave vs still, 160x120
at 10 fps, window 8, stride 4) with ``--backbone pose`` once per test session (about 20 s;
later calls in the session reuse it from pytest's base temp folder). The BlazePose models
come from $EDGE_HAR_POSE_MODELS or ~/.cache/edge-har/pose, fetched by
``scripts/get_pose_models.sh`` like tests/test_pose_models.py does; without them the test is
skipped (failed in CI). $EDGE_HAR_TEST_POSE_BUNDLE names a bundle made
the same way before, to skip the conversion. The head is barely trained (three epochs): these tests measure the
runtime, the daemon and the benchmark around it, never its accuracy.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
KTH = Path(
    os.environ.get("EDGE_HAR_KTH") or Path(__file__).resolve().parents[2] / "shared" / "data" / "video" / "kth-partial"
)
FPS = 10.0
SIZE = (160, 120)  # width, height: the KTH clips' own size


def pose_models_dir() -> Path:
    target = Path(os.environ.get("EDGE_HAR_POSE_MODELS") or Path.home() / ".cache" / "edge-har" / "pose")
    result = subprocess.run(
        [str(ROOT / "scripts" / "get_pose_models.sh"), str(target)], capture_output=True, text=True, timeout=600
    )
    if result.returncode != 0:
        message = f"scripts/get_pose_models.sh {target} failed ({result.returncode}): {result.stderr[-800:]}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return target


def pose_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's small pose bundle (made on first use; $EDGE_HAR_TEST_POSE_BUNDLE: one made before)."""
    made = os.environ.get("EDGE_HAR_TEST_POSE_BUNDLE")
    if made:
        return Path(made)
    work = tmp_path_factory.getbasetemp() / "pose-bundle"
    out = work / "bundle"
    if (out / "bundle.json").is_file():
        return out
    models = pose_models_dir()
    from edge_har.convert.pose_pipeline import PoseOptions
    from edge_har.convert.pose_synthetic import write_pose_dataset
    from edge_har.convert.train import TrainConfig
    from edge_har.convert.video_models import VideoModelConfig
    from edge_har.convert.video_pipeline import VideoConvertOptions, run_convert_video

    data = write_pose_dataset(work / "data", {"wave": 2, "still": 2}, frames=24, fps=FPS)
    options = VideoConvertOptions(
        out=out,
        data=data,
        split_options={"by": "clip", "test_fraction": 0.5, "val_fraction": 0.0, "seed": 1},
        fps=FPS,
        stride=4,
        model=VideoModelConfig(backbone="plain", weights="none", frames=8, lstm_units=(8,)),
        train=TrainConfig(epochs=3, batch_size=16, patience=3, verbose=0),
        calibration_size=8,
        allow_int8_drop=True,
        allow_degenerate=True,  # three epochs: the figures around the model matter here, not its accuracy
        progress=False,
        pose=PoseOptions(models, height=SIZE[1], width=SIZE[0], cache_dir=work / "cache"),
    )
    return Path(run_convert_video(options))


def blank(value: int = 170) -> np.ndarray:
    """A frame with nobody in it (BGR, the bundle's size)."""
    return np.full((SIZE[1], SIZE[0], 3), value, np.uint8)


def person(arm: float = 0.5) -> np.ndarray:
    """A frame with the drawn person in it."""
    from edge_har.convert.pose_synthetic import draw_person

    return draw_person(arm, SIZE[0], SIZE[1])


def kth_clip() -> Path:
    """A real KTH clip (25 fps, 160x120) with the person in every frame; skipped when the data is absent."""
    clip = KTH / "boxing" / "person04_boxing_d1_uncomp.mp4"
    if not clip.is_file():
        pytest.skip(f"{clip}: the KTH clips are not here (EDGE_HAR_KTH names their folder)")
    return clip


def kth_frames(limit: int = 75) -> tuple[list[np.ndarray], float]:
    """The first ``limit`` frames of :func:`kth_clip` (BGR) and its frame rate."""
    import cv2

    cap = cv2.VideoCapture(str(kth_clip()))
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    frames = []
    while len(frames) < limit:
        ok, img = cap.read()
        if not ok:
            break
        frames.append(img)
    cap.release()
    assert frames, "no frame decoded from the KTH clip"
    return frames, float(fps)
