"""What ``edge-har record`` records: channels, rate, scaling and classes from the config, bundle and flags.

The bundle (read from ``bundle.json`` alone; no model is loaded) gives the channel names, the
rate, the raw-to-physical scaling and the classes, so a recording matches what the model was
trained on and ``convert --from-bundle`` reads it without a mapping. Before a bundle exists
(recording the first data set), ``--channels``/``--rate``/``--channel-names`` and ``--classes``
say it instead. The source's own settings win where it has them: its ``scale``/``offset`` and
its nominal rate.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from edge_har.core.errors import CommandError
from edge_har.device.recording.label_input import PayloadError, check_class_names

__all__ = ["RecordPlan", "expand", "plan_record"]

log = logging.getLogger(__name__)


@dataclass
class RecordPlan:
    """Everything the recorder needs besides the source object and the flags on its loop."""

    config: Any  # the DeviceConfig (typed Any: this module imports the config only when planning)
    config_path: Path
    device_id: str
    channels: list[str]
    rate_hz: float
    units: str
    scale: Optional[list[float]]
    offset: Optional[list[float]]
    classes: list[str]
    model_id: Optional[str]
    source_type: str
    frames: bool = False  # a camera: frames to Motion-JPEG parts instead of samples to CSV


def expand(values: Optional[Sequence[float]], n: int) -> Optional[list[float]]:
    """A one-value-for-all list as one value per channel (recording.json lists them per channel)."""
    if values is None:
        return None
    return [float(values[0])] * n if len(values) == 1 else [float(v) for v in values]


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _classes(bundle_labels: Optional[list[str]], flag: Optional[str], bundle_path: Path) -> list[str]:
    if flag is not None:
        text = flag.strip()
        if text.startswith("+"):
            names = list(bundle_labels or []) + _split(text[1:])
        else:
            names = _split(text)
    elif bundle_labels is not None:
        names = list(bundle_labels)
    else:
        raise CommandError(
            f"no classes to label with: the bundle {bundle_path} does not exist yet; give --classes a,b,c"
        )
    names = list(dict.fromkeys(names))
    try:
        return check_class_names(names, "--classes" if flag is not None else f"{bundle_path}: labels")
    except PayloadError as exc:
        raise CommandError(str(exc)) from None


def plan_record(
    config_path: Path,
    *,
    channels: Optional[int] = None,
    rate_hz: Optional[float] = None,
    channel_names: Optional[str] = None,
    classes: Optional[str] = None,
) -> RecordPlan:
    """Read the config (and the bundle, when it exists) and settle what to record; CommandError otherwise."""
    from edge_har.core.bundle import BUNDLE_FILE, Bundle
    from edge_har.device.config import load_config, source_channel_problems

    loaded = load_config(config_path)
    cfg = loaded.config
    bundle = Bundle.load(cfg.bundle) if (Path(cfg.bundle) / BUNDLE_FILE).is_file() else None
    if cfg.source.needs_video_bundle:
        return _plan_frames(cfg, Path(config_path), bundle, rate_hz, classes, loaded.where)
    if bundle is not None and bundle.kind != "sensor":
        raise CommandError(
            f"{loaded.where('bundle')}: {cfg.bundle} is a {bundle.kind} bundle; record needs a sensor one"
        )

    names = _split(channel_names) if channel_names else None
    if names is not None and channels is not None and len(names) != channels:
        raise CommandError(f"--channel-names lists {len(names)} channels but --channels is {channels}")
    if names is None and channels is not None:
        names = [f"ch{i + 1}" for i in range(channels)]
    pre = bundle.preprocessing if bundle is not None else None
    if names is None:
        if pre is None:
            raise CommandError(
                f"{loaded.where('bundle')}: {cfg.bundle} does not exist yet; say what the source sends with "
                "--channels N --rate HZ (and --channel-names a,b,c)"
            )
        names = list(pre.channels)
    elif pre is not None and names != list(pre.channels):
        log.warning("recording channels %s, not the bundle's %s (given on the command line)", names, list(pre.channels))
    if len(set(names)) != len(names) or any(n == "t" for n in names):
        raise CommandError(f"channel names {names} must be unique and not 't' (the time column)")
    rate = rate_hz if rate_hz is not None else (pre.sample_rate_hz if pre is not None else None)
    if rate is None:
        raise CommandError("--rate HZ is needed while the bundle does not exist (the source's nominal rate)")

    problems = source_channel_problems(cfg, len(names))
    if problems:
        raise CommandError("; ".join(f"{loaded.where(k)}: {m}" for k, m in problems))
    scale, offset = cfg.source.value_scaling()
    units = pre.units if pre is not None else ""
    if scale is None and offset is None and pre is not None:
        scale, offset = list(pre.scale), list(pre.offset)
    elif scale is not None or offset is not None:
        scale, offset = scale or [1.0], offset or [0.0]
    return RecordPlan(
        config=cfg,
        config_path=Path(config_path),
        device_id=cfg.effective_device_id(),
        channels=names,
        rate_hz=float(rate),
        units=units,
        scale=expand(scale, len(names)),
        offset=expand(offset, len(names)),
        classes=_classes(list(bundle.labels) if bundle is not None else None, classes, Path(cfg.bundle)),
        model_id=bundle.model_id if bundle is not None else None,
        source_type=str(cfg.source.type),
    )


def _plan_frames(
    cfg: Any,
    config_path: Path,
    bundle: Any,
    rate_hz: Optional[float],
    classes: Optional[str],
    where: Any,
) -> RecordPlan:
    """A camera source: frames, no channels; classes from a video bundle or ``--classes``."""
    if bundle is not None and bundle.kind == "sensor":
        raise CommandError(f"{where('bundle')}: {cfg.bundle} is a sensor bundle; a camera records for a video one")
    rate = rate_hz or getattr(cfg.source, "fps", None) or 30.0
    return RecordPlan(
        config=cfg,
        config_path=config_path,
        device_id=cfg.effective_device_id(),
        channels=[],
        rate_hz=float(rate),
        units="",
        scale=None,
        offset=None,
        classes=_classes(list(bundle.labels) if bundle is not None else None, classes, Path(cfg.bundle)),
        model_id=bundle.model_id if bundle is not None else None,
        source_type=str(cfg.source.type),
        frames=True,
    )
