"""Video CNN-LSTMs, built as a per-frame **encoder** and a sequence **head**.

Two modes share one structure, ``head(encoder(frames))``:

* ``video``: the encoder is a CNN that turns one frame into a feature vector
  (global average pooling of its last feature map); the head is an LSTM over
  the last T frames' vectors. The device runs the encoder once per frame and
  keeps a ring buffer of T vectors, so a prediction every ``stride`` frames
  costs one encoder call, not T (``edge_har.device.video_runtime``).
* ``image-seq``: the still-image mode. The encoder is the same CNN without the
  pooling; its spatial feature map (7x7xC for 224 px MobileNetV2) is read as a
  sequence of 49 vectors by the head's LSTM. One image, one prediction.

The head is the sensor path's CNN-LSTM (``edge_har.convert.models.build_cnn_lstm``)
with no convolutions, or with one kernel-1 Conv1D as a per-step projection
(``feature_dim``): one LSTM builder for the whole project, and the same
reasons apply (tf_keras, a static batch of 1 for conversion, and the LSTM
written out step by step in the converted copy so that XNNPACK runs it in int8;
``lstm_export`` as in :class:`edge_har.convert.models.ModelConfig`).

CNN backbones:

* ``mobilenetv2``: ``keras.applications.MobileNetV2`` with ``alpha`` and the
  input size as options and ``--weights imagenet|none|PATH``. ImageNet weights
  are downloaded by Keras on first use (cached in ``~/.keras/models``); PATH is
  a local copy of the no-top weights file. Frames are scaled to [-1, 1].
* ``plain``: a small Conv2D stack (Conv2D-BN-ReLU-MaxPool per entry of
  ``conv_filters``), frames scaled to [0, 1]; fast to train from scratch.

Pretrained backbones are frozen by default (``train_backbone="auto"``): their
features are computed once per frame and only the head is trained, which is
what makes MobileNetV2 + LSTM trainable on a CPU. A backbone without weights is
trained end to end.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from edge_har.convert.models import LSTM_EXPORTS, ModelConfig, _fraction, _int_tuple, build_cnn_lstm, import_tf
from edge_har.core.errors import EdgeHarError

MODES = ("video", "image-seq")
BACKBONES = ("mobilenetv2", "plain")
IMAGENET_SIZES = (96, 128, 160, 192, 224)
IMAGENET_ALPHAS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)
DEFAULT_INPUT_SIZE = {"video": 128, "image-seq": 224}


class VideoModelError(EdgeHarError, ValueError):
    """An impossible model configuration, or backbone weights that cannot be loaded."""


def _weights(text: str) -> str:
    value = text.strip()
    if value.lower() in ("imagenet", "none"):
        return value.lower()
    if not Path(value).is_file():
        raise argparse.ArgumentTypeError(f"--weights {value!r}: expected imagenet, none, or the path of a weights file")
    return value


@dataclass(frozen=True)
class VideoModelConfig:
    """Architecture of the video CNN-LSTM; every field is a ``--flag`` of ``edge-har convert-video``.

    ``frames`` is T, the frames one prediction looks at (1 in image-seq mode).
    ``feature_dim`` adds a kernel-1 Conv1D (a per-step dense projection, ReLU)
    in front of the LSTM; it shrinks MobileNetV2's 1280 channels before the
    LSTM, whose cost grows with its input width. ``lstm_export`` is the sensor
    model's option (:class:`edge_har.convert.models.ModelConfig`): how the head's LSTM
    is written in the ``.tflite`` files, same weights either way.
    """

    mode: str = "video"
    backbone: str = "mobilenetv2"
    input_size: int | None = None  # square frames; None: 128 (video) or 224 (image-seq, for a 7x7 map)
    alpha: float = 0.35
    weights: str = "imagenet"
    conv_filters: tuple[int, ...] = (16, 32, 64)
    frames: int = 8
    feature_dim: int | None = None
    lstm_units: tuple[int, ...] = (64,)
    bidirectional: bool = False
    dropout: float = 0.3
    train_backbone: str = "auto"  # auto | yes | no
    lstm_export: str = "unrolled"  # unrolled | fused

    def __post_init__(self) -> None:
        if self.lstm_export not in LSTM_EXPORTS:
            raise VideoModelError(f"lstm_export {self.lstm_export!r} must be one of {', '.join(LSTM_EXPORTS)}")
        if self.mode not in MODES:
            raise VideoModelError(f"mode {self.mode!r} must be one of {', '.join(MODES)}")
        if self.backbone not in BACKBONES:
            raise VideoModelError(f"backbone {self.backbone!r} must be one of {', '.join(BACKBONES)}")
        if self.train_backbone not in ("auto", "yes", "no"):
            raise VideoModelError(f"train_backbone {self.train_backbone!r} must be auto, yes or no")
        if self.size < 32:
            raise VideoModelError(f"input size must be >= 32 pixels, got {self.size}")
        if self.mode == "image-seq" and self.frames != 1:
            raise VideoModelError("image-seq mode classifies one image: frames must be 1")
        if self.mode == "video" and self.frames < 2:
            raise VideoModelError(f"video mode needs at least 2 frames per window, got {self.frames}")
        if not self.lstm_units:
            raise VideoModelError("lstm_units must name at least one LSTM layer")
        if self.backbone == "plain" and not self.conv_filters:
            raise VideoModelError("the plain backbone needs at least one Conv2D block (conv_filters)")
        if self.backbone == "mobilenetv2" and self.alpha <= 0:
            raise VideoModelError(f"alpha must be > 0, got {self.alpha}")
        if self.backbone == "mobilenetv2" and self.weights == "imagenet":
            if self.alpha not in IMAGENET_ALPHAS:
                raise VideoModelError(
                    f"ImageNet weights exist for alpha {', '.join(map(str, IMAGENET_ALPHAS))}; got {self.alpha} "
                    "(use --weights none to train from scratch)"
                )
            if self.size not in IMAGENET_SIZES:
                raise VideoModelError(
                    f"ImageNet weights exist for input sizes {', '.join(map(str, IMAGENET_SIZES))}; got {self.size}"
                )
        if self.backbone == "plain" and self.weights == "imagenet":
            raise VideoModelError(
                "ImageNet weights exist for the mobilenetv2 backbone only; use --weights none or PATH"
            )
        if self.feature_dim is not None and self.feature_dim < 1:
            raise VideoModelError(f"feature_dim must be >= 1, got {self.feature_dim}")
        if not 0.0 <= self.dropout < 1.0:
            raise VideoModelError(f"dropout must be in [0, 1), got {self.dropout}")

    @property
    def size(self) -> int:
        return int(self.input_size or DEFAULT_INPUT_SIZE[self.mode])

    @property
    def pretrained(self) -> bool:
        """Whether the backbone starts from stored weights (ImageNet, or a file)."""
        return self.weights != "none"

    @property
    def freeze_backbone(self) -> bool:
        if self.train_backbone == "auto":
            return self.pretrained
        return self.train_backbone == "no"

    def frame_scaling(self) -> tuple[float, float]:
        """(scale, offset) from uint8 pixels: MobileNetV2 wants [-1, 1], the plain stack [0, 1]."""
        if self.backbone == "mobilenetv2":
            return 1.0 / 127.5, -1.0
        return 1.0 / 255.0, 0.0

    def head_config(self) -> ModelConfig:
        """The head as the sensor CNN-LSTM: no convolution, or one kernel-1 projection."""
        return ModelConfig(
            conv_filters=(self.feature_dim,) if self.feature_dim else (),
            kernel_size=1,
            pool_size=1,
            conv_dropout=0.0,
            lstm_units=self.lstm_units,
            bidirectional=self.bidirectional,
            dropout=self.dropout,
            batch_norm=False,
            lstm_export=self.lstm_export,
        )

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["conv_filters"] = list(self.conv_filters)
        data["lstm_units"] = list(self.lstm_units)
        data["input_size"] = self.size
        data["frozen_backbone"] = self.freeze_backbone
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> VideoModelConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        for key in ("conv_filters", "lstm_units"):
            if key in kwargs:
                kwargs[key] = tuple(int(v) for v in kwargs[key])
        return cls(**kwargs)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> VideoModelConfig:
        mode = args.mode
        weights = args.weights or ("imagenet" if args.backbone == "mobilenetv2" else "none")
        return cls(
            mode=mode,
            backbone=args.backbone,
            input_size=args.input_size,
            alpha=args.alpha,
            weights=weights,
            conv_filters=tuple(args.conv_filters),
            frames=1 if mode == "image-seq" else args.frames,
            feature_dim=args.feature_dim or None,
            lstm_units=tuple(args.lstm_units),
            bidirectional=args.bidirectional,
            dropout=args.dropout,
            train_backbone=args.train_backbone,
            lstm_export=args.lstm_export,
        )


def add_video_model_arguments(parser: argparse.ArgumentParser) -> None:
    d = VideoModelConfig()
    group = parser.add_argument_group("model (per-frame CNN, then LSTM)")
    group.add_argument(
        "--mode",
        choices=MODES,
        default=d.mode,
        help="video: CNN per frame, LSTM over the last --frames frames' features; image-seq: one image, the "
        "CNN's spatial feature map read as a sequence (e.g. 7x7 = 49 steps) by the LSTM (default: %(default)s)",
    )
    group.add_argument(
        "--backbone",
        choices=(*BACKBONES, "pose"),  # pose: not a Keras CNN; edge_har.convert.pose_pipeline builds it
        default=d.backbone,
        help="per-frame encoder: MobileNetV2, a small plain Conv2D stack, or pose: MediaPipe BlazePose "
        "keypoints (needs --pose-models) (default: %(default)s)",
    )
    group.add_argument(
        "--input-size",
        type=int,
        default=None,
        metavar="PX",
        help="square frame size fed to the CNN (default: 128 for video, 224 for image-seq)",
    )
    group.add_argument(
        "--alpha",
        type=float,
        default=d.alpha,
        help="MobileNetV2 width multiplier; ImageNet weights exist for 0.35, 0.5, 0.75, 1.0, 1.3, 1.4 (default: %(default)s)",
    )
    group.add_argument(
        "--weights",
        type=_weights,
        default=None,
        metavar="imagenet|none|PATH",
        help="backbone weights: ImageNet (MobileNetV2 only; downloaded by Keras on first use, then cached), none "
        "(train from scratch), or the path of a local weights file (default: imagenet for mobilenetv2, none for plain)",
    )
    group.add_argument(
        "--conv-filters",
        type=_int_tuple,
        default=d.conv_filters,
        metavar="N,N,...",
        help="filters of each Conv2D block of the plain backbone (default: 16,32,64)",
    )
    group.add_argument(
        "--frames",
        type=int,
        default=d.frames,
        metavar="T",
        help="frames per prediction window, sampled at --fps (video mode; default: %(default)s)",
    )
    group.add_argument(
        "--feature-dim",
        type=int,
        default=0,
        metavar="N",
        help="project each frame's (or map position's) features to N values before the LSTM; 0: no projection",
    )
    group.add_argument(
        "--lstm-units",
        type=_int_tuple,
        default=d.lstm_units,
        metavar="N,N,...",
        help="units of each stacked LSTM layer (default: 64)",
    )
    group.add_argument("--bidirectional", action="store_true", help="wrap every LSTM in Bidirectional")
    group.add_argument(
        "--dropout", type=_fraction, default=d.dropout, help="dropout before the softmax (default: %(default)s)"
    )
    group.add_argument(
        "--train-backbone",
        choices=("auto", "yes", "no"),
        default=d.train_backbone,
        help="auto: freeze a pretrained backbone (features computed once, only the head trains) and train a "
        "backbone without weights end to end (default: %(default)s)",
    )
    group.add_argument(
        "--lstm-export",
        choices=LSTM_EXPORTS,
        default=d.lstm_export,
        help="how the head's LSTM is written in the .tflite files (same weights): 'unrolled' as per-step ops that "
        "XNNPACK runs in int8, 'fused' as one UNIDIRECTIONAL_SEQUENCE_LSTM op, whose int8 kernel is TFLite's slow "
        "reference code (default: %(default)s)",
    )


# ---------------------------------------------------------------- building


def _mobilenetv2(config: VideoModelConfig, batch_size: int | None, weights: str | None) -> Any:
    _, keras = import_tf()
    inputs = keras.Input(shape=(config.size, config.size, 3), batch_size=batch_size, name="frame")
    try:
        return keras.applications.MobileNetV2(
            input_shape=(config.size, config.size, 3),
            input_tensor=inputs,
            alpha=config.alpha,
            include_top=False,
            weights=weights,
            pooling=None,
        )
    except Exception as exc:
        if weights == "imagenet":
            file = f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{config.alpha}_{config.size}_no_top.h5"
            raise VideoModelError(
                f"the ImageNet weights of MobileNetV2 could not be loaded ({type(exc).__name__}: {exc}). Keras "
                f"downloads them on first use; without internet, copy {file} to ~/.keras/models/ or pass "
                "--weights PATH to a local copy, or --weights none to train from scratch"
            ) from exc
        if weights:
            raise VideoModelError(
                f"--weights {weights}: cannot load it into MobileNetV2 alpha {config.alpha} at {config.size} px: {exc}"
            ) from exc
        raise


def _plain_backbone(config: VideoModelConfig, batch_size: int | None) -> Any:
    _, keras = import_tf()
    layers = keras.layers
    inputs = keras.Input(shape=(config.size, config.size, 3), batch_size=batch_size, name="frame")
    x = inputs
    for i, filters in enumerate(config.conv_filters):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv2d{i + 1}")(x)
        # momentum 0.9, not Keras's 0.99: the moving statistics must settle within the few hundred
        # steps a small clip data set trains for, or inference-mode BN sees other statistics than training did.
        x = layers.BatchNormalization(momentum=0.9, name=f"bn2d{i + 1}")(x)
        x = layers.ReLU(name=f"relu2d{i + 1}")(x)
        if x.shape[1] >= 2 and x.shape[2] >= 2:
            x = layers.MaxPooling2D(2, name=f"pool2d{i + 1}")(x)
    return keras.Model(inputs, x, name="plain_cnn")


def build_backbone(config: VideoModelConfig, batch_size: int | None = None, load_weights: bool = True) -> Any:
    """frame (H, W, 3) -> spatial feature map (h, w, C). ``load_weights=False`` for copies that get set_weights."""
    if config.backbone == "mobilenetv2":
        weights = config.weights if load_weights and config.weights != "none" else None
        return _mobilenetv2(config, batch_size, weights)
    backbone = _plain_backbone(config, batch_size)
    if load_weights and config.pretrained:
        try:
            backbone.load_weights(config.weights)
        except Exception as exc:
            raise VideoModelError(f"--weights {config.weights}: cannot load it into the plain backbone: {exc}") from exc
    return backbone


def build_encoder(config: VideoModelConfig, batch_size: int | None = None, load_weights: bool = True) -> Any:
    """The per-frame part: frame -> (D,) features (video) or (h*w, C) map positions (image-seq)."""
    _, keras = import_tf()
    layers = keras.layers
    backbone = build_backbone(config, batch_size, load_weights)
    if config.freeze_backbone:
        backbone.trainable = False  # also keeps its BatchNorm layers in inference mode
    inputs = keras.Input(shape=(config.size, config.size, 3), batch_size=batch_size, name="frame")
    fmap = backbone(inputs, training=False) if config.freeze_backbone else backbone(inputs)
    if config.mode == "video":
        out = layers.GlobalAveragePooling2D(name="features")(fmap)
    else:
        h, w, c = (int(d) for d in fmap.shape[1:])
        out = layers.Reshape((h * w, c), name="positions")(fmap)
    return keras.Model(inputs, out, name="encoder")


def encoder_output_shape(encoder: Any) -> tuple[int, ...]:
    return tuple(int(d) for d in encoder.output_shape[1:])


def head_sequence_shape(config: VideoModelConfig, encoder: Any) -> tuple[int, int]:
    """(steps, width) the head's LSTM reads: (T, D) for video, (h*w, C) for image-seq."""
    shape = encoder_output_shape(encoder)
    if config.mode == "video":
        return (config.frames, shape[0])
    return (shape[0], shape[1])


