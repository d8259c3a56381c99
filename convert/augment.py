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

import functools
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
    return rotation_matrices(np.asarray(axis, np.float64)[None], np.array([angle]))[0]


def rotation_matrices(axes: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """(n, 3, 3) rotations by ``angles`` (n,) radians about ``axes`` (n, 3) (Rodrigues, all at once)."""
    a = np.asarray(axes, np.float64)
    norms = np.linalg.norm(a, axis=1, keepdims=True)
    a = a / np.where(norms == 0, 1.0, norms)
    zero = np.zeros(len(a))
    k = np.stack(
        [
            np.stack([zero, -a[:, 2], a[:, 1]], axis=1),
            np.stack([a[:, 2], zero, -a[:, 0]], axis=1),
            np.stack([-a[:, 1], a[:, 0], zero], axis=1),
        ],
        axis=1,
    )
    sin, cos = np.sin(angles)[:, None, None], np.cos(angles)[:, None, None]
    return np.eye(3)[None] + sin * k + (1 - cos) * (k @ k)


@functools.lru_cache(maxsize=16)
def _curve_matrix(length: int) -> np.ndarray:
    """(length, knots) linear map from knot values to the smooth curve through them.

    The curve is linear interpolation between the knots, then a moving average one segment wide
    (edges padded with their value); both steps are linear, so one matrix does them for a whole
    batch of curves at once.
    """
    n_knots = WARP_KNOTS + 2
    where = np.linspace(0, length - 1, n_knots)
    t = np.arange(length)
    interp = np.stack([np.interp(t, where, np.eye(n_knots)[j]) for j in range(n_knots)], axis=1)
    width = max(1, length // (WARP_KNOTS + 1))
    pad = np.pad(interp, ((width // 2, width - 1 - width // 2), (0, 0)), mode="edge")
    cumulative = np.vstack([np.zeros((1, n_knots)), np.cumsum(pad, axis=0)])
    return (cumulative[width:] - cumulative[:-width]) / width


def smooth_curves(rng: np.random.Generator, n: int, length: int, sigma: float, channels: int) -> np.ndarray:
    """(n, length, channels) smooth random curves around 1 through knots drawn N(1, sigma)."""
    knots = rng.normal(1.0, sigma, size=(n, WARP_KNOTS + 2, channels))
    return np.einsum("tk,nkc->ntc", _curve_matrix(length), knots)


def time_warps(windows: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    """Each (T, C) window resampled along its own smooth random speed curve, keeping its length and ends."""
    n, length = windows.shape[:2]
    speed = np.clip(smooth_curves(rng, n, length, sigma, 1)[:, :, 0], 0.1, None)
    position = np.cumsum(speed, axis=1)
    span = position[:, -1:] - position[:, :1]
    position = (position - position[:, :1]) / np.where(span == 0, 1.0, span) * (length - 1)
    left = np.clip(np.floor(position).astype(np.int64), 0, max(0, length - 2))
    right = np.minimum(left + 1, length - 1)
    frac = (position - left)[:, :, None]
    take = np.take_along_axis
    return take(windows, left[:, :, None], axis=1) * (1 - frac) + take(windows, right[:, :, None], axis=1) * frac


def time_warp(window: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    """The window resampled along a smooth random speed curve that keeps its length and both ends."""
    return time_warps(np.asarray(window)[None], rng, sigma)[0]


class Augmenter:
    """Applies an AugmentConfig to batches of normalised windows; ``mean``/``std`` (per channel) un-normalise.

    Each transform runs once per batch on the windows drawn for it (vectorised): a batch of 64
    HAPT windows (128 x 6) at the ``default`` strengths takes about 3 ms at once against 10 ms
    window by window (AMD EPYC family 26, one core, with a test run beside it).
    """

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
        return self.windows(np.asarray(w, np.float32)[None], rng)[0]

    def windows(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(n, T, C) windows, each enabled transform applied to each window with probability ``config.probability``."""
        c, p = self.config, self.config.probability
        out: np.ndarray = np.array(x, np.float32, copy=True)
        n, length = out.shape[:2]
        if c.rotate > 0 and self.triplets:
            pick = np.flatnonzero(rng.random(n) < p)
            if len(pick):
                angles = np.radians(rng.uniform(-c.rotate, c.rotate, size=len(pick)))
                r = rotation_matrices(rng.normal(size=(len(pick), 3)), angles).astype(np.float32)
                raw = out[pick] * self.std + self.mean
                for k in range(self.triplets):
                    raw[:, :, 3 * k : 3 * k + 3] = raw[:, :, 3 * k : 3 * k + 3] @ r.transpose(0, 2, 1)
                out[pick] = (raw - self.mean) / self.std
        if c.time_warp > 0:
            pick = np.flatnonzero(rng.random(n) < p)
            if len(pick):
                out[pick] = time_warps(out[pick], rng, c.time_warp)
        if c.magnitude_warp > 0:
            pick = np.flatnonzero(rng.random(n) < p)
            if len(pick):
                out[pick] *= smooth_curves(rng, len(pick), length, c.magnitude_warp, out.shape[2])
        if c.scale > 0:
            pick = np.flatnonzero(rng.random(n) < p)
            if len(pick):
                out[pick] *= rng.normal(1.0, c.scale, size=(len(pick), 1, out.shape[2]))
        if c.jitter > 0:
            pick = np.flatnonzero(rng.random(n) < p)
            if len(pick):
                out[pick] += rng.normal(0.0, c.jitter, size=(len(pick),) + out.shape[1:])
        return out.astype(np.float32, copy=False)

    def batch(
        self, x: np.ndarray, y: np.ndarray, n_classes: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """(augmented windows, labels): class indices, or mixed one-hot rows when mixup is on."""
        xb = self.windows(x, rng) if len(x) else np.asarray(x, np.float32)
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
