"""The model bundles ``edge-har serve`` keeps for devices to download: checked on the way in, one tar each.

A device updates itself by downloading a bundle over HTTP, so what the store hands out must be a bundle
the device's own reader accepts, and one download must be resumable (HTTP Range) and checkable (sha256).
An upload is therefore a tar archive (plain or gzip) of one bundle folder that is taken apart and checked
before anything is kept:

* **bounded on the way in**: the upload is written to a temporary file inside the store while its bytes
  are counted (over ``max_bytes``: refused, 413); a gzip is decompressed into another such file, at most
  :data:`UNPACK_FACTOR` times ``max_bytes``, so a small gzip cannot unpack to fill the disk.
* **extracted safely**: only regular files and folders, at most :data:`MAX_MEMBERS` of them, whose names
  are relative, free of ``..`` and fit a file system; links, devices and FIFOs are refused, as is a total
  unpacked size over ``UNPACK_FACTOR * max_bytes``. tarfile reads a pax or GNU long-name header whole, so
  the archive is read through :class:`~edge_har.core.bundle_archive.BoundedReads`, which refuses any single read over
  :data:`~edge_har.core.bundle_archive.MAX_SINGLE_READ` (a forged header size cannot allocate the archive's size in memory).
* **a bundle a device loads**: :meth:`Bundle.load` and :meth:`Bundle.verify` on the extracted folder; any
  problem is one :class:`BundleStoreError` line naming the key or file.
* **canonical**: what a device needs (``bundle.json``, every file it vouches for, ``bundle.sig`` when
  present; not training curves or the Keras model) is packed again as an uncompressed tar with sorted names,
  mode 0644, mtime 0 and no owners, so the same bundle gives the same bytes and the same id
  ``<model_id>-<first 12 hex of its sha256>`` however it was archived. Stored as ``ROOT/<id>.tar`` beside
  its metadata ``ROOT/<id>.json``, both written atomically; an upload of a bundle already stored returns
  the stored item.

Temporary files are named ``.tmp-*`` inside the store (one file system, so the final rename is atomic) and
removed whatever happens; ones older than :data:`STALE_S` (a crash) are removed when the store opens.
"""

from __future__ import annotations

import errno
import gzip
import json
import logging
import os
import re
import shutil
import tarfile
import tempfile
import threading
import time
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, Optional, Union

from edge_har.core.bundle import BUNDLE_FILE, Bundle, BundleError
from edge_har.core.bundle_archive import BoundedReads, kept_names, write_archive
from edge_har.core.errors import EdgeHarError
from edge_har.core.interpreter import sha256_file
from edge_har.core.recording_layout import fsync_dir
from edge_har.core.signing import MAX_SIG_BYTES, SIGNATURE_FILE
from edge_har.mqtt.bounded_json import RejectedMessage, parse_message

__all__ = ["BUNDLE_ID_MAX", "BUNDLE_ID_PATTERN", "BundleStore", "BundleStoreError", "Upload", "check_bundle_id"]

log = logging.getLogger("edge_har.web.bundles")

MAX_MEMBERS = 10_000
UNPACK_FACTOR = 4  # an archive may unpack to at most this many times the upload limit
MAX_NAME_CHARS = 1024  # a member's whole name
MAX_PART_BYTES = 255  # one file name on Linux file systems
MAX_MODEL_ID_CHARS = 80
MAX_ITEM_BYTES = 64 * 1024 * 1024  # a metadata file: bundle.json's labels at most (bundle.json is <= 16 MiB)
COPY_CHUNK = 1024 * 1024
STALE_S = 3600.0
TMP_PREFIX = ".tmp-"
BUNDLE_ID_MAX = MAX_MODEL_ID_CHARS + 13
BUNDLE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}-[0-9a-f]{12}$"
_BUNDLE_ID = re.compile(BUNDLE_ID_PATTERN)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_KEY_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_GZIP_MAGIC = b"\x1f\x8b"

Stream = Union[BinaryIO, Iterable[bytes]]


class BundleStoreError(EdgeHarError, ValueError):
    """An upload or request the store refuses; the message is one line naming what is wrong.

    ``status`` is the HTTP status it answers with: 400 a bad archive or bundle, 413 over a size limit,
    507 a disk that refused a write.
    """

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(_one_line(message))
        self.status = status


def check_bundle_id(bundle_id: str) -> bool:
    """Whether ``bundle_id`` is an id the store could have made (so it names one file inside the store)."""
    return isinstance(bundle_id, str) and len(bundle_id) <= BUNDLE_ID_MAX and _BUNDLE_ID.match(bundle_id) is not None


