"""Code packages: the one check of a zip archive, and one unpacked directory per code digest.

The same check (:func:`check_zip`) runs when a function is created or its code replaced and
again when the package is unpacked, so whatever the API accepts unpacks. Directories are
created atomically and removed (:meth:`CodeStore.detach`) once no function uses their digest.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import re
import secrets
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

from openfgs.errors import OpenFgsError
from openfgs.runtime.families import PYTHON, family_of
from openfgs.runtime.types import CodeLoader, FunctionSpec

# What one package may unpack to: the sum of the sizes its entries declare (zipfile stops
# reading an entry at its declared size, so a lying header cannot write more).
MAX_UNPACKED_BYTES = 1 << 30
MAX_ENTRIES = 20_000
MAX_NAME_BYTES = 1024  # a whole entry name; the code directory's path is added to it
MAX_PART_BYTES = 255  # one path component (NAME_MAX on Linux)
_COMPRESSIONS = frozenset(
    {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f\\]")
_CHUNK = 1 << 20

# Dependencies (openfgs.dependencies): a dependency's zip may hold more files than a code
# package. A function with dependencies runs from a *bundle*: its code package with each
# dependency merged over it in order, built from their unpacked directories.
DEPENDENCY = "dependency"
DEPENDENCY_MAX_ENTRIES = 30_000
BUNDLE = "bundle"

# The digest names a directory, so it must not be able to name anything else.
_DIGEST = re.compile(r"[A-Za-z0-9_-]{1,128}")
# Removed directories are renamed to this prefix first; digests have no dots.
_TRASH = ".trash-"


class CodePackageError(OpenFgsError):
    """The code package cannot be used: not a zip, unsafe entries, unknown type."""


@dataclass(frozen=True)
class Entry:
    """One checked zip entry: where it lands below the code directory, and what it is."""

    info: zipfile.ZipInfo
    parts: tuple[str, ...]
    is_dir: bool
    executable: bool


def check_zip(data: bytes, *, verify: bool = False, max_entries: int = MAX_ENTRIES) -> list[Entry]:
    """Every entry of a zip archive, checked; raises CodePackageError naming the first fault.

    Refused: archives zipfile cannot read, more than ``max_entries`` entries, more than
    ``MAX_UNPACKED_BYTES`` declared, encrypted entries or unknown compression, symlinks and
    other special files, and names that are absolute, climb with ``..``, carry a drive letter,
    a backslash, NUL or another control character, are too long, or name one path twice (or
    as a file and a directory). ``verify`` also decompresses every entry and checks its CRC,
    so a package accepted this way cannot fail later for damaged data.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
            entries = _check_entries(infos, max_entries)
            if verify:
                for entry in entries:
                    if not entry.is_dir:
                        with archive.open(entry.info) as source:
                            while source.read(_CHUNK):
                                pass
    except CodePackageError:
        raise
    except Exception as exc:  # zipfile raises many kinds of errors on damaged input
        raise CodePackageError(f"code package is not a valid zip archive: {exc}") from exc
    return entries


def _check_entries(infos: list[zipfile.ZipInfo], max_entries: int) -> list[Entry]:
    if len(infos) > max_entries:
        raise CodePackageError(f"code package has more than {max_entries} entries")
    entries: list[Entry] = []
    total = 0
    seen: dict[tuple[str, ...], bool] = {}  # path → is a directory
    for info in infos:
        entry = _check_entry(info)
        if entry is None:
            continue
        previous = seen.get(entry.parts)
        if previous is not None and not (previous and entry.is_dir):
            raise CodePackageError(f"code package entry {info.filename!r} appears twice")
        seen[entry.parts] = entry.is_dir
        if not entry.is_dir:
            total += info.file_size
        entries.append(entry)
    if total > MAX_UNPACKED_BYTES:
        raise CodePackageError(f"code package unpacks to more than {MAX_UNPACKED_BYTES} bytes")
    for entry in entries:
        for depth in range(1, len(entry.parts)):
            if seen.get(entry.parts[:depth]) is False:
                name = "/".join(entry.parts[:depth])
                raise CodePackageError(f"code package entry {name!r} is a file and a directory")
    return entries


