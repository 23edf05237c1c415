"""Code packages on disk: one unpacked directory per code digest, created atomically."""

from __future__ import annotations

import asyncio
import io
import os
import re
import shutil
import stat
import tempfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from openfgs.runtime.types import CodeLoader, FunctionSpec

# Bounds what a zip bomb can write; the sizes come from the archive's headers, which zipfile
# also enforces while extracting.
MAX_UNPACKED_BYTES = 1 << 30

# The digest names a directory, so it must not be able to name anything else.
_DIGEST = re.compile(r"[A-Za-z0-9_-]{1,128}")


class CodePackageError(Exception):
    """The code package cannot be used: not a zip, unsafe entries, unknown type."""


class CodeStore:
    """Unpacked code packages under ``root/<digest>/``; a digest is loaded once per node."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._locks: dict[str, asyncio.Lock] = {}
        self._ready: set[str] = set()

    async def ensure(self, spec: FunctionSpec, load_code: CodeLoader) -> Path:
        """The directory holding ``spec``'s code, unpacking it first if needed."""
        if not _DIGEST.fullmatch(spec.code_digest):
            raise CodePackageError(f"invalid code digest {spec.code_digest!r}")
        target = self._root / spec.code_digest
        # A digest's directory never changes once there, so one stat per digest is enough.
        if spec.code_digest in self._ready or target.is_dir():
            self._ready.add(spec.code_digest)
            return target
        # Concurrent first invocations of one digest load the package once.
        lock = self._locks.setdefault(spec.code_digest, asyncio.Lock())
        try:
            async with lock:
                if not target.is_dir():
                    data = await load_code()
                    await asyncio.to_thread(unpack, data, spec.code_type, target)
        finally:
            # A caller still queued on this lock re-checks the directory, so dropping it is safe.
            if not lock.locked():
                self._locks.pop(spec.code_digest, None)
        return target


def unpack(data: bytes, code_type: str, target: Path) -> None:
    """Write a package into ``target`` through a temporary sibling and one rename."""
    target.parent.mkdir(parents=True, exist_ok=True)
    # The dot prefix keeps staging directories apart from digests, which have no dots.
    staging = Path(tempfile.mkdtemp(prefix=".unpack-", dir=target.parent))
    try:
        if code_type == "inline":
            (staging / "index.py").write_bytes(data)
        elif code_type == "zip":
            extract_zip(data, staging)
        else:
            raise CodePackageError(f"unsupported code_type {code_type!r}")
        open_to_readers(staging)
        # Closed until the pool grants it to the instances of its code (see isolation.py).
        staging.chmod(0o700)
        try:
            staging.rename(target)
        except OSError:
            if not target.is_dir():  # otherwise another process unpacked the same digest
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def open_to_readers(root: Path) -> None:
    """Make everything below ``root`` readable (and not writable) by other users.

    The service's umask may be strict, and the instance user is not the owner; what keeps
    other functions out is the mode of ``root`` itself.
    """
    for directory, subdirs, files in os.walk(root):
        for name in subdirs + files:
            path = os.path.join(directory, name)
            mode = os.lstat(path).st_mode
            if stat.S_ISDIR(mode) or (stat.S_ISREG(mode) and mode & stat.S_IXUSR):
                os.chmod(path, 0o755)
            elif stat.S_ISREG(mode):
                os.chmod(path, 0o644)


def extract_zip(data: bytes, dest: Path) -> None:
    """Extract a zip archive into ``dest``, refusing entries that would land outside it."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
            for member in members:
                check_member(member.filename, dest)
            if sum(member.file_size for member in members) > MAX_UNPACKED_BYTES:
                raise CodePackageError(
                    f"code package unpacks to more than {MAX_UNPACKED_BYTES} bytes"
                )
            for member in members:
                archive.extract(member, dest)
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise CodePackageError(f"code package is not a valid zip archive: {exc}") from exc


def check_member(name: str, dest: Path) -> None:
    """Reject absolute names, ``..`` components and anything resolving outside ``dest``."""
    path = PurePosixPath(name.replace("\\", "/"))
    parts = path.parts
    escapes = (
        not parts
        or path.is_absolute()
        or ".." in parts
        or ":" in parts[0]  # a Windows drive
        or not (dest / name).resolve().is_relative_to(dest.resolve())
    )
    if escapes:
        raise CodePackageError(f"code package entry {name!r} escapes the code directory")
