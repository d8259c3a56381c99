#!/usr/bin/env bash
# Fetch MediaPipe's BlazePose models (Apache-2.0) for `edge-har convert-video --backbone pose`.
#
#   scripts/get_pose_models.sh DIR        # DIR gets pose_detection.tflite, pose_landmark_full.tflite,
#                                         # LICENSE.mediapipe and pose_models.json (sha256 of each)
#
# The mediapipe wheel is only a zip holding the .tflite files: it is downloaded with
# `pip download --no-deps` (never installed: mediapipe 0.10.14 pins protobuf<5 and would break
# TensorFlow's venv) and the three files are extracted with Python's zipfile. The x86-64 wheel is
# asked for on every host (--platform): the .tflite files are platform independent, so the same
# command works on x86-64 and aarch64 workstations. Nothing here runs on the device.
# Already present with the recorded sha256: nothing is downloaded again.
set -euo pipefail
if [ $# -ne 1 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
  sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
  [ $# -eq 1 ] && exit 0 || exit 2
fi
DIR="$1"
HERE="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x "$HERE/.venv/bin/python" ]; then PY="$HERE/.venv/bin/python"; else PY="python3"; fi
fi
VERSION="${MEDIAPIPE_VERSION:-0.10.14}"
mkdir -p "$DIR"
if [ -f "$DIR/pose_models.json" ] && "$PY" - "$DIR" <<'PYEOF'
import hashlib, json, pathlib, sys
d = pathlib.Path(sys.argv[1]); meta = json.loads((d / "pose_models.json").read_text())
ok = all(hashlib.sha256((d / f["file"]).read_bytes()).hexdigest() == f["sha256"] for f in meta["files"].values())
sys.exit(0 if ok else 1)
PYEOF
then
  echo "get_pose_models: $DIR already holds the models (sha256 checked)"
  exit 0
fi
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
echo "get_pose_models: pip download mediapipe==$VERSION (wheel only, not installed)"
"$PY" -m pip download -q --no-deps "mediapipe==$VERSION" --only-binary=:all: \
  --platform manylinux_2_17_x86_64 --python-version 3.11 -d "$TMP"
"$PY" - "$TMP" "$DIR" "$VERSION" <<'PYEOF'
import hashlib, json, pathlib, sys, zipfile
tmp, out, version = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3]
wheels = sorted(tmp.glob("mediapipe-*.whl"))
if not wheels:
    sys.exit(f"get_pose_models: pip left no mediapipe wheel in {tmp}")
members = {
    "detector": "mediapipe/modules/pose_detection/pose_detection.tflite",
    "landmarks": "mediapipe/modules/pose_landmark/pose_landmark_full.tflite",
    "licence": f"mediapipe-{version}.dist-info/LICENSE",
}
names = {"detector": "pose_detection.tflite", "landmarks": "pose_landmark_full.tflite", "licence": "LICENSE.mediapipe"}
files = {}
with zipfile.ZipFile(wheels[0]) as z:
    for key, member in members.items():
        try:
            data = z.read(member)
        except KeyError:
            sys.exit(f"get_pose_models: {wheels[0].name} has no {member}")
        (out / names[key]).write_bytes(data)
        files[key] = {"file": names[key], "member": member, "sha256": hashlib.sha256(data).hexdigest(), "size_bytes": len(data)}
meta = {
    "source": f"mediapipe=={version} wheel from PyPI ({wheels[0].name}), pip download --no-deps",
    "wheel_sha256": hashlib.sha256(wheels[0].read_bytes()).hexdigest(),
    "licence": "Apache-2.0",
    "files": files,
}
(out / "pose_models.json").write_text(json.dumps(meta, indent=2) + "\n")
for key, f in files.items():
    print(f"get_pose_models: {out / f['file']}  {f['size_bytes']} bytes  sha256 {f['sha256']}")
PYEOF