def _check_entry(info: zipfile.ZipInfo) -> Entry | None:
    """The entry ``info`` describes, or None for a directory naming the code root itself."""
    name = info.filename
    parts = check_member_name(name)
    mode = info.external_attr >> 16
    kind = stat.S_IFMT(mode)
    is_dir = info.is_dir() or kind == stat.S_IFDIR
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise CodePackageError(f"code package entry {name!r} is a symlink or a special file")
    if info.flag_bits & 0x1:
        raise CodePackageError(f"code package entry {name!r} is encrypted")
    if info.compress_type not in _COMPRESSIONS:
        raise CodePackageError(f"code package entry {name!r} uses an unsupported compression")
    if not parts:
        if is_dir:
            return None
        raise CodePackageError(f"code package entry {name!r} names no file")
    return Entry(info, parts, is_dir, bool(mode & stat.S_IXUSR))


def check_member_name(name: str) -> tuple[str, ...]:
    """The path components of a zip entry name below the code directory; raises if unsafe.

    Empty and ``.`` components are dropped, as every unzip tool does.
    """
    if _CONTROL.search(name):
        raise CodePackageError(
            f"code package entry {name!r} has a backslash or a control character in its name"
        )
    parts = tuple(part for part in name.split("/") if part not in ("", "."))
    if name.startswith("/") or ".." in parts:
        raise CodePackageError(f"code package entry {name!r} escapes the code directory")
    if ":" in name.split("/", 1)[0]:
        raise CodePackageError(f"code package entry {name!r} names a drive")
    too_long = len(name.encode()) > MAX_NAME_BYTES or any(
        len(part.encode()) > MAX_PART_BYTES for part in parts
    )
    if too_long:
        raise CodePackageError(f"code package entry {name[:64]!r}… has too long a name")
    return parts


class CodeStore:
    """Unpacked code packages under ``root/<digest>/``; a digest is loaded once per node."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._locks: dict[str, asyncio.Lock] = {}
        self._ready: set[str] = set()

    @property
    def root(self) -> Path:
        return self._root

    async def ensure(self, spec: FunctionSpec, load_code: CodeLoader) -> Path:
        """The directory holding ``spec``'s code, unpacking it first if needed."""
        if not _DIGEST.fullmatch(spec.code_digest):
            raise CodePackageError(f"invalid code digest {spec.code_digest!r}")
        target = self._root / spec.code_digest
        # A digest's directory never changes while it exists, so one stat per digest is
        # enough; detach() forgets the digest when it removes the directory.
        if spec.code_digest in self._ready or target.is_dir():
            self._ready.add(spec.code_digest)
            return target
        # Concurrent first invocations of one digest load the package once.
        lock = self._locks.setdefault(spec.code_digest, asyncio.Lock())
        try:
            async with lock:
                if not target.is_dir():
                    data = await load_code()
                    family = family_of(spec.runtime) or PYTHON
                    await asyncio.to_thread(
                        unpack, data, spec.code_type, target, family.inline_file
                    )
        finally:
            # A caller still queued on this lock re-checks the directory, so dropping it is safe.
            if not lock.locked():
                self._locks.pop(spec.code_digest, None)
        return target

    def digests(self) -> set[str]:
        """The digests unpacked here."""
        try:
            names = [entry.name for entry in self._root.iterdir() if entry.is_dir()]
        except FileNotFoundError:
            return set()
        return {name for name in names if _DIGEST.fullmatch(name)}

    def detach(self, keep: Collection[str]) -> list[str]:
        """Take away every unpacked package whose digest is not in ``keep``; return those.

        Synchronous and quick: each directory is renamed out of the way in one step, so an
        invocation finds a package whole or unpacks it again; :meth:`purge` deletes the files.
        A digest being unpacked right now is left alone.
        """
        removed = []
        for digest in sorted(self.digests() - set(keep) - set(self._locks)):
            trash = self._root / f"{_TRASH}{secrets.token_hex(8)}"
            try:
                (self._root / digest).rename(trash)
            except OSError:
                continue
            self._ready.discard(digest)
            removed.append(digest)
        return removed

    async def purge(self) -> None:
        """Delete what :meth:`detach` took away (also what a crash left), in a thread."""
        try:
            trash = [p for p in self._root.iterdir() if p.name.startswith(_TRASH)]
        except FileNotFoundError:
            return
        if trash:
            await asyncio.to_thread(_remove_all, trash)

    async def sweep(self, keep: Collection[str]) -> list[str]:
        """:meth:`detach` then :meth:`purge`: remove every package not in ``keep``."""
        removed = self.detach(keep)
        await self.purge()
        return removed


