"""One base for every error edge-har shows a user, and the check for a missing install extra.

Every module's error class derives from :class:`EdgeHarError` (keeping its
older second base, ``ValueError`` or ``RuntimeError``, so existing ``except``
clauses still match). The command line catches the base once and prints the
message as one line with the error's exit status, so a new error class needs
no new ``except`` anywhere to reach the user cleanly.
"""

from __future__ import annotations

import importlib.util
from typing import Sequence


class EdgeHarError(Exception):
    """An error with a one-line message meant for the user, and the exit status it maps to."""

    exit_code: int = 1


class CommandError(EdgeHarError):
    """Bad arguments or a refused command: shown as one line, exit status ``code`` (2 by default)."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = code

    @property
    def code(self) -> int:
        return self.exit_code


class MissingExtraError(CommandError):
    """A part of edge-har runs, but a package of one of its install extras is not installed."""


def require_modules(modules: Sequence[str], extra: str, what: str, *, any_of: bool = False) -> None:
    """Raise :class:`MissingExtraError` naming the extra when ``modules`` are not importable.

    ``find_spec`` looks the modules up without importing them: checking for TensorFlow
    must not cost TensorFlow's 7 s import. With ``any_of`` one of them is enough (the
    interpreter backends).
    """
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if not missing or (any_of and len(missing) < len(modules)):
        return
    names = " or ".join(missing) if any_of else ", ".join(missing)
    raise MissingExtraError(
        f"{what} ({names} {'is' if len(missing) == 1 or any_of else 'are'} missing). "
        f"Install the extra: pip install 'edge-har[{extra}]'"
    )