def build_head(
    config: VideoModelConfig,
    sequence_shape: Sequence[int],
    n_classes: int,
    batch_size: int | None = None,
    unrolled_lstm: bool = False,
) -> Any:
    """(steps, width) -> class probabilities, via the sensor CNN-LSTM builder (``unrolled_lstm``: for conversion)."""
    hc = config.head_config()
    return build_cnn_lstm(
        tuple(sequence_shape),
        n_classes,
        conv_filters=hc.conv_filters,
        kernel_size=hc.kernel_size,
        pool_size=hc.pool_size,
        conv_dropout=hc.conv_dropout,
        lstm_units=hc.lstm_units,
        bidirectional=hc.bidirectional,
        dropout=hc.dropout,
        batch_norm=hc.batch_norm,
        batch_size=batch_size,
        unrolled_lstm=unrolled_lstm,
        name="head",
    )


def build_whole(config: VideoModelConfig, encoder: Any, head: Any, batch_size: int | None = None) -> Any:
    """The clip model: (T, H, W, 3) -> probabilities (video) or (H, W, 3) -> probabilities (image-seq)."""
    _, keras = import_tf()
    if config.mode == "video":
        inputs = keras.Input(shape=(config.frames, config.size, config.size, 3), batch_size=batch_size, name="clip")
        features = keras.layers.TimeDistributed(encoder, name="frames")(inputs)
    else:
        inputs = keras.Input(shape=(config.size, config.size, 3), batch_size=batch_size, name="image")
        features = encoder(inputs)
    return keras.Model(
        inputs, head(features), name="video_cnn_lstm" if config.mode == "video" else "image_seq_cnn_lstm"
    )