def _remove_all(paths: list[Path]) -> None:
    for path in paths:
        shutil.rmtree(path, ignore_errors=True)


def unpack(data: bytes, code_type: str, target: Path, inline_file: str = "index.py") -> None:
    """Write a package into ``target`` through a temporary sibling and one rename; inline
    code becomes ``inline_file`` (the runtime family's: index.py, index.js, bootstrap)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    # The dot prefix keeps staging directories apart from digests, which have no dots.
    staging = Path(tempfile.mkdtemp(prefix=".unpack-", dir=target.parent))
    try:
        if code_type == "inline":
            (staging / inline_file).write_bytes(data)
            if inline_file == "bootstrap":  # what a custom runtime executes
                (staging / inline_file).chmod(0o755)
        elif code_type == "zip":
            extract_zip(data, staging)
        elif code_type == DEPENDENCY:
            extract_zip(data, staging, max_entries=DEPENDENCY_MAX_ENTRIES)
        elif code_type == BUNDLE:
            merge_trees([Path(source) for source in json.loads(data)], staging)
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


def extract_zip(data: bytes, dest: Path, *, max_entries: int = MAX_ENTRIES) -> None:
    """Extract a zip archive into ``dest``: exactly the entries :func:`check_zip` accepts.

    Each entry is written to the path the check computed, as a new regular file (never
    through a link), so nothing lands outside ``dest``.
    """
    entries = check_zip(data, max_entries=max_entries)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for entry in entries:
                target = dest.joinpath(*entry.parts)
                if entry.is_dir:
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
                fd = os.open(target, flags, 0o755 if entry.executable else 0o644)
                with archive.open(entry.info) as source, open(fd, "wb") as sink:
                    shutil.copyfileobj(source, sink, _CHUNK)
    except OSError:
        raise  # the node's trouble (a full disk), not the package's
    except Exception as exc:  # damaged data surfaces only while reading
        raise CodePackageError(f"code package is not a valid zip archive: {exc}") from exc


def bundle_digest(package_digest: str, layers: Sequence[str]) -> str:
    """The name of the directory a code package with dependency zips ``layers`` (digests, in
    order) runs from. Code digests are 128 hex digits computed by the service; the prefix
    keeps a bundle's name from ever being one, whatever bytes a client uploads."""
    text = "\n".join([package_digest, *layers])
    return "bundle-" + hashlib.blake2b(text.encode(), digest_size=32).hexdigest()


def merge_trees(sources: list[Path], dest: Path) -> None:
    """Lay ``sources`` (unpacked directories) over each other into ``dest``, in order: a later
    source's file replaces an earlier one's at the same path (a dependency wins over the
    code). Files are hard links to the unpacked copies, which never change while they exist,
    so a dependency's files are on disk once however many functions use it; a copy is made
    where a link cannot be."""
    for source in sources:
        for directory, subdirs, files in os.walk(source):
            relative = Path(directory).relative_to(source)
            target_dir = dest / relative
            for name in subdirs:
                _make_directory(target_dir / name)
            for name in files:
                target = target_dir / name
                _clear(target)
                try:
                    os.link(Path(directory) / name, target, follow_symlinks=False)
                except OSError:
                    shutil.copy2(Path(directory) / name, target, follow_symlinks=False)


def _make_directory(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        return
    _clear(path)
    path.mkdir()


def _clear(path: Path) -> None:
    """Remove what is at ``path`` (a file, or a directory a later source has a file for)."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)
