"""Keep the workstation commands' output to what the user needs: TensorFlow quiet, repeats logged once.

Three kinds of noise bury the useful lines of a real conversion:

* TensorFlow's C++ logging: oneDNN and CUDA notices at import, a ``cuInit`` error on a
  machine without a GPU, one ``node_def_util`` error line per epoch. Most is governed by
  ``TF_CPP_MIN_LOG_LEVEL``, which must be set *before* TensorFlow is imported; the lines
  written before absl's logging is initialised ignore it, so the import itself runs with
  the process's stderr (file descriptor 2) sent to a buffer, replayed at DEBUG.
* Keras's own lines, one per epoch: ``edge_har.convert.train`` prints them only when
  :func:`debug_logging` is true and shows its own progress otherwise.
* The same Python log line again and again (TensorFlow's "compiled metrics have yet to be
  built" per model load, a warning per recording): :class:`RepeatFilter` lets the first
  through and counts the rest, and :func:`collapse_repeats` reports the counts once at the end.

``--log-level DEBUG`` leaves all of it on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from typing import Iterator

log = logging.getLogger(__name__)

#: Python loggers TensorFlow writes its own warnings through.
TF_LOGGERS = ("tensorflow", "absl", "h5py")


def debug_logging(level: str | int | None = None) -> bool:
    """Whether ``level`` (default: the root logger's) is DEBUG, where everything is shown."""
    if level is None:
        return logging.getLogger().getEffectiveLevel() <= logging.DEBUG
    if isinstance(level, str):
        return level.upper() == "DEBUG"
    return level <= logging.DEBUG


@contextlib.contextmanager
def stderr_to_log(what: str) -> Iterator[None]:
    """Send file descriptor 2 (C++ code's stderr) to a buffer while the block runs; replay it at DEBUG."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr (embedded, pytest capture): nothing to redirect
        yield
        return
    failed = False
    with tempfile.TemporaryFile() as buffer:
        os.dup2(buffer.fileno(), 2)
        try:
            yield
        except BaseException:
            failed = True  # then what it wrote may say why: shown, not kept at DEBUG
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            buffer.seek(0)
            text = buffer.read().decode("utf-8", "replace").strip()
            if text:
                log.log(logging.WARNING if failed else logging.DEBUG, "%s wrote to stderr:\n%s", what, text)


def quiet_tensorflow(level: str | int | None = None) -> None:
    """Import TensorFlow quietly unless ``level`` is DEBUG; call before anything imports it.

    Sets ``TF_CPP_MIN_LOG_LEVEL`` (3 = errors too; a value the user exported is kept),
    ``TF_USE_LEGACY_KERAS=1`` (the Keras this project uses, see ``convert.models.import_tf``),
    imports TensorFlow with its start-up lines buffered, lowers absl's verbosity and puts a
    :class:`RepeatFilter` on TensorFlow's Python loggers.
    """
    debug = debug_logging(level)
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if debug else "3")
    if debug:
        return
    if "tensorflow" not in sys.modules:
        with stderr_to_log("importing TensorFlow"):
            import tensorflow  # noqa: F401
            import tf_keras  # noqa: F401
    try:
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.ERROR)
    except ImportError:  # absl comes with TensorFlow; without it there is nothing to quieten
        pass
    for name in TF_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(logging.WARNING)  # "Assets written to /tmp/..." and friends are INFO
        if not any(isinstance(f, RepeatFilter) for f in logger.filters):
            logger.addFilter(RepeatFilter())


class RepeatFilter(logging.Filter):
    """Pass a record the first time its (logger, level, message) is seen; count the repeats.

    ``prefixes``: only records of these loggers (and their children) are collapsed,
    others pass; needed on a handler, which sees every logger's records.
    """

    def __init__(self, prefixes: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.prefixes = prefixes
        self.repeats: dict[tuple[str, int, str], int] = {}
        self._mark = f"_edge_har_repeat_{id(self)}"

    def filter(self, record: logging.LogRecord) -> bool:
        if self.prefixes and not any(record.name == p or record.name.startswith(p + ".") for p in self.prefixes):
            return True
        decided = record.__dict__.get(self._mark)
        if decided is not None:  # the same record at another handler: the same answer, counted once
            return bool(decided)
        key = (record.name, record.levelno, record.getMessage())
        first = key not in self.repeats
        self.repeats[key] = 0 if first else self.repeats[key] + 1
        record.__dict__[self._mark] = first
        return first


@contextlib.contextmanager
def collapse_repeats(*names: str, level: str | int | None = None) -> Iterator[RepeatFilter]:
    """Within the block, log each identical line of the ``names`` loggers once; then say how often it came.

    With ``level`` DEBUG (or the root logger at DEBUG) nothing is collapsed.
    """
    flt = RepeatFilter(tuple(names))
    if debug_logging(level):
        yield flt
        return
    # On the root logger's handlers: a logger's own filters do not see its children's records.
    handlers = list(logging.getLogger().handlers)
    for handler in handlers:
        handler.addFilter(flt)
    try:
        yield flt
    finally:
        for handler in handlers:
            handler.removeFilter(flt)
        for (name, levelno, message), count in flt.repeats.items():
            if count:
                logging.getLogger(name).log(levelno, "%s (repeated %d more times)", message, count)
