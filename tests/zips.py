"""Hostile and odd zip archives, shared by the API and runtime tests of code packages.

Each archive also holds a working ``index.py`` (``handler`` returns "ok"), so one the service
accepts can be invoked. ``refused`` says what the service must do with it at create.
"""

from __future__ import annotations

import base64
import functools
import io
import struct
import warnings
import zipfile
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from openfgs.runtime.code import MAX_ENTRIES, MAX_UNPACKED_BYTES

HANDLER = "def handler(event, context):\n    return 'ok'\n"


@dataclass(frozen=True)
class ZipCase:
    data: bytes
    refused: bool


def zip_with(*entries: tuple[str | zipfile.ZipInfo, bytes | str], index: str = HANDLER) -> bytes:
    """A zip of ``index.py`` plus ``entries`` (name or ZipInfo → content), in that order."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("index.py", index)
        for name, content in entries:
            archive.writestr(name, content)
    return buffer.getvalue()


def package_b64(files: Mapping[str, bytes | str], executable: Collection[str] | None = None) -> str:
    """A code package as the API takes it (a base64 zip): ``files`` by name, mode 755 for the
    ``executable`` ones (every file when None), 644 for the others."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in files.items():
            info = zipfile.ZipInfo(name)
            runnable = executable is None or name in executable
            info.external_attr = (0o100755 if runnable else 0o100644) << 16
            archive.writestr(info, content)
    return base64.b64encode(buffer.getvalue()).decode()


def patch_central(data: bytes, name: str, offset: int, fmt: str, value: int) -> bytes:
    """Overwrite one field of ``name``'s central directory header (offset from its start)."""
    raw = bytearray(data)
    position = raw.find(b"PK\x01\x02")
    while position >= 0:
        name_length = struct.unpack_from("<H", raw, position + 28)[0]
        if raw[position + 46 : position + 46 + name_length] == name.encode():
            struct.pack_into(fmt, raw, position + offset, value)
            return bytes(raw)
        position = raw.find(b"PK\x01\x02", position + 4)
    raise AssertionError(f"no central directory header for {name!r}")


def entry_info(name: str, mode: int, compress_type: int = zipfile.ZIP_DEFLATED) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = mode << 16
    info.compress_type = compress_type
    return info


def corrupted(data: bytes, name: str) -> bytes:
    """``data`` with a byte of ``name``'s compressed content changed."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        info = archive.getinfo(name)
    start = info.header_offset + 30 + len(name.encode()) + len(info.extra)
    raw = bytearray(data)
    raw[start + info.compress_size // 2] ^= 0xFF
    return bytes(raw)


@functools.cache
def zip_cases() -> dict[str, ZipCase]:
    """Every case by name. Built once: a few of them take a moment."""
    lying = zip_with((entry_info("data.bin", 0o100644, zipfile.ZIP_STORED), b"x" * 1000))
    declared_huge = zip_with((entry_info("big.bin", 0o100644, zipfile.ZIP_STORED), b"x"))
    many = io.BytesIO()
    with zipfile.ZipFile(many, "w") as archive:
        archive.writestr("index.py", HANDLER)
        for n in range(MAX_ENTRIES):
            archive.writestr(f"f/{n}", "")
    dup = io.BytesIO()
    with zipfile.ZipFile(dup, "w") as archive, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns of the duplicate it writes
        archive.writestr("index.py", HANDLER)
        archive.writestr("index.py", "raise SystemExit('the second copy')\n")
    unknown = zip_with((entry_info("data.bin", 0o100644, zipfile.ZIP_STORED), b"x"))
    return {
        # Refused at create, with 400 FSS.1011.
        "absolute path": ZipCase(zip_with(("/tmp/evil.py", "x = 1\n")), True),
        "parent": ZipCase(zip_with(("../evil.py", "x = 1\n")), True),
        "nested parent": ZipCase(zip_with(("pkg/../../evil.py", "x = 1\n")), True),
        "drive letter": ZipCase(zip_with(("C:/x.txt", "x")), True),
        "drive letter, backslash": ZipCase(zip_with(("C:\\x.txt", "x")), True),
        "backslash": ZipCase(zip_with(("..\\evil.py", "x = 1\n")), True),
        "control character": ZipCase(zip_with(("a\nb.py", "x = 1\n")), True),
        "dot as a file": ZipCase(zip_with((".", "x")), True),
        "too long a name": ZipCase(zip_with(("x" * 256, "x")), True),
        "symlink": ZipCase(zip_with((entry_info("link", 0o120777), "/etc/passwd")), True),
        "fifo": ZipCase(zip_with((entry_info("pipe", 0o010644), "")), True),
        "duplicate name": ZipCase(dup.getvalue(), True),
        "file and directory": ZipCase(zip_with(("pkg", "x"), ("pkg/mod.py", "x = 1\n")), True),
        "too many entries": ZipCase(many.getvalue(), True),
        "declares over the unpack bound": ZipCase(
            patch_central(declared_huge, "big.bin", 24, "<I", MAX_UNPACKED_BYTES + 1), True
        ),
        "declares less than it holds": ZipCase(
            patch_central(lying, "data.bin", 24, "<I", 10), True
        ),
        "damaged data": ZipCase(
            corrupted(zip_with(("data.txt", "some text " * 1000)), "data.txt"), True
        ),
        "encrypted": ZipCase(patch_central(unknown, "data.bin", 8, "<H", 0x1), True),
        "unknown compression": ZipCase(patch_central(unknown, "data.bin", 10, "<H", 99), True),
        "not a zip": ZipCase(b"definitely not a zip archive", True),
        # Accepted, and they run.
        "dot directory": ZipCase(zip_with(("./", ""), ("./lib/util.py", "x = 1\n")), False),
        "empty components": ZipCase(zip_with(("lib//util.py", "x = 1\n")), False),
        "colon below the top": ZipCase(zip_with(("data/C:x.txt", "x")), False),
        "directory twice": ZipCase(zip_with(("pkg/", ""), ("pkg//", "")), False),
        "executable": ZipCase(zip_with((entry_info("tool.sh", 0o100755), "#!/bin/sh\n")), False),
        "compresses well": ZipCase(zip_with(("zeros.bin", bytes(4 << 20))), False),
    }