def _one_line(text: str, limit: int = 600) -> str:
    line = " ".join(str(text).splitlines()).strip()
    return line if len(line) <= limit else line[: limit - 3] + "..."


class Upload:
    """An upload being written to a temporary file inside the store, counted against ``max_bytes``.

    The API writes the request body into it chunk by chunk (so nothing is held in memory) and hands it to
    :meth:`BundleStore.add_upload`, or to :meth:`BundleStore.discard` when it refuses the body first.
    """

    def __init__(self, root: Path, max_bytes: int, made_root: bool = False) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self.made_root = made_root  # the store's folder was made for this upload (removed again if it fails)
        fd, name = tempfile.mkstemp(dir=root, prefix=f"{TMP_PREFIX}upload-")
        self.path = Path(name)
        self._file: Optional[BinaryIO] = os.fdopen(fd, "wb")

    def write(self, data: bytes) -> None:
        """Append ``data``; :class:`BundleStoreError` 413 once the upload passes ``max_bytes``."""
        self.size += len(data)
        if self.size > self.max_bytes:
            raise BundleStoreError(f"the upload is over {self.max_bytes} bytes, the bundle store's limit", 413)
        if self._file is None:
            raise BundleStoreError("the upload is already closed")
        self._file.write(data)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def discard(self) -> None:
        self.close()
        _remove(self.path)


