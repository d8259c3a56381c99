#!/usr/bin/env bash
# Device-side installs, each in a fresh virtual environment without TensorFlow:
#   1. .[device] (ai-edge-litert, numpy 2): the daemon runs a replay through a bundle and
#      `edge-har subscribe` receives its predictions (edge-har demo --bundle ...).
#   2. .[tflite,dev] (tflite-runtime 2.14, numpy<2): the runtime tests run on tflite_runtime.
# The bundle is converted first in the workstation environment (.venv, from bootstrap.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

echo "== converting a tiny bundle in the workstation environment"
.venv/bin/python - "$WORK" <<'PY'
import sys
from pathlib import Path

from edge_har.convert.pipeline import run_convert
from edge_har.convert.synthetic import write_synthetic_imu_dataset
from tests.plugins.bundle import TINY_CLASSES, tiny_convert_options

work = Path(sys.argv[1])
data = write_synthetic_imu_dataset(work / "data", classes=TINY_CLASSES, recordings_per_class=6, subjects=3,
                                   seconds=(8.0, 12.0), seed=1)
run_convert(tiny_convert_options(work / "bundle", data=data))
PY
export EDGE_HAR_TEST_BUNDLE="$WORK/bundle" EDGE_HAR_TEST_DATA="$WORK/data"

echo "== .[device]: fresh venv, no TensorFlow, daemon on a replay"
python3 -m venv "$WORK/venv-device"
"$WORK/venv-device/bin/pip" install -q ".[device]"
if "$WORK/venv-device/bin/python" -c "import tensorflow" 2>/dev/null; then
  echo "error: .[device] installed TensorFlow"; exit 1
fi
(cd "$WORK" && "$WORK/venv-device/bin/edge-har" demo --workdir "$WORK/demo" --bundle "$WORK/bundle" \
   --data "$WORK/data" --seconds 8 --speed 8)

echo "== .[tflite]: fresh venv, tflite-runtime 2.14 on numpy<2, runtime tests"
python3 -m venv "$WORK/venv-tflite"
# editable: the tests run from the checkout, where edge_har.convert maps to convert/ (pyproject package-dir)
"$WORK/venv-tflite/bin/pip" install -q -e ".[tflite,dev]"
"$WORK/venv-tflite/bin/python" -c "
import numpy, tflite_runtime
from edge_har.core.interpreter import select_backend
assert select_backend().name == 'tflite_runtime', select_backend()
print('numpy', numpy.__version__, '- tflite_runtime', tflite_runtime.__version__, 'is the backend')"
"$WORK/venv-tflite/bin/python" -m pytest -q -p no:cacheprovider \
  tests/test_preprocessing.py tests/test_runtime.py tests/test_daemon.py tests/test_sources.py tests/test_smoothing.py \
  tests/test_attribution.py
