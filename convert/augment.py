"""Augmentation of sensor windows during training: new variants of each window every epoch.

A few thousand windows of a few subjects are what HAR data sets hold; a model that sees
each window once per epoch, unchanged, learns the subjects' quirks (how the phone sat
in the pocket, how hard they walked). Each transform changes what a new subject or a
new placement changes, and nothing of what the activity is:

* ``jitter``: Gaussian noise, sigma in normalised units (sensor noise);
* ``scale``: a gain per channel, N(1, sigma) (sensor gain, body size, vigour);
* ``rotate``: one random rotation of up to this many degrees about a random axis,
  applied to every x, y, z triplet of channels alike (the device sitting turned on
  the body), done on the un-normalised signal so the axes really rotate;
* ``time_warp``: a smooth random change of speed, knots N(1, sigma) (a faster or
  slower walk);
* ``magnitude_warp``: a smooth random gain over time, knots N(1, sigma);
* ``mixup``: pairs of windows mixed with weight ~ Beta(alpha, alpha), labels mixed alike
  (Zhang et al. 2018); a batch-level transform, so it changes the loss to categorical.

Windows are (n, T, C) float32, normalised per channel (``mean``/``std`` un-normalise for
the rotation). Each transform is applied to a window with probability ``probability``,
from a generator seeded per epoch, so a training run repeats. Everything here is numpy;
:func:`batches` wraps it in a Keras ``Sequence`` for ``model.fit``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Mapping

import numpy as np

from edge_har.core.errors import EdgeHarError

WARP_KNOTS = 4  # interior knots of the smooth warp curves (time and magnitude)


class AugmentError(EdgeHarError, ValueError):
    """An ``--augment`` specification that cannot be used; the message names the key."""


@dataclass(frozen=True)
class AugmentConfig:
    """Strengths of each transform (0 = off); ``to_json`` is recorded in the bundle's training section."""

    jitter: float = 0.0
    scale: float = 0.0
    rotate: float = 0.0  # degrees
    time_warp: float = 0.0
    magnitude_warp: float = 0.0
    mixup: float = 0.0  # Beta(alpha, alpha)'s alpha
    probability: float = 0.5  # chance each window gets each (enabled) per-window transform

    @property
    def enabled(self) -> bool:
        return any(getattr(self, f.name) > 0 for f in fields(self) if f.name != "probability")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# ``--augment default``: strengths from the HAR augmentation literature (Um et al. 2017; Iwana &
# Uchida 2021) for normalised accelerometer windows; mixup stays off unless asked for.
DEFAULT = AugmentConfig(jitter=0.05, scale=0.1, rotate=15.0, time_warp=0.2, magnitude_warp=0.2)
LIMITS = {
    "jitter": (0.0, 1.0),
    "scale": (0.0, 1.0),
    "rotate": (0.0, 180.0),
    "time_warp": (0.0, 0.9),
    "magnitude_warp": (0.0, 1.0),
    "mixup": (0.0, 10.0),
    "probability": (0.0, 1.0),
}
HELP = (
    "augment training windows on the fly: 'none' (default), 'default' ("
    + ", ".join(f"{k}={v:g}" for k, v in DEFAULT.to_json().items() if v)
    + "), or KEY=VALUE,... over 'default' or none, e.g. 'default,mixup=0.2' or 'jitter=0.03,rotate=30'. Keys: "
    "jitter (noise sigma), scale (gain sigma), rotate (max degrees, x/y/z triplets), time_warp and "
    "magnitude_warp (knot sigma), mixup (Beta alpha), probability (per transform and window, default 0.5)"
)


def parse_augment(text: str | None) -> AugmentConfig:
    """``none`` | ``default`` | ``[default,]key=value,...`` -> AugmentConfig; AugmentError naming the bad key."""
    spec = (text or "none").strip()
    if spec in ("", "none", "off"):
        return AugmentConfig()
    config = AugmentConfig()
    names = {f.name for f in fields(AugmentConfig)}
    for item in (p.strip() for p in spec.split(",")):
        if not item:
            continue
        if item == "default":
            config = replace(DEFAULT, probability=config.probability)
            continue
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in names:
            raise AugmentError(
                f"--augment {spec!r}: {item!r} is not KEY=VALUE with KEY one of {', '.join(sorted(names))}"
            )
        try:
            number = float(value)
        except ValueError:
            raise AugmentError(f"--augment {spec!r}: {key}={value!r} is not a number") from None
        low, high = LIMITS[key]
        if not (math.isfinite(number) and low <= number <= high):
            raise AugmentError(f"--augment {spec!r}: {key} must be in [{low:g}, {high:g}], got {value}")
        config = replace(config, **{key: number})
    return config


def from_json(data: Mapping[str, Any] | None) -> AugmentConfig:
    """The recorded config back (a bundle's ``training.config.augment``); unknown keys are ignored."""
    names = {f.name for f in fields(AugmentConfig)}
    return AugmentConfig(**{k: float(v) for k, v in (data or {}).items() if k in names})


# ---------------------------------------------------------------- the transforms


def rotation_matrix(axis: np.ndarray, angle: float) -> np.ndarray:
    """3 x 3 rotation by ``angle`` radians about ``axis`` (Rodrigues)."""
    a = np.asarray(axis, np.float64)
    a = a / (np.linalg.norm(a) or 1.0)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * (k @ k)