class BundleStore:
    """The bundles under ``root`` (created at the first upload); see the module doc."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = Path(root)
        self.max_bytes = int(max_bytes)
        self._lock = threading.Lock()
        self._remove_stale()

    # ------------------------------------------------------------------ adding

    def new_upload(self) -> Upload:
        """A temporary file inside the store for one upload (the store's folder made if need be); hand it to
        :meth:`add_upload`, or to :meth:`discard` when the upload is refused before that."""
        try:
            with self._lock:
                made = not self.root.is_dir()
                self.root.mkdir(parents=True, exist_ok=True)
                return Upload(self.root, self.max_bytes, made_root=made)
        except OSError as exc:
            raise _disk_error(exc) from None

    def discard(self, upload: Upload) -> None:
        """Remove the upload's temporary file, and the store's folder when it was made for a refused upload (so a
        server that never stored a bundle leaves no empty folder beside its database)."""
        upload.discard()
        if upload.made_root:
            with self._lock:
                try:
                    self.root.rmdir()  # only when empty: a stored bundle or another upload keeps it
                except OSError:
                    pass

    def add(self, stream: Stream) -> dict[str, Any]:
        """Store the bundle in ``stream`` (a binary file or an iterable of bytes holding a tar or tar.gz);
        its item. Raises :class:`BundleStoreError` naming what is wrong."""
        upload = self.new_upload()
        try:
            for chunk in _chunks(stream):
                upload.write(chunk)
        except OSError as exc:
            self.discard(upload)
            raise _disk_error(exc) from None
        except BaseException:
            self.discard(upload)
            raise
        return self.add_upload(upload)

    def add_upload(self, upload: Upload) -> dict[str, Any]:
        """Check, repack and store a finished :class:`Upload` (removed afterwards, whatever happens)."""
        try:
            upload.close()
            return self._add_file(upload.path)
        finally:
            self.discard(upload)

    def _add_file(self, path: Path) -> dict[str, Any]:
        work: list[Path] = []
        try:
            archive = path
            with open(path, "rb") as f:
                gzipped = f.read(2) == _GZIP_MAGIC
            if gzipped:
                archive = self._temp_file("tar-")
                work.append(archive)
                self._gunzip(path, archive)
            folder = Path(tempfile.mkdtemp(dir=self.root, prefix=f"{TMP_PREFIX}extract-"))
            work.append(folder)
            self._extract(archive, folder)
            bundle = _load(_bundle_root(folder))
            packed = self._temp_file("pack-")
            work.append(packed)
            return self._commit(bundle, packed)
        except OSError as exc:
            raise _disk_error(exc) from None
        finally:
            for item in work:
                _remove(item)

    def _temp_file(self, kind: str) -> Path:
        fd, name = tempfile.mkstemp(dir=self.root, prefix=f"{TMP_PREFIX}{kind}")
        os.close(fd)
        return Path(name)

    @property
    def unpack_limit(self) -> int:
        return self.max_bytes * UNPACK_FACTOR

    def _gunzip(self, source: Path, target: Path) -> None:
        """Decompress ``source`` into ``target``, refusing (413) past the unpacked bound plus tar headers."""
        limit = self.unpack_limit + (MAX_MEMBERS + 4) * 4 * tarfile.BLOCKSIZE + tarfile.RECORDSIZE
        written = 0
        try:
            with gzip.open(source, "rb") as src, open(target, "wb") as out:
                while True:
                    chunk = src.read(COPY_CHUNK)
                    if not chunk:
                        break
                    written += len(chunk)
                    if written > limit:
                        raise BundleStoreError(
                            f"the gzip unpacks to over {limit} bytes ({UNPACK_FACTOR} x the upload limit and the "
                            "headers of the most members taken)",
                            413,
                        )
                    out.write(chunk)
        except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
            raise BundleStoreError(f"not a readable gzip: {exc or type(exc).__name__}") from None

    def _extract(self, archive: Path, dest: Path) -> None:
        """Extract ``archive`` into ``dest``: regular files and folders only, within the bounds of the module doc."""
        total = count = 0
        with open(archive, "rb") as raw:
            try:
                tar = tarfile.open(fileobj=BoundedReads(raw, BundleStoreError), mode="r:")  # noqa: SIM115 - closed below
            except BundleStoreError:
                raise
            except Exception as exc:  # noqa: BLE001 - tarfile's parser of hostile headers raises more than TarError
                raise BundleStoreError(f"not a tar archive (plain or gzip): {_reason(exc)}") from None
            with tar:
                while True:
                    try:
                        member = tar.next()
                    except BundleStoreError:
                        raise
                    except Exception as exc:  # noqa: BLE001 - as above
                        raise BundleStoreError(f"a damaged tar archive after {count} members: {_reason(exc)}") from None
                    if member is None:
                        break
                    count += 1
                    if count > MAX_MEMBERS:
                        raise BundleStoreError(f"the archive holds more than {MAX_MEMBERS} members")
                    parts = _member_parts(member)
                    if member.isdir():
                        if parts:
                            _make_dirs(dest, parts, member.name)
                        continue
                    if member.type not in (tarfile.REGTYPE, tarfile.AREGTYPE) or member.sparse is not None:
                        raise BundleStoreError(f"{member.name[:120]!r}: {_kind(member)}; only files and folders")
                    if not parts:
                        raise BundleStoreError(f"{member.name[:120]!r}: a file without a name")
                    if member.size < 0:
                        raise BundleStoreError(f"{member.name[:120]!r}: a negative size in its header")
                    total += member.size
                    if total > self.unpack_limit:
                        raise BundleStoreError(
                            f"the archive unpacks to over {self.unpack_limit} bytes ({UNPACK_FACTOR} x the upload "
                            "limit)",
                            413,
                        )
                    self._write_member(tar, member, dest, parts)

    def _write_member(self, tar: tarfile.TarFile, member: tarfile.TarInfo, dest: Path, parts: list[str]) -> None:
        if len(parts) > 1:
            _make_dirs(dest, parts[:-1], member.name)
        target = dest.joinpath(*parts)
        try:
            src = tar.extractfile(member)
            if src is None:
                raise BundleStoreError(f"{member.name[:120]!r}: not a file")
            with src, open(target, "xb") as out:
                while True:
                    chunk = src.read(COPY_CHUNK)
                    if not chunk:
                        break
                    out.write(chunk)
        except (FileExistsError, IsADirectoryError, NotADirectoryError):
            raise BundleStoreError(f"{member.name[:120]!r}: appears twice, or clashes with a folder") from None
        except OSError as exc:
            if exc.errno in (errno.ENAMETOOLONG, errno.EILSEQ, errno.EINVAL):
                raise BundleStoreError(f"{member.name[:120]!r}: not a name this file system takes") from None
            raise
        except (tarfile.TarError, EOFError, zlib.error) as exc:
            raise BundleStoreError(f"{member.name[:120]!r}: the archive ends inside it ({_reason(exc)})") from None

    def _commit(self, bundle: Bundle, packed: Path) -> dict[str, Any]:
        """Pack what a device needs into ``packed``, name it by its sha256 and keep it (once)."""
        names = kept_names(bundle)
        write_archive(bundle.root, names, packed)
        sha = sha256_file(packed)
        bundle_id = f"{_safe_model_id(bundle.model_id)}-{sha[:12]}"
        item = {
            "id": bundle_id,
            "model_id": bundle.model_id,
            "kind": bundle.kind,
            "labels": list(bundle.labels),
            "default_variant": bundle.default_variant,
            "variants": list(bundle.variants),
            "sha256": sha,
            "size_bytes": packed.stat().st_size,
            "signed_by": _signed_by(bundle.root),
            "created_at": round(time.time(), 3),
            "stream": {
                "sample_rate_hz": bundle.preprocessing.sample_rate_hz,
                "window": bundle.preprocessing.window,
                "stride": bundle.preprocessing.stride,
                "channels": list(bundle.preprocessing.channels),
            },
        }
        with self._lock:
            existing = self.get(bundle_id)
            if existing is not None:
                log.info("bundles: %s is already stored", bundle_id)
                return existing
            os.replace(packed, self.root / f"{bundle_id}.tar")
            fsync_dir(self.root)
            self._write_atomic(self.root / f"{bundle_id}.json", _dumps(item))
        log.info("bundles: stored %s (%d bytes, %d files)", bundle_id, item["size_bytes"], len(names))
        return item

    def _write_atomic(self, path: Path, data: bytes) -> None:
        fd, name = tempfile.mkstemp(dir=self.root, prefix=f"{TMP_PREFIX}meta-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(name, path)
        except BaseException:
            _remove(Path(name))
            raise
        fsync_dir(self.root)

    # ------------------------------------------------------------------ reading

    def list(self) -> list[dict[str, Any]]:
        """Every stored bundle's item, newest first."""
        try:
            names = sorted(p.name for p in self.root.iterdir())
        except FileNotFoundError:
            return []
        items = []
        for name in names:
            if name.endswith(".json") and check_bundle_id(name[: -len(".json")]):
                item = self.get(name[: -len(".json")])
                if item is not None:
                    items.append(item)
        items.sort(key=lambda item: (-_created(item), str(item["id"])))
        return items

    def get(self, bundle_id: str) -> Optional[dict[str, Any]]:
        """The item of ``bundle_id``; None when no such bundle is stored (or the id is not one the store makes)."""
        if not check_bundle_id(bundle_id):
            return None
        meta, archive = self.root / f"{bundle_id}.json", self.root / f"{bundle_id}.tar"
        try:
            if meta.stat().st_size > MAX_ITEM_BYTES or not archive.is_file():
                return None
            item = parse_message(meta.read_bytes(), max_bytes=MAX_ITEM_BYTES, max_depth=8)
        except FileNotFoundError:
            return None
        except (OSError, RejectedMessage) as exc:
            log.warning("bundles: %s left out: %s", meta, _one_line(str(exc), 200))
            return None
        if not isinstance(item, dict) or item.get("id") != bundle_id:
            log.warning("bundles: %s left out: not the metadata of %s", meta, bundle_id)
            return None
        return item

    def archive_path(self, bundle_id: str) -> Optional[Path]:
        """The stored tar of ``bundle_id``; None when no such bundle is stored."""
        if not check_bundle_id(bundle_id):
            return None
        path = self.root / f"{bundle_id}.tar"
        return path if path.is_file() and (self.root / f"{bundle_id}.json").is_file() else None

    def delete(self, bundle_id: str) -> bool:
        """Remove a stored bundle (its metadata first, so it never lists without its tar); whether there was one."""
        if not check_bundle_id(bundle_id):
            return False
        with self._lock:
            meta = self.root / f"{bundle_id}.json"
            if not meta.is_file():
                return False
            meta.unlink()
            _remove(self.root / f"{bundle_id}.tar")
            fsync_dir(self.root)
        log.info("bundles: deleted %s", bundle_id)
        return True

    def _remove_stale(self) -> None:
        """Remove temporary files a crash left (older than STALE_S: an upload in flight elsewhere is younger)."""
        try:
            entries = list(self.root.iterdir())
        except OSError:
            return
        now = time.time()
        for entry in entries:
            try:
                if entry.name.startswith(TMP_PREFIX) and now - entry.lstat().st_mtime > STALE_S:
                    _remove(entry)
                    log.info("bundles: removed %s, left by an upload that did not finish", entry)
            except OSError:
                continue


# ---------------------------------------------------------------------------------------------- helpers


def _chunks(stream: Stream) -> Iterator[bytes]:
    read = getattr(stream, "read", None)
    if read is not None:
        while True:
            chunk = read(COPY_CHUNK)
            if not chunk:
                return
            yield bytes(chunk)
    else:
        for chunk in stream:
            yield bytes(chunk)


def _member_parts(member: tarfile.TarInfo) -> list[str]:
    """The member's name as path parts inside the bundle, ``.`` left out; refuses what could leave the folder."""
    name = member.name
    shown = f"{name[:120]!r}"
    if len(name) > MAX_NAME_CHARS:
        raise BundleStoreError(f"{shown}...: a name of over {MAX_NAME_CHARS} characters")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise BundleStoreError(f"{shown}: an absolute name; names in the archive must be relative")
    if "\\" in name or "\x00" in name:
        raise BundleStoreError(f"{shown}: a name holding a backslash or NUL")
    parts = [part for part in PurePosixPath(name).parts if part != "."]
    if ".." in parts:
        raise BundleStoreError(f"{shown}: a name with '..'; names in the archive must stay inside it")
    for part in parts:
        if len(part.encode("utf-8", "surrogateescape")) > MAX_PART_BYTES:
            raise BundleStoreError(f"{shown}: a name part of over {MAX_PART_BYTES} bytes")
    return parts


def _make_dirs(dest: Path, parts: list[str], name: str) -> None:
    try:
        dest.joinpath(*parts).mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise BundleStoreError(f"{name[:120]!r}: a folder where the archive has a file of that name") from None


def _kind(member: tarfile.TarInfo) -> str:
    if member.issym():
        return f"a symbolic link (to {member.linkname[:80]!r})"
    if member.islnk():
        return f"a hard link (to {member.linkname[:80]!r})"
    if member.ischr() or member.isblk():
        return "a device node"
    if member.isfifo():
        return "a FIFO"
    if member.issparse():
        return "a sparse file"
    return f"a member of tar type {member.type!r}"


def _reason(exc: BaseException) -> str:
    return _one_line(str(exc) or type(exc).__name__, 200)


def _bundle_root(folder: Path) -> Path:
    """Where bundle.json is: at the archive's top level, or inside its one top folder."""
    if (folder / BUNDLE_FILE).is_file():
        return folder
    top = list(folder.iterdir())
    if len(top) == 1 and top[0].is_dir() and (top[0] / BUNDLE_FILE).is_file():
        return top[0]
    names = ", ".join(sorted(repr(p.name[:40]) for p in top)[:5]) or "nothing"
    raise BundleStoreError(
        f"no {BUNDLE_FILE} at the archive's top level or inside exactly one top folder (the top level holds {names})"
    )


def _load(root: Path) -> Bundle:
    """The extracted bundle, loaded and verified as a device would; BundleStoreError naming the key otherwise."""
    try:
        bundle = Bundle.load(root)
    except BundleError as exc:
        raise BundleStoreError(_relative(str(exc), root)) from None
    problems = bundle.verify()
    if problems:
        shown = "; ".join(_relative(p, root) for p in problems[:3])
        more = f"; and {len(problems) - 3} more" if len(problems) > 3 else ""
        raise BundleStoreError(f"{BUNDLE_FILE}: the files do not match it: {shown}{more}")
    return bundle


def _relative(text: str, root: Path) -> str:
    """``text`` with the temporary folder's path left out, so a message names files as the archive does."""
    return text.replace(f"{root}{os.sep}", "").replace(str(root), "the bundle")


def _signed_by(root: Path) -> Optional[str]:
    """bundle.sig's ``key_id`` (None when unsigned); parsed within bounds and not verified here: a device checks
    the signature against the keys it trusts."""
    sig = root / SIGNATURE_FILE
    if not sig.is_file():
        return None
    size = sig.stat().st_size
    if size > MAX_SIG_BYTES:
        raise BundleStoreError(f"{SIGNATURE_FILE}: {size} bytes; a signature file is well under {MAX_SIG_BYTES}")
    try:
        doc = parse_message(sig.read_bytes(), max_bytes=MAX_SIG_BYTES, max_depth=4)
    except RejectedMessage as exc:
        raise BundleStoreError(f"{SIGNATURE_FILE}: {exc}") from None
    key_id = doc.get("key_id") if isinstance(doc, dict) else None
    if not isinstance(key_id, str) or not _KEY_ID.match(key_id):
        raise BundleStoreError(f"{SIGNATURE_FILE}: key_id: missing, or not a key id (1-64 letters, digits, . _ -)")
    return key_id


def _created(item: dict[str, Any]) -> float:
    value = item.get("created_at")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def _safe_model_id(model_id: str) -> str:
    safe = _UNSAFE.sub("_", model_id)[:MAX_MODEL_ID_CHARS].lstrip("._-")
    return safe or "bundle"


def _dumps(item: dict[str, Any]) -> bytes:
    return (json.dumps(item, indent=1, ensure_ascii=False) + "\n").encode("utf-8")


def _disk_error(exc: OSError) -> BundleStoreError:
    log.warning("bundles: %s", exc)
    return BundleStoreError(f"the bundle store could not write: {exc.strerror or exc}", 507)


def _remove(path: Path) -> None:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("bundles: could not remove %s: %s", path, exc)
