"""Which bundles a device runs: the ``trust:`` section of its config and the check that applies it.

A device lists the public keys it trusts (``edge-har keygen`` makes a pair; the ``.pub`` file goes on the
device). With keys listed, a signed bundle must verify with one of them; with ``require_signature``, an
unsigned bundle is refused too. The signature covers ``bundle.json``, which holds every file's sha256,
so the sha256 check before loading a model (``interpreter.verify_sha256``) must stay on.
See :mod:`edge_har.core.signing`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["TrustConfig", "trust_problems"]


class TrustConfig(BaseModel):
    """The keys whose signatures this device accepts, and whether it runs unsigned bundles."""

    model_config = ConfigDict(extra="forbid")

    keys: list[Path] = Field(
        default_factory=list,
        max_length=64,
        description=(
            "Public key files (PEM, NAME.pub from `edge-har keygen`) whose signatures this device trusts; relative "
            "to the config file's folder. A signed bundle must verify with one of them."
        ),
    )
    require_signature: bool = Field(
        False,
        description="Refuse a bundle without bundle.sig (with keys listed; off: an unsigned bundle runs with a warning).",
    )

    @model_validator(mode="after")
    def _keys_for_required(self) -> TrustConfig:
        if self.require_signature and not self.keys:
            raise ValueError("require_signature needs at least one key under trust.keys")
        return self

    def resolve_paths(self, base: Path) -> TrustConfig:
        from edge_har.device.sources.config_base import resolve_path

        return self.model_copy(update={"keys": [resolve_path(k, base) for k in self.keys]})


def trust_problems(
    trust: Optional[TrustConfig], bundle_dir: Path, verify_sha256: bool, where: Callable[[str], str]
) -> tuple[list[str], list[str]]:
    """(errors, warnings) of the trust settings for the bundle, each line naming the config key."""
    if trust is None or not trust.keys:
        return [], []
    errors: list[str] = []
    if not verify_sha256:
        errors.append(
            f"{where('interpreter.verify_sha256')}: must stay true with trust.keys: the signature covers the model "
            "files through the sha256 bundle.json records"
        )
    missing = [k for k in trust.keys if not k.is_file()]
    errors += [f"{where('trust.keys')}: {k} does not exist" for k in missing]
    if missing:
        return errors, []
    from edge_har.core.signing import check_signature

    failed, warned, _ = check_signature(bundle_dir, trust.keys, trust.require_signature)
    key = "trust.require_signature" if trust.require_signature else "trust.keys"
    return errors + [f"{where(key)}: {line}" for line in failed], [f"{where('trust')}: {w}" for w in warned]
