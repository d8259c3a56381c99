"""The daemon's start-up checks, in one function that ``edge-har run`` and ``validate-config`` share.

Both call :func:`run_startup_checks`, so ``validate-config`` cannot say OK for what the
daemon's start refuses (a ``.tflite`` whose sha256 does not match, a model whose outputs do not
match the labels, a source whose channel count does not fit the model), which checking that the
files exist and bundle.json parses would miss. It does everything the daemon does before it
connects to MQTT or opens the source:

1. :func:`~edge_har.device.config.check_files` (bundle.json validated whole, the variant's files,
   source channels and ``unknown_label`` against the bundle, recordings, TLS and password files);
2. :func:`~edge_har.device.runtime_api.load_runtime`: every model of the variant loaded with
   the config's interpreter options (sha256 checked unless ``verify_sha256: false``; a corrupt,
   truncated or foreign file refused by the interpreter), each model's tensors checked against
   bundle.json, the preprocessing and the labels (``Bundle.model_problems``);
3. the source's channel settings against the loaded runtime's channels.

Each problem is one line naming the config file and key, then the bundle file and its key, so
the daemon's journal and ``validate-config`` print the same words. The daemon exits 78
(EX_CONFIG) on any of them, which the systemd unit does not restart.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Optional

from edge_har.core.errors import EdgeHarError
from edge_har.device.config import LoadedConfig, check_files, source_channel_problems
from edge_har.device.runtime_api import StreamRuntime, load_runtime
from edge_har.device.sources.replay import ReplaySourceConfig, check_replay

log = logging.getLogger(__name__)


@dataclass
class StartupResult:
    """What the checks found; ``runtime`` is the loaded model when there were no errors."""

    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    runtime: Optional[StreamRuntime] = None
    source_data: Any = None  # what the checks read for the source (a replay's set), for make_source

    @property
    def ok(self) -> bool:
        return not self.errors


def run_startup_checks(loaded: LoadedConfig) -> StartupResult:
    """Every check the daemon runs before it starts MQTT and the source (see the module doc).

    Stops at the first stage with errors: a bundle that does not validate is not loaded.
    Only an error meant for the user (an :class:`EdgeHarError`, a ``ValueError`` from a
    runtime's own checks, an ``OSError`` reading a model) becomes a problem line; anything
    else is a bug and propagates.
    """
    errors, warnings = check_files(loaded)
    result = StartupResult(errors, warnings)
    if errors:
        return result
    cfg = loaded.config
    try:
        runtime = load_runtime(cfg)
    except (EdgeHarError, ValueError, OSError) as exc:
        result.errors.append(f"{loaded.where('variant' if cfg.variant else 'bundle')}: cannot load the model: {exc}")
        return result
    result.errors += [f"{loaded.where(k)}: {m}" for k, m in source_channel_problems(cfg, runtime.pre.n_channels)]
    if isinstance(cfg.source, ReplaySourceConfig) and not result.errors:  # read with run's own reader
        problems, result.source_data = check_replay(
            cfg.source, runtime.pre.n_channels, cfg.bundle, runtime.pre.sample_rate_hz
        )
        result.errors += [f"{loaded.where('source.path')}: {m}" for m in problems]
    if not result.errors:
        result.runtime = runtime
    return result
