"""Fetching a bundle archive from serve: resumable, bounded in size, checked against its sha256.

The download goes to ``<sha256>.part`` in the update folder. A link that drops midway (Wi-Fi, a
restart of serve) leaves the part; the next try asks only for the rest (HTTP ``Range``), and a server
that answers with the whole file again (200) is read from the start. Nothing beyond the announced size
is read, and the finished file must hash to the announced sha256, else it is deleted: a bundle is
unpacked only from bytes that are exactly the ones serve announced.
"""

from __future__ import annotations

import base64
import logging
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Optional

from edge_har.core.errors import EdgeHarError
from edge_har.core.interpreter import sha256_file as _sha256

__all__ = ["DownloadError", "download_archive"]

log = logging.getLogger(__name__)

CHUNK = 64 * 1024
ATTEMPTS = 5


class DownloadError(EdgeHarError, RuntimeError):
    """The archive could not be fetched whole and right; the message says what and from where."""


def _auth_header(password: Optional[str]) -> dict[str, str]:
    if not password:
        return {}
    token = base64.b64encode(f"edge-har:{password}".encode()).decode("ascii")
    return {"Authorization": f"Basic {token}"}


def download_archive(
    url: str,
    dest: Path,
    *,
    size: int,
    sha256: str,
    password: Optional[str] = None,
    timeout_s: float = 30.0,
    stop: Optional[Callable[[], bool]] = None,
    progress: Optional[Callable[[int, int], None]] = None,
    attempts: int = ATTEMPTS,
) -> Path:
    """Fetch ``url`` into ``dest`` (resuming ``dest.part``), exactly ``size`` bytes hashing to ``sha256``."""
    part = dest.with_name(dest.name + ".part")
    if dest.is_file() and dest.stat().st_size == size and _sha256(dest) == sha256:
        return dest
    last_error = ""
    for attempt in range(1, attempts + 1):
        if stop is not None and stop():
            raise DownloadError(f"{url}: stopped")
        try:
            _fetch(url, part, size, password, timeout_s, stop, progress)
            break
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            reason = getattr(exc, "reason", None) or exc
            last_error = str(reason)
            if isinstance(exc, urllib.error.HTTPError) and exc.code in (401, 403, 404, 410):
                raise DownloadError(f"{url}: HTTP {exc.code} ({exc.reason})") from None
            have = part.stat().st_size if part.exists() else 0
            log.warning(
                "update: download of %s broke at %d of %d bytes (%s); try %d of %d",
                url,
                have,
                size,
                reason,
                attempt,
                attempts,
            )
            time.sleep(min(10.0, 0.5 * 2**attempt))
    else:
        raise DownloadError(f"{url}: failed {attempts} times ({last_error})")
    digest = _sha256(part)
    if digest != sha256:
        part.unlink(missing_ok=True)
        raise DownloadError(f"{url}: the download hashes to {digest[:16]}..., not the announced {sha256[:16]}...")
    part.replace(dest)
    return dest


def _fetch(
    url: str,
    part: Path,
    size: int,
    password: Optional[str],
    timeout_s: float,
    stop: Optional[Callable[[], bool]],
    progress: Optional[Callable[[int, int], None]],
) -> None:
    have = part.stat().st_size if part.exists() else 0
    if have > size:
        part.unlink()
        have = 0
    if have == size:
        return
    headers = _auth_header(password)
    if have:
        headers["Range"] = f"bytes={have}-"
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310 - the config's server only
        if response.status == 200 and have:
            have = 0  # the server sent the whole file: start over
        elif response.status == 206:
            first = _range_start(response.headers.get("Content-Range", ""))
            if first != have:
                raise OSError(f"the server resumed at byte {first}, not {have}")
        elif response.status != 200:
            raise OSError(f"HTTP {response.status}")
        length = response.headers.get("Content-Length")
        if length is not None and have + int(length) > size:
            raise DownloadError(f"{url}: {have + int(length)} bytes offered, {size} announced")
        with open(part, "ab" if have else "wb") as out:
            while have < size:
                if stop is not None and stop():
                    raise DownloadError(f"{url}: stopped")
                chunk = response.read(min(CHUNK, size - have))
                if not chunk:
                    break
                out.write(chunk)
                have += len(chunk)
                if progress is not None:
                    progress(have, size)
            out.flush()
    if have < size:
        raise OSError(f"the connection ended at byte {have} of {size}")


def _range_start(content_range: str) -> int:
    # "bytes 100-999/1000"
    try:
        return int(content_range.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return -1
