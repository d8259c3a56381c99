"""Progress of reading a data set of many files: a bar on a terminal, a log line now and then otherwise.

Reading a few hundred megabytes of recordings takes tens of seconds in which a command says
nothing else. The readers report each file they read through :func:`file_read`; it does
nothing unless a :func:`reading` block is open, so the device's replay and library callers
print nothing and pay one context-variable lookup per file. The command lines open the
block around loading ``--data``. On a terminal (stderr) the block shows a tqdm bar of the
bytes read, cleared at the end; elsewhere (a log file, CI, systemd) it logs one INFO line at
most every :data:`LOG_EVERY_S` seconds, so a slow read is visible and a fast one is silent.
The bar appears at the first file read, so a reader with a bar of its own shows only that.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Iterator, Optional, TextIO

log = logging.getLogger(__name__)

MIN_FILES = 20  # fewer files are read in moments: no progress
LOG_EVERY_S = 10.0  # off a terminal: at most one progress line this often


class _Reading:
    """One open :func:`reading` block: what was read so far, shown as a bar or as log lines."""

    def __init__(self, name: str, files: int, total_bytes: int, stream: TextIO, log_every_s: float) -> None:
        self.name, self.files, self.total_bytes = name, files, total_bytes
        self.stream, self.log_every_s = stream, log_every_s
        self.terminal = _isatty(stream)
        self.read_files = 0
        self.read_bytes = 0
        self.started = self.last_log = time.monotonic()
        self.bar: Any = None

    def advance(self, nbytes: int) -> None:
        self.read_files += 1
        self.read_bytes += nbytes
        if self.terminal:
            if self.bar is None:
                from tqdm import tqdm

                self.bar = tqdm(
                    total=self.total_bytes or None,
                    desc=f"reading {self.name}",
                    unit="B",
                    unit_scale=True,
                    unit_divisor=1024,
                    leave=False,
                    file=self.stream,
                )
            self.bar.update(nbytes)
            return
        now = time.monotonic()
        if now - self.last_log >= self.log_every_s:
            self.last_log = now
            log.info("reading %s: %s", self.name, self._figures(now))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif not self.terminal and self.last_log > self.started:  # progress was logged: say it finished
            log.info("read %s: %s", self.name, self._figures(time.monotonic()))

    def _figures(self, now: float) -> str:
        share = (
            f" ({100 * self.read_bytes / self.total_bytes:.0f}% of {_mb(self.total_bytes)})" if self.total_bytes else ""
        )
        return f"{self.read_files} files, {_mb(self.read_bytes)}{share} in {now - self.started:.0f} s"


_CURRENT: ContextVar[Optional[_Reading]] = ContextVar("edge_har_reading", default=None)


def _isatty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or not a real stream
        return False


def _mb(nbytes: int) -> str:
    return f"{nbytes / 1e6:.1f} MB"


def _data_files(root: Path) -> list[Path]:
    """The regular files a reader of ``root`` may read: the file itself, or those under the folder (not hidden)."""
    if root.is_file():
        return [root]
    out: list[Path] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        out += [Path(folder) / f for f in files if not f.startswith(".")]
    return out


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


@contextlib.contextmanager
def reading(
    root: str | Path | None,
    *,
    min_files: int = MIN_FILES,
    log_every_s: Optional[float] = None,
    stream: Optional[TextIO] = None,
) -> Iterator[None]:
    """Show the progress of the files read from ``root`` within the block (see the module's docstring).

    Nothing is shown for fewer than ``min_files`` files under ``root``. ``stream`` is where a
    terminal's bar goes (default: stderr), ``log_every_s`` the least time between log lines
    (default: :data:`LOG_EVERY_S`).
    """
    path = Path(root) if root is not None else None
    files = _data_files(path) if path is not None and path.exists() else []
    if path is None or len(files) < min_files or _CURRENT.get() is not None:  # (an outer block shows this read)
        yield
        return
    every = LOG_EVERY_S if log_every_s is None else log_every_s
    tracker = _Reading(path.name or str(path), len(files), sum(map(_size, files)), stream or sys.stderr, every)
    token = _CURRENT.set(tracker)
    try:
        yield
    finally:
        _CURRENT.reset(token)
        tracker.close()


def file_read(path: Path) -> None:
    """Count one file a reader has read, when a :func:`reading` block is open (else nothing)."""
    tracker = _CURRENT.get()
    if tracker is not None:
        tracker.advance(_size(path))
