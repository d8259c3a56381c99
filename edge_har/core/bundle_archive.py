"""A bundle as one file on the wire: a plain tar of the files a device needs, packed and unpacked safely.

The archive holds ``bundle.json``, every file it vouches for (models, ``selftest.npz``) and
``bundle.sig`` when the bundle is signed, flat at the top level, sorted, with fixed modes and times,
so the same bundle always packs to the same bytes (the same sha256). Unpacking takes only regular
files with plain names (no folders, links, devices, ``..`` or absolute paths) up to a size bound, so
an archive from anywhere cannot write outside the folder it is unpacked into or fill the disk.
"""

from __future__ import annotations

import os
import shutil
import tarfile
from pathlib import Path
from typing import Any, BinaryIO, Callable, Optional

from edge_har.core.errors import EdgeHarError

__all__ = [
    "ArchiveError",
    "BoundedReads",
    "bundle_members",
    "kept_names",
    "pack_bundle",
    "unpack_bundle",
    "write_archive",
]

MAX_MEMBERS = 1000
MAX_SINGLE_READ = 4 * 1024 * 1024  # a pax or long-name header is a few hundred bytes
_NAME_OK = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


class ArchiveError(EdgeHarError, ValueError):
    """An archive that is not a bundle this reads, named with the reason in one line."""


class BoundedReads:
    """A read-only file for tarfile that refuses any single read over :data:`MAX_SINGLE_READ`: tarfile reads a
    pax or long-name header whole, so a forged header size would otherwise allocate that much memory."""

    def __init__(self, raw: BinaryIO, error: Callable[[str], Exception] = ArchiveError) -> None:
        self._raw = raw
        self._error = error

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0 or size > MAX_SINGLE_READ:
            raise self._error(f"a tar header of over {MAX_SINGLE_READ} bytes (a pax or long-name header)")
        return self._raw.read(size)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()

    def write(self, data: bytes) -> int:
        raise self._error("the archive is opened for reading only")

    def close(self) -> None:
        """Nothing: the caller closes the file it opened."""


def kept_names(bundle: Any) -> list[str]:
    """What a device needs of a loaded bundle: bundle.json, every file it vouches for, bundle.sig (sorted)."""
    from edge_har.core.bundle import BUNDLE_FILE
    from edge_har.core.signing import SIGNATURE_FILE

    names = {BUNDLE_FILE, *(path.relative_to(bundle.root).as_posix() for _key, path, _size, _sha in bundle.files())}
    if (bundle.root / SIGNATURE_FILE).is_file():
        names.add(SIGNATURE_FILE)
    return sorted(names)


def bundle_members(bundle_dir: Path) -> list[str]:
    """The file names a device needs of the bundle at ``bundle_dir`` (validated and checked first)."""
    from edge_har.core.bundle import Bundle, BundleError

    try:
        bundle = Bundle.load_verified(bundle_dir)
    except BundleError as exc:
        raise ArchiveError(str(exc)) from None
    names = kept_names(bundle)
    for name in names:
        if "/" in name:
            raise ArchiveError(f"{bundle.root}: {name} is in a sub-folder; a bundle's files sit at its top level")
    return names


