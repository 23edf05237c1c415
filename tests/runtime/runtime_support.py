"""Helpers for runtime tests: defining functions, zip packages, processes seen in /proc."""

from __future__ import annotations

import hashlib
import io
import textwrap
import zipfile
from dataclasses import dataclass
from typing import Any

from openfgs.runtime import FunctionSpec


@dataclass(frozen=True)
class Function:
    """A spec and its code package, with a loader that counts calls."""

    spec: FunctionSpec
    package: bytes
    loads: list[int]

    async def load(self) -> bytes:
        self.loads.append(1)
        return self.package


def make_function(
    source: str | bytes, *, code_type: str = "inline", name: str = "fn", **fields: Any
) -> Function:
    """A function whose code is ``source`` (inline text, or zip bytes with code_type="zip")."""
    package = source if isinstance(source, bytes) else textwrap.dedent(source).encode()
    values: dict[str, Any] = {
        "urn": f"urn:fss:cn-north-4:proj1:function:default:{name}:latest",
        "project_id": "proj1",
        "package": "default",
        "name": name,
        "version": "latest",
        "runtime": "Python3.9",
        "handler": "index.handler",
        "code_type": code_type,
        "code_digest": hashlib.sha512(package).hexdigest(),
        "memory_size": 128,
        "timeout": 10,
    }
    values.update(fields)
    return Function(FunctionSpec(**values), package, [])


def zip_package(files: dict[str, str]) -> bytes:
    """A zip archive of ``files`` (name → source text)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, textwrap.dedent(text))
    return buffer.getvalue()


def pid_alive(pid: int) -> bool:
    """Whether a process with this id still exists, not counting zombies (instances are reaped
    by asyncio or by the template)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1][0] != "Z"
    except (FileNotFoundError, ProcessLookupError):  # gone before, or while, reading
        return False


def children_of(pid: int) -> list[int]:
    """The process ids of ``pid``'s children, as the service sees them (an instance sees its own
    processes under other numbers: it has a PID namespace of its own)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as children:
            return [int(child) for child in children.read().split()]
    except FileNotFoundError:
        return []
