"""edge-har's pose encoder against MediaPipe 0.10.14's own pose graph on real KTH clips.

tests/data/pose_golden/kth_mediapipe_0.10.14.npz holds MediaPipe's landmarks (legacy
``mp.solutions.pose.Pose``, model_complexity 1, ``smooth_landmarks=False`` so each frame's
landmarks are that frame's, one ``Pose`` per clip) for the kept frames of the four clips in
../shared/data/video/kth-partial, and for every second frame turned a quarter turn (people
on their side, where MediaPipe's rotated crop matters), recorded by
scripts/record_mediapipe_golden.py in a virtual environment of its own. Here the same
clips go through edge-har's loader with a pose bundle's frame preparation and the
project's ``PoseEncoder`` (benchmarks/pose_golden.py does the measuring); each frame's mean
value must equal the golden fingerprint, so both sides saw the same frames.

Bounds (measured on x86-64 with LiteRT: median distance 0.010 torso lengths overall, at most
0.020 on a clip, upright and turned alike; offsets at most 0.005; the previous axis-aligned
crop measured 0.039 upright and 0.55 turned), with about 2x margin:

* median landmark distance to MediaPipe over the frames where both found a person, all 33
  landmarks, in MediaPipe's torso lengths (shoulder centre to hip centre): at most 0.02
  over all clips and 0.04 on any one clip;
* median per-frame offset (edge-har - MediaPipe, mean over the landmarks) in x and in y:
  at most 0.01 torso lengths over all clips and 0.02 on any one clip;
* person found: on every clip in at least as many frames as MediaPipe, and MediaPipe
  finds a person in at most 2 frames of a clip where edge-har finds none.

Marked ``pose``; skipped when the KTH clips are absent (they are shared data, not test data).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.test_pose_models import pose_models_dir  # noqa: F401  (the fixture that fetches the models)

pytestmark = pytest.mark.pose

KTH = Path(__file__).resolve().parents[2] / "shared" / "data" / "video" / "kth-partial"
GOLDEN = Path(__file__).resolve().parent / "data" / "pose_golden" / "kth_mediapipe_0.10.14.npz"
SETS = ("upright", "turned")

MAX_DISTANCE_OVERALL = 0.02  # torso lengths
MAX_DISTANCE_CLIP = 0.04
MAX_OFFSET_OVERALL = 0.01
MAX_OFFSET_CLIP = 0.02
MAX_MEDIAPIPE_ONLY = 2  # frames of a clip where only MediaPipe found a person


@pytest.fixture(scope="module")
def measured(pose_models_dir: Path) -> dict[str, Any]:  # noqa: F811
    if not KTH.is_dir():
        pytest.skip(f"the KTH clips are not at {KTH} (shared data, see ../shared/data)")
    from edge_har.benchmarks.pose_golden import clip_frames, load_golden, make_encoder, measure

    golden = load_golden(GOLDEN)
    assert golden.meta["mediapipe"] == "0.10.14" and golden.meta["options"]["smooth_landmarks"] is False
    clips = clip_frames(KTH, golden, pose_models_dir)  # GoldenError when a frame's fingerprint differs
    return measure(golden, clips, make_encoder(pose_models_dir))


def _figures(measured: dict[str, Any], which: str) -> list[tuple[str, dict[str, Any]]]:
    return [*measured[which]["clips"].items(), ("overall", measured[which]["overall"])]


@pytest.mark.parametrize("which", SETS)
def test_landmarks_are_mediapipes_to_within_a_fiftieth_of_a_torso(measured, which):
    for name, row in _figures(measured, which):
        bound = MAX_DISTANCE_OVERALL if name == "overall" else MAX_DISTANCE_CLIP
        assert row["found"]["both"] >= 0.8 * row["frames"], (name, row["found"])
        assert row["distance"]["torso"] <= bound, (which, name, row["distance"])


@pytest.mark.parametrize("which", SETS)
def test_no_systematic_offset(measured, which):
    for name, row in _figures(measured, which):
        bound = MAX_OFFSET_OVERALL if name == "overall" else MAX_OFFSET_CLIP
        assert abs(row["offset"]["x_torso"]) <= bound, (which, name, row["offset"])
        assert abs(row["offset"]["y_torso"]) <= bound, (which, name, row["offset"])


@pytest.mark.parametrize("which", SETS)
def test_a_person_is_found_at_least_as_often_as_mediapipe_finds_one(measured, which):
    for name, row in _figures(measured, which):
        found = row["found"]
        assert found["edge_har"] >= found["mediapipe"], (which, name, found)
        if name != "overall":
            assert found["mediapipe_only"] <= MAX_MEDIAPIPE_ONLY, (which, name, found)
