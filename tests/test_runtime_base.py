"""One runtime for every bundle kind: one ``load(bundle, options)``, the modality picked by the bundle's kind.

On the tiny real sensor bundle: the base's load picks the sensor runtime, one options object and the
keywords benchmarks pass build the same runtime, and a modality refuses a bundle of another kind.
"""

from __future__ import annotations

import numpy as np
import pytest

from edge_har.core.bundle import Bundle, BundleError
from edge_har.core.interpreter import InterpreterOptions
from edge_har.core.recordings import load_folder_recordings
from edge_har.device.runtime import Runtime
from edge_har.device.runtime_api import RuntimeOptions, StreamRuntime, runtime_class
from edge_har.device.video_runtime import VideoStreamRuntime


def test_the_base_load_picks_the_runtime_by_the_bundle_kind(tiny_bundle):
    assert runtime_class("sensor") is Runtime and runtime_class("video") is VideoStreamRuntime
    rt = StreamRuntime.load(tiny_bundle, "float32")
    assert type(rt) is Runtime and rt.variant == "float32"
    assert type(StreamRuntime.load(Bundle.load(tiny_bundle))) is Runtime  # a loaded Bundle too
    with pytest.raises(BundleError, match="'audio' bundle: no runtime runs it"):
        runtime_class("audio")


def test_a_modality_refuses_a_bundle_of_another_kind(tiny_bundle):
    with pytest.raises(BundleError, match="a sensor bundle; this runtime runs video bundles"):
        VideoStreamRuntime.load(tiny_bundle)


def test_options_and_keywords_build_the_same_runtime(tiny_bundle, tiny_dataset_dir):
    options = RuntimeOptions(
        variant="int8", interpreter=InterpreterOptions(num_threads=2), smoothing="majority", smoothing_window=3
    )
    by_options = StreamRuntime.load(tiny_bundle, options)
    by_keywords = Runtime.load(tiny_bundle, "int8", num_threads=2, smoothing="majority", smoothing_window=3)
    assert by_options.model.options == by_keywords.model.options == options.interpreter  # type: ignore[attr-defined]
    recording = load_folder_recordings(tiny_dataset_dir)[0]
    a = by_options.run_samples(recording.samples)  # type: ignore[attr-defined]
    b = by_keywords.run_samples(recording.samples)
    assert a and [p.label for p in a] == [p.label for p in b]
    for x, y in zip(a, b):
        assert np.array_equal(list(x.probabilities.values()), list(y.probabilities.values()))


def test_build_sets_interpreter_fields_flat_and_names_an_unknown_keyword():
    opts = RuntimeOptions.build("int8", num_threads=3, delegate_options={"device": "usb"}, threshold=0.5)
    assert opts.variant == "int8" and opts.threshold == 0.5
    assert opts.interpreter == InterpreterOptions(num_threads=3, delegate_options={"device": "usb"})
    base = RuntimeOptions(stride=4)
    assert RuntimeOptions.build(base) is base and RuntimeOptions.build(base, mode="clip").stride == 4
    with pytest.raises(TypeError, match="smoothing_windw"):
        RuntimeOptions.build(smoothing_windw=3)
    with pytest.raises(TypeError, match="RuntimeOptions or a variant name"):
        RuntimeOptions.build(InterpreterOptions())  # type: ignore[arg-type]


def test_from_config_carries_every_section(tmp_path, tiny_bundle):
    from edge_har.device.config import DeviceConfig

    cfg = DeviceConfig.model_validate(
        {
            "device_id": "d",
            "bundle": str(tiny_bundle),
            "variant": "auto",
            "source": {"type": "replay", "path": str(tmp_path)},
            "interpreter": {"num_threads": 2, "verify_sha256": False},
            "smoothing": {"method": "majority", "window": 7, "threshold": 0.25, "unknown_label": "null"},
            "auto_variant": {"budget_s": 0.5},
            "video": {"stride": 3, "mode": "clip", "publish_keypoints": True, "no_person_warn_s": 45},
        }
    )
    opts = RuntimeOptions.from_config(cfg)
    assert opts == RuntimeOptions(
        variant="auto",
        interpreter=cfg.interpreter.options(),
        smoothing="majority",
        smoothing_window=7,
        threshold=0.25,
        unknown_label="null",
        auto=cfg.auto_variant,
        stride=3,
        mode="clip",
        publish_keypoints=True,
        no_person_warn_s=45.0,
    )
