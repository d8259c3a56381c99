"""The video CNN-LSTM: configuration, encoder/head/whole views, backbone weights, image-seq pipeline.

Everything runs without ImageNet weights (no internet on CI): MobileNetV2 is
built with ``weights=None`` or from a weights file the test writes, which goes
through the same ``keras.applications`` loading code as a downloaded file.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("tf_keras")
pytest.importorskip("cv2")

from edge_har.convert.video_models import (  # noqa: E402
    VideoModelConfig,
    VideoModelError,
    build_backbone,
    build_video_model,
    float32_copy,
)

TINY = VideoModelConfig(
    backbone="plain", weights="none", input_size=32, conv_filters=(8, 16), frames=6, lstm_units=(12,)
)


def test_config_checks_name_the_problem():
    with pytest.raises(VideoModelError, match="frames must be 1"):
        VideoModelConfig(mode="image-seq", frames=8)
    with pytest.raises(VideoModelError, match="input sizes"):
        VideoModelConfig(weights="imagenet", input_size=100)
    with pytest.raises(VideoModelError, match="alpha"):
        VideoModelConfig(weights="imagenet", input_size=96, alpha=0.6)
    with pytest.raises(VideoModelError, match="mobilenetv2 backbone only"):
        VideoModelConfig(backbone="plain", weights="imagenet")
    with pytest.raises(VideoModelError, match="lstm_export 'while' must be one of unrolled, fused"):
        VideoModelConfig(lstm_export="while")
    assert VideoModelConfig().lstm_export == "unrolled" and TINY.head_config().lstm_export == "unrolled"
    assert VideoModelConfig(mode="image-seq", frames=1).size == 224  # 7x7 map for MobileNetV2
    assert VideoModelConfig().frame_scaling() == (1 / 127.5, -1.0)
    assert TINY.frame_scaling() == (1 / 255, 0.0)
    assert VideoModelConfig(weights="imagenet").freeze_backbone and not TINY.freeze_backbone
    assert VideoModelConfig.from_json(json.loads(json.dumps(TINY.to_json()))) == TINY


def test_whole_model_is_exactly_head_over_encoder_features():
    model = build_video_model(TINY, n_classes=3)
    assert model.feature_shape == (16,)
    assert model.sequence_shape == (6, 16)
    assert model.whole.input_shape == (None, 6, 32, 32, 3)
    clip = np.random.default_rng(0).random((2, 6, 32, 32, 3), dtype=np.float32)
    whole = model.whole.predict(clip, verbose=0)
    features = np.stack([model.encoder.predict(c, verbose=0) for c in clip])  # one call per frame
    split = model.head.predict(features, verbose=0)
    np.testing.assert_allclose(split, whole, atol=1e-5)
    np.testing.assert_allclose(whole.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("unrolled", [False, True])
def test_static_batch_copy_keeps_the_weights(unrolled):
    model = build_video_model(TINY, n_classes=3)
    copy = float32_copy(model, batch_size=1, unrolled_lstm=unrolled)
    assert copy.encoder.input_shape == (1, 32, 32, 3)
    assert copy.head.input_shape == (1, 6, 16)
    assert copy.whole.input_shape == (1, 6, 32, 32, 3)
    assert type(copy.head.get_layer("lstm1")).__name__ == ("UnrolledLSTM" if unrolled else "LSTM")
    clip = np.random.default_rng(1).random((1, 6, 32, 32, 3), dtype=np.float32)
    np.testing.assert_allclose(copy.whole.predict(clip, verbose=0), model.whole.predict(clip, verbose=0), atol=1e-6)


def test_image_seq_reads_the_feature_map_as_a_sequence():
    mobile = build_video_model(VideoModelConfig(mode="image-seq", frames=1, weights="none", alpha=0.35), n_classes=4)
    assert mobile.feature_shape == (49, 1280)  # 224 px -> 7x7 positions of 1280 channels
    assert mobile.head.get_layer("lstm1").input_shape == (None, 49, 1280)
    plain = build_video_model(
        VideoModelConfig(
            mode="image-seq",
            frames=1,
            backbone="plain",
            weights="none",
            input_size=32,
            conv_filters=(8, 16),
            feature_dim=8,
        ),
        n_classes=2,
    )
    assert plain.feature_shape == (64, 16)  # 32 px after two 2x2 pools -> 8x8 positions
    assert plain.head.get_layer("lstm1").input_shape == (None, 64, 8)  # after the kernel-1 projection


def test_mobilenetv2_weights_from_a_file(tmp_path):
    config = VideoModelConfig(weights="none", alpha=0.35, input_size=96)
    source = build_backbone(config)
    path = tmp_path / "mobilenet_v2_0.35_96_no_top.h5"
    source.save_weights(str(path))
    loaded = build_backbone(VideoModelConfig(weights=str(path), alpha=0.35, input_size=96))
    for a, b in zip(source.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    pretrained = build_video_model(
        VideoModelConfig(weights=str(path), alpha=0.35, input_size=96, frames=4), n_classes=2
    )
    # A pretrained backbone is frozen: only the head (and nothing of MobileNetV2) trains.
    trainable = {w.name.split("/")[0] for w in pretrained.whole.trainable_weights}
    assert trainable and all(not n.startswith(("Conv", "block", "expanded", "bn_Conv")) for n in trainable)
    with pytest.raises(VideoModelError, match="cannot load it"):
        build_backbone(VideoModelConfig(weights=str(path), alpha=0.5, input_size=96))


def test_imagenet_weights_unreachable_say_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))  # an empty cache: Keras must download
    config = VideoModelConfig(weights="imagenet", alpha=0.35, input_size=96)
    try:
        backbone = build_backbone(config)
    except VideoModelError as exc:
        text = str(exc)
        assert "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_96_no_top.h5" in text
        assert "--weights PATH" in text and "--weights none" in text
    else:  # a machine with internet: the real weights arrived
        assert any(tmp_path.rglob("*.h5")) and backbone.count_params() > 0


@pytest.mark.slow  # a whole video conversion (~45 s): CI's slow step runs it
def test_image_seq_pipeline_with_a_frozen_backbone(tmp_path):
    """Still images -> image-seq model whose backbone loads from a file and stays frozen -> one model per variant."""
    from edge_har.convert.train import TrainConfig
    from edge_har.convert.video_pipeline import VideoConvertOptions, run_convert_video
    from edge_har.convert.video_synthetic import write_synthetic_image_dataset
    from edge_har.core.bundle import Bundle
    from edge_har.core.frames import FrameSpec, preprocess_frame
    from edge_har.core.video_models import VideoModels
    from edge_har.device.video_runtime import VideoRuntime

    data = write_synthetic_image_dataset(tmp_path / "imgs", classes=("sweep", "bounce", "pulse"), images_per_class=24)
    base = VideoModelConfig(
        mode="image-seq",
        frames=1,
        backbone="plain",
        weights="none",
        input_size=32,
        conv_filters=(8, 16),
        feature_dim=8,
        lstm_units=(12,),
        dropout=0.0,
    )
    weights = tmp_path / "plain.h5"
    import tf_keras

    tf_keras.utils.set_random_seed(1)  # the frozen backbone's (random) weights: the same every run
    build_backbone(base).save_weights(str(weights))
    config = VideoModelConfig(**{**base.__dict__, "weights": str(weights)})
    assert config.freeze_backbone
    options = VideoConvertOptions(
        out=tmp_path / "bundle",
        data=data,
        model=config,
        variants=("float32",),
        default_variant="float32",
        train=TrainConfig(epochs=25, batch_size=8, patience=25, learning_rate=5e-3, verbose=0),
        calibration_size=10,
        progress=False,
        command="test",
    )
    out = run_convert_video(options)
    bundle = Bundle.load(out)
    assert bundle.kind == "video" and not bundle.verify()
    doc = bundle.data
    assert doc["video"]["mode"] == "image-seq" and doc["video"]["head_sequence_shape"] == [64, 16]
    assert doc["training"]["trained"].startswith("head only")
    assert doc["variants"]["float32"]["file"] == "model_float32.tflite"  # one model: nothing to stream
    assert doc["provenance"]["dataset"]["layout"] == "images"
    # A frozen random backbone still separates the colours; the score is recorded honestly either way.
    accuracy = doc["metrics"]["variants"]["float32"]["accuracy"]
    assert accuracy > 0.5, doc["metrics"]
    assert doc["metrics"]["float32_vs_keras_max_abs_diff"] < 1e-4, doc["metrics"]
    assert doc["variants"]["float32"]["metrics"]["accuracy"] == accuracy
    spec = FrameSpec.from_json(doc["preprocessing"])
    assert (spec.window, spec.height) == (1, 32)
    runtime = VideoRuntime(VideoModels.load(bundle))
    import cv2

    image = cv2.imread(str(next((data / "train").glob("*.png"))))
    prediction = runtime.push(image, 0.0)
    assert prediction is not None and set(prediction.probabilities) == {"bounce", "pulse", "sweep"}
    assert sum(prediction.probabilities.values()) == pytest.approx(1.0, abs=1e-4)
    assert preprocess_frame(image, spec).shape == (32, 32, 3)
