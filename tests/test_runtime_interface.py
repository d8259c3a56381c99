"""One runtime interface: both runtimes implement ``StreamRuntime``, and the interpreter
section of the config reaches every model whole, delegate options included.

The regression this guards: the video runtime once copied the sensor runtime's loading
code field by field and dropped ``interpreter.delegate_options``, so a camera bundle on a
Coral config (``delegate: libedgetpu.so.1`` with ``device: usb``) ran without them. No Edge
TPU is here, so the delegate loader of the real backend is replaced by one that records
what it is asked for; the interpreter itself is the real one, on the real converted files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from edge_har.core import interpreter as interp
from edge_har.core.interpreter import Backend, InterpreterError, InterpreterOptions
from edge_har.device.config import load_config
from edge_har.device.runtime import Runtime
from edge_har.device.runtime_api import StreamRuntime, WindowStage, load_runtime

DELEGATE = "libedgetpu.so.1"
DELEGATE_OPTIONS = {"device": "usb"}


@pytest.fixture(scope="module")
def tiny_video_bundle(tmp_path_factory) -> Path:
    """A real, deliberately under-trained video bundle (encoder + head, float32) in a few seconds."""
    pytest.importorskip("tf_keras")
    pytest.importorskip("cv2")
    from edge_har.convert.train import TrainConfig
    from edge_har.convert.video_models import VideoModelConfig
    from edge_har.convert.video_pipeline import VideoConvertOptions, run_convert_video
    from edge_har.convert.video_synthetic import write_synthetic_clip_dataset

    root = tmp_path_factory.mktemp("iface-video")
    clips = write_synthetic_clip_dataset(
        root / "clips",
        classes=("bounce", "orbit", "sweep"),
        clips_per_class=4,
        seconds=(2.0, 2.5),
        fps=10,
        size=(48, 36),
        seed=5,
    )
    options = VideoConvertOptions(
        out=root / "bundle",
        data=clips,
        fps=10,
        stride=2,
        model=VideoModelConfig(
            backbone="plain", weights="none", input_size=32, conv_filters=(4,), frames=4, lstm_units=(4,), dropout=0.0
        ),
        train=TrainConfig(epochs=1, batch_size=16, patience=1, verbose=0),
        variants=("float32",),
        default_variant="float32",
        calibration_size=10,
        allow_int8_drop=True,
        progress=False,
        command="pytest tiny_video_bundle",
    )
    return run_convert_video(options)


def _config(tmp_path: Path, bundle: Path, interpreter: dict[str, Any], camera: bool) -> Any:
    data: dict[str, Any] = {
        "device_id": "iface-test",
        "bundle": str(bundle),
        "interpreter": interpreter,
        "source": {"type": "camera", "device": "/dev/video0"}
        if camera
        else {"type": "replay", "path": str(tmp_path), "format": "folder"},
        "smoothing": {"window": 1},
    }
    path = tmp_path / "device.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_config(path).config


class _RecordedDelegate:
    def __init__(self, library: str, options: dict[str, Any]) -> None:
        self.library, self.options = library, options


@pytest.fixture
def recording_backend(monkeypatch) -> list[tuple[str, list[_RecordedDelegate]]]:
    """The real backend, but ``load_delegate`` records (library, options) instead of opening a library.

    The interpreter is still built, from the real file, with the recorded delegates taken out;
    returns (model file name, delegates handed to the interpreter) per model loaded.
    """
    real = interp.select_backend("auto")
    loaded: list[tuple[str, list[_RecordedDelegate]]] = []

    def interpreter_cls(**kwargs: Any) -> Any:
        delegates = kwargs.pop("experimental_delegates", [])
        loaded.append((Path(kwargs["model_path"]).name, delegates))
        return real.interpreter_cls(**kwargs)

    spy = Backend(
        "recording", real.version, interpreter_cls, lambda library, options: _RecordedDelegate(library, options)
    )
    monkeypatch.setattr(interp, "select_backend", lambda preference="auto": spy)
    return loaded


def test_interpreter_config_builds_one_options_object(tmp_path, tiny_video_bundle):
    cfg = _config(
        tmp_path,
        tiny_video_bundle,
        {"num_threads": 2, "delegate": DELEGATE, "delegate_options": DELEGATE_OPTIONS, "verify_sha256": False},
        True,
    )
    options = cfg.interpreter.options()
    assert options == InterpreterOptions("auto", 2, DELEGATE, DELEGATE_OPTIONS, False)
    with pytest.raises(TypeError):
        options.delegate_options["device"] = "pci"  # shared by every model: read-only


def test_both_runtimes_implement_stream_runtime(tmp_path, tiny_bundle, tiny_video_bundle):
    from edge_har.device.video_runtime import VideoStreamRuntime

    sensor = load_runtime(_config(tmp_path, tiny_bundle, {}, camera=False))
    video = load_runtime(_config(tmp_path, tiny_video_bundle, {}, camera=True))
    assert type(sensor) is Runtime and type(video) is VideoStreamRuntime  # picked by the bundle's kind
    for rt in (sensor, video):
        assert isinstance(rt, StreamRuntime)
        assert isinstance(rt.windowing(), WindowStage)
    assert sensor.counters() == {}  # nothing runtime-specific for the stats message
    assert set(video.counters()) >= {"frames_in", "frames_kept"}
    assert video.counters()["no_person_s"] is None  # not a pose bundle: no person to miss


def test_video_bundle_receives_the_configured_delegate_options(tmp_path, tiny_video_bundle, recording_backend):
    cfg = _config(tmp_path, tiny_video_bundle, {"delegate": DELEGATE, "delegate_options": DELEGATE_OPTIONS}, True)
    rt = load_runtime(cfg)
    files = {name: delegates for name, delegates in recording_backend}
    assert set(files) == {"encoder_float32.tflite", "head_float32.tflite"}
    for name, delegates in files.items():
        assert [(d.library, d.options) for d in delegates] == [(DELEGATE, DELEGATE_OPTIONS)], name
    models = rt.models  # type: ignore[attr-defined]
    assert models.encoder.options == models.head.options == cfg.interpreter.options()
    # The models are the real ones: a window through encoder + head gives a Prediction.
    windowing = rt.windowing()
    frame = np.zeros(rt.spec.shape, np.float32)  # type: ignore[attr-defined]
    windows = [w for w in (windowing.push_preprocessed(frame) for _ in range(rt.spec.window)) if w is not None]  # type: ignore[attr-defined]
    prediction = rt.predict(windows[0])
    assert set(prediction.probabilities) == set(rt.labels)


def test_sensor_bundle_receives_the_configured_delegate_options(tmp_path, tiny_bundle, recording_backend):
    load_runtime(_config(tmp_path, tiny_bundle, {"delegate": DELEGATE, "delegate_options": DELEGATE_OPTIONS}, False))
    assert [(name, [(d.library, d.options) for d in ds]) for name, ds in recording_backend] == [
        ("model_int8.tflite", [(DELEGATE, DELEGATE_OPTIONS)])
    ]


@pytest.mark.filterwarnings(
    "ignore::pytest.PytestUnraisableExceptionWarning"
)  # litert Delegate.__del__ on a failed load
def test_a_missing_delegate_library_fails_the_video_bundle_loudly(tmp_path, tiny_video_bundle):
    """With the real backend: the delegate is really opened, and its absence is an error naming it."""
    cfg = _config(
        tmp_path, tiny_video_bundle, {"delegate": "libedgetpu-absent.so.1", "delegate_options": DELEGATE_OPTIONS}, True
    )
    with pytest.raises(InterpreterError, match="cannot load delegate 'libedgetpu-absent.so.1'"):
        load_runtime(cfg)