def _smooth_curve(rng: np.random.Generator, length: int, sigma: float, channels: int) -> np.ndarray:
    """(length, channels) smooth random curves around 1: knots N(1, sigma) joined by cubic-free linear easing."""
    knots = rng.normal(1.0, sigma, size=(WARP_KNOTS + 2, channels))
    where = np.linspace(0, length - 1, WARP_KNOTS + 2)
    t = np.arange(length)
    # a smooth curve through the knots: linear interpolation, then a moving average one segment wide
    curve = np.stack([np.interp(t, where, knots[:, c]) for c in range(channels)], axis=1)
    width = max(1, length // (WARP_KNOTS + 1))
    kernel = np.ones(width) / width
    pad = np.pad(curve, ((width // 2, width - 1 - width // 2), (0, 0)), mode="edge")
    return np.stack([np.convolve(pad[:, c], kernel, mode="valid") for c in range(channels)], axis=1)


def time_warp(window: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    """The window resampled along a smooth random speed curve that keeps its length and both ends."""
    length = window.shape[0]
    speed = np.clip(_smooth_curve(rng, length, sigma, 1)[:, 0], 0.1, None)
    position = np.cumsum(speed)
    position = (position - position[0]) / (position[-1] - position[0] or 1.0) * (length - 1)
    t = np.arange(length)
    return np.stack([np.interp(position, t, window[:, c]) for c in range(window.shape[1])], axis=1)


class Augmenter:
    """Applies an AugmentConfig to batches of normalised windows; ``mean``/``std`` (per channel) un-normalise."""

    def __init__(
        self, config: AugmentConfig, channels: int, mean: np.ndarray | None = None, std: np.ndarray | None = None
    ) -> None:
        self.config = config
        self.channels = int(channels)
        self.mean = np.zeros(channels, np.float32) if mean is None else np.asarray(mean, np.float32).reshape(-1)
        self.std = np.ones(channels, np.float32) if std is None else np.asarray(std, np.float32).reshape(-1)
        self.triplets = self.channels // 3  # channels 0-2, 3-5, ... are x, y, z of one sensor

    def window(self, w: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One (T, C) window, each enabled transform applied with probability ``config.probability``."""
        c, p = self.config, self.config.probability
        out: np.ndarray = np.array(w, np.float32, copy=True)
        if c.rotate > 0 and self.triplets and rng.random() < p:
            raw = out * self.std + self.mean
            r = rotation_matrix(rng.normal(size=3), math.radians(rng.uniform(-c.rotate, c.rotate)))
            for k in range(self.triplets):
                raw[:, 3 * k : 3 * k + 3] = raw[:, 3 * k : 3 * k + 3] @ r.T.astype(np.float32)
            out = (raw - self.mean) / self.std
        if c.time_warp > 0 and rng.random() < p:
            out = time_warp(out, rng, c.time_warp)
        if c.magnitude_warp > 0 and rng.random() < p:
            out = out * _smooth_curve(rng, len(out), c.magnitude_warp, out.shape[1])
        if c.scale > 0 and rng.random() < p:
            out = out * rng.normal(1.0, c.scale, size=(1, out.shape[1]))
        if c.jitter > 0 and rng.random() < p:
            out = out + rng.normal(0.0, c.jitter, size=out.shape)
        return out.astype(np.float32)

    def batch(
        self, x: np.ndarray, y: np.ndarray, n_classes: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """(augmented windows, labels): class indices, or mixed one-hot rows when mixup is on."""
        xb = np.stack([self.window(w, rng) for w in x]) if len(x) else np.asarray(x, np.float32)
        if self.config.mixup <= 0:
            return xb, np.asarray(y)
        onehot = np.eye(n_classes, dtype=np.float32)[np.asarray(y, np.int64)]
        lam = rng.beta(self.config.mixup, self.config.mixup, size=len(xb)).astype(np.float32)
        lam = np.maximum(lam, 1 - lam)  # the window keeps most of itself (and its label's majority)
        partner = rng.permutation(len(xb))
        mixed_x = lam[:, None, None] * xb + (1 - lam[:, None, None]) * xb[partner]
        mixed_y = lam[:, None] * onehot + (1 - lam[:, None]) * onehot[partner]
        return mixed_x.astype(np.float32), mixed_y.astype(np.float32)


def batches(
    keras: Any,
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    augmenter: Augmenter,
    n_classes: int,
    seed: int,
) -> Any:
    """A Keras ``Sequence`` of shuffled, freshly augmented batches (new draws every epoch, repeatable by seed)."""

    class AugmentedBatches(keras.utils.Sequence):
        def __init__(self) -> None:
            super().__init__()
            self.epoch = 0
            self.order = np.random.default_rng(seed).permutation(len(x))

        def __len__(self) -> int:
            return max(1, -(-len(x) // batch_size))

        def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
            picks = self.order[index * batch_size : (index + 1) * batch_size]
            rng = np.random.default_rng([seed, self.epoch, index])
            return augmenter.batch(x[picks], y[picks], n_classes, rng)

        def on_epoch_end(self) -> None:
            self.epoch += 1
            self.order = np.random.default_rng([seed, self.epoch]).permutation(len(x))

    return AugmentedBatches()
