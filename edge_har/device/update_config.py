"""The ``update:`` section of a device config: taking new bundles while the daemon runs.

With it, the daemon listens on ``<prefix>/<device_id>/update/set`` (and each group's
``<prefix>/group/<group>/update/set``) for a bundle to run, downloads it from ``server`` (serve's
bundle store), checks it (sha256, signature under ``trust:``, the bundle's files, its self-test, that
it fits the source) and swaps to it between two windows; each step is reported, retained, on
``<prefix>/<device_id>/update/state``. Bundles live in ``dir`` (two kept: the current and the one
before, for a rollback); a new bundle that fails to start ``max_failed_starts`` times in a row is left
for the one before. See :mod:`edge_har.device.updater`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["UpdateConfig", "default_update_dir"]

_GROUP = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def default_update_dir() -> Path:
    """``$STATE_DIRECTORY/bundles`` under systemd (the unit's writable state), else the user's data folder."""
    state = os.environ.get("STATE_DIRECTORY")
    if state:
        return Path(state.split(":")[0]) / "bundles"
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "edge-har" / "bundles"


class UpdateConfig(BaseModel):
    """Where updates come from, where they are kept, and how a failing one is given up."""

    model_config = ConfigDict(extra="forbid")

    server: str = Field(
        description=(
            "Base URL of the edge-har serve that holds the bundles (http://host:8321). An update names a "
            "bundle to download from here; a URL elsewhere is refused."
        ),
        min_length=1,
        max_length=512,
    )
    password_file: Optional[Path] = Field(
        None,
        description="File whose first line is serve's password (sent as HTTP basic auth); chmod 600.",
    )
    groups: list[str] = Field(
        default_factory=list,
        max_length=32,
        description="Groups this device takes updates for too (<prefix>/group/<group>/update/set), e.g. [ward-a].",
    )
    dir: Optional[Path] = Field(
        None,
        description=(
            "Folder of the downloaded bundles and the update state. Default: $STATE_DIRECTORY/bundles under "
            "systemd (/var/lib/edge-har/bundles with the shipped unit), else ~/.local/share/edge-har/bundles."
        ),
    )
    max_bundle_mb: float = Field(200.0, gt=0, le=4096, description="A bundle larger than this is not downloaded.")
    max_failed_starts: int = Field(
        3,
        ge=1,
        le=100,
        description="Starts in a row a new bundle may fail (crash or refused) before the device goes back to the one before.",
    )
    confirm_after_windows: int = Field(
        20,
        ge=1,
        le=1_000_000,
        description="Windows a new bundle must predict after a start before it counts as good (no more rollback).",
    )
    timeout_s: float = Field(30.0, gt=0, le=3600, description="HTTP connect and read timeout of the download.")

    @field_validator("server")
    @classmethod
    def _http(cls, value: str) -> str:
        if not re.match(r"^https?://[^\s/]+(/[^\s]*)?$", value):
            raise ValueError("must be an http:// or https:// URL, e.g. http://192.168.1.10:8321")
        return value.rstrip("/")

    @field_validator("groups")
    @classmethod
    def _groups(cls, value: list[str]) -> list[str]:
        for group in value:
            if not _GROUP.match(group):
                raise ValueError(f"{group!r}: a group is 1-64 letters, digits, '.', '_' or '-'")
        return value

    def directory(self) -> Path:
        return Path(self.dir) if self.dir is not None else default_update_dir()

    def resolve_paths(self, base: Path) -> UpdateConfig:
        from edge_har.device.sources.config_base import resolve_path

        return self.model_copy(
            update={"dir": resolve_path(self.dir, base), "password_file": resolve_path(self.password_file, base)}
        )