def write_archive(root: Path, names: list[str], out: Path) -> None:
    """The canonical tar of ``root``'s ``names`` into ``out`` (flat, mode 0644, time 0, no owners), fsync'd."""
    with open(out, "wb") as f:
        with tarfile.open(fileobj=f, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for name in names:
                source = root / name
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime, info.uid, info.gid = source.stat().st_size, 0o644, 0, 0, 0
                info.uname = info.gname = ""
                with open(source, "rb") as data:
                    tar.addfile(info, data)
        f.flush()
        os.fsync(f.fileno())


def pack_bundle(bundle_dir: str | Path, out: str | Path) -> Path:
    """Write the canonical archive of the bundle to ``out`` (same bundle, same bytes); its path."""
    root, out = Path(bundle_dir), Path(out)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    write_archive(root, bundle_members(root), tmp)
    os.replace(tmp, out)
    return out


def unpack_bundle(archive: str | Path, dest: str | Path, max_bytes: int, where: Optional[str] = None) -> Path:
    """Unpack ``archive`` (a plain tar, as :func:`pack_bundle` writes it) into the new folder ``dest``.

    Only regular files with plain names (letters, digits, ``. _ -``) at the top level, or all inside one
    top folder (a ``tar -C parent -cf x.tar bundle`` archive), at most :data:`MAX_MEMBERS` of them and
    ``max_bytes`` unpacked. ``dest`` must not exist; on any refusal it is removed again, and the
    :class:`ArchiveError` names ``where`` (default: the archive's path).
    """
    shown = where or str(archive)
    dest = Path(dest)
    dest.mkdir(parents=True)
    try:
        raw = open(archive, "rb")  # noqa: SIM115 - closed by the with just below
        try:
            tar = tarfile.open(fileobj=BoundedReads(raw, lambda text: ArchiveError(f"{shown}: {text}")), mode="r:")  # noqa: SIM115
        except (tarfile.TarError, OSError, EOFError) as exc:
            raw.close()
            raise ArchiveError(f"{shown}: not a tar archive ({exc})") from None
        with raw, tar:
            members = _members(tar, shown, max_bytes)
            top = _common_top(members)
            for member in members:
                if member.isdir():
                    continue
                name = member.name[len(top) + 1 :] if top else member.name
                source = tar.extractfile(member)
                if source is None:
                    raise ArchiveError(f"{shown}: {member.name}: cannot be read")
                with source, open(dest / name, "xb") as target:
                    shutil.copyfileobj(source, target)
    except (ArchiveError, tarfile.TarError, OSError, EOFError) as exc:
        shutil.rmtree(dest, ignore_errors=True)
        if isinstance(exc, ArchiveError):
            raise
        raise ArchiveError(f"{shown}: a damaged archive ({exc})") from None
    return dest


def _members(tar: tarfile.TarFile, shown: str, max_bytes: int) -> list[tarfile.TarInfo]:
    members: list[tarfile.TarInfo] = []
    total = 0
    for member in tar:
        if len(members) >= MAX_MEMBERS:
            raise ArchiveError(f"{shown}: more than {MAX_MEMBERS} members; a bundle has a handful")
        if not (member.isfile() or member.isdir()):
            raise ArchiveError(f"{shown}: {member.name[:80]!r} is a link or a device; a bundle holds files only")
        while member.name.startswith("./"):  # ``tar -C bundle -cf x.tar .`` names its files ./bundle.json
            member.name = member.name[2:]
        if member.isdir() and member.name.rstrip("/") in ("", "."):
            continue
        parts = member.name.rstrip("/").split("/") if member.isdir() else member.name.split("/")
        if len(parts) > (1 if member.isdir() else 2):
            raise ArchiveError(f"{shown}: {member.name[:80]!r} is nested; a bundle's files sit at its top level")
        if any(p in ("", ".", "..") or not set(p) <= _NAME_OK for p in parts):
            raise ArchiveError(
                f"{shown}: {member.name[:80]!r} is not a plain name (letters, digits, '.', '_' and '-', no '..')"
            )
        total += member.size
        if total > max_bytes:
            raise ArchiveError(f"{shown}: unpacks to more than {max_bytes} bytes")
        members.append(member)
    files = [m for m in members if m.isfile()]
    if not files:
        raise ArchiveError(f"{shown}: holds no file")
    tops = {m.name.split("/")[0] for m in files if "/" in m.name}
    if tops and (len(tops) > 1 or any("/" not in m.name for m in files)):
        raise ArchiveError(f"{shown}: files at the top and in folders; one bundle per archive")
    names = [m.name for m in files]
    if len(set(names)) != len(names):
        raise ArchiveError(f"{shown}: a file name appears twice")
    return members


def _common_top(members: list[tarfile.TarInfo]) -> str:
    files = [m.name for m in members if m.isfile()]
    return files[0].split("/")[0] if "/" in files[0] else ""