@dataclass
class VideoModel:
    """The three views of one set of weights: encoder, head and the whole clip model."""

    config: VideoModelConfig
    encoder: Any
    head: Any
    whole: Any
    n_classes: int

    @property
    def sequence_shape(self) -> tuple[int, int]:
        return head_sequence_shape(self.config, self.encoder)

    @property
    def feature_shape(self) -> tuple[int, ...]:
        return encoder_output_shape(self.encoder)


def build_video_model(
    config: VideoModelConfig,
    n_classes: int,
    batch_size: int | None = None,
    load_weights: bool = True,
    unrolled_lstm: bool = False,
) -> VideoModel:
    if n_classes < 2:
        raise VideoModelError(f"need at least 2 classes, got {n_classes}")
    encoder = build_encoder(config, batch_size, load_weights)
    head = build_head(config, head_sequence_shape(config, encoder), n_classes, batch_size, unrolled_lstm)
    return VideoModel(config, encoder, head, build_whole(config, encoder, head, batch_size), n_classes)


def split_trained(whole: Any, config: VideoModelConfig) -> tuple[Any, Any]:
    """The encoder and head layers inside a whole model built by :func:`build_whole`."""
    if config.mode == "video":
        encoder = whole.get_layer("frames").layer
    else:
        encoder = whole.get_layer("encoder")
    return encoder, whole.get_layer("head")


def float32_copy(model: VideoModel, batch_size: int | None = 1, unrolled_lstm: bool = False) -> VideoModel:
    """The model rebuilt in float32 with a fixed batch (1 for the converter), weights copied.

    The copy never downloads weights again: the trained ones are copied over.
    ``unrolled_lstm`` writes the head's LSTM out step by step (the converter's
    copy when ``lstm_export`` is ``unrolled``).
    """
    _, keras = import_tf()
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        copy = build_video_model(
            model.config, model.n_classes, batch_size=batch_size, load_weights=False, unrolled_lstm=unrolled_lstm
        )
    finally:
        keras.mixed_precision.set_global_policy(previous)
    copy.encoder.set_weights(model.encoder.get_weights())
    copy.head.set_weights(model.head.get_weights())
    return copy
