"""Dependencies: named zip packages with numbered, immutable versions that functions list.

``CreateDependencyVersion`` makes a dependency (version 1) or adds the next version to the
project's dependency of that name. A function lists dependency *version ids*
(``depend_version_list``); the runtime merges their zips over its code in that order, so a
dependency's file wins over the code's at the same path. A version's zip is stored as a code
package (by digest), counts toward the project's code quota, and goes with the version.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import re
import uuid
from collections.abc import Sequence

from openfgs.errors import ApiError, BadRequest, Conflict, Forbidden, NotFound, PayloadTooLarge
from openfgs.models import DependencyVersion, Function, now_ms
from openfgs.runtime.code import DEPENDENCY_MAX_ENTRIES, CodePackageError, check_zip
from openfgs.runtime.families import family_of, supported_runtimes
from openfgs.schemas import CreateDependencyBody
from openfgs.settings import Settings
from openfgs.store.base import Store

log = logging.getLogger("openfgs")

# The SDK's documented limit for an inline (base64) dependency zip; the console's is 10 MB.
DEPENDENCY_ZIP_LIMIT = 40 * 1024 * 1024
MAX_PER_FUNCTION = 20
DESCRIPTION_LIMIT = 512
ID_LIMIT = 64
_NAME = re.compile(r"[A-Za-z](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9])?")


class DependencyInUse(ApiError):
    """A dependency version some function lists cannot be deleted."""

    status = 412
    error_code = "FSS.1033"
    default_message = "dependency is currently in use"


def invalid(message: str) -> BadRequest:
    return BadRequest(message, error_code="FSS.1024")


def not_found(message: str) -> NotFound:
    return NotFound(message, error_code="FSS.1056")


def too_many(message: str) -> Forbidden:
    return Forbidden(message, error_code="FSS.1045")


def storable(text: str) -> bool:
    """Text every store can keep and compare (PostgreSQL refuses NUL in text)."""
    return "\x00" not in text


def possible_id(text: str) -> bool:
    """Whether ``text`` could be an id openfgs made; others are not looked up at all."""
    return len(text) <= ID_LIMIT and storable(text)


def check_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise invalid(
            f"Invalid dependency name {name[:100]!r}: 1 to 96 letters, digits, '_', '.' or '-', "
            "starting with a letter and ending with a letter or a digit"
        )


def decode_dependency_zip(text: str | None) -> bytes:
    """The zip of ``depend_file`` (base64), checked as the runtime will unpack it."""
    if not text:
        raise invalid("Invalid dependency: depend_file (the zip, base64) is required")
    limit = DEPENDENCY_ZIP_LIMIT
    if len(text) > (limit + 2) // 3 * 4:
        raise _too_large()
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise invalid("Invalid dependency: depend_file is not base64") from None
    if len(data) > limit:
        raise _too_large()
    try:
        entries = check_zip(data, verify=True, max_entries=DEPENDENCY_MAX_ENTRIES)
    except CodePackageError as exc:
        raise invalid(f"Invalid dependency zip: {exc}") from None
    for entry in entries:
        if entry.info.filename.rstrip("/").endswith("~"):
            raise invalid(f"Invalid dependency zip: {entry.info.filename[:128]!r} ends with '~'")
    return data


def _too_large() -> PayloadTooLarge:
    return PayloadTooLarge(
        f"The dependency zip is larger than {DEPENDENCY_ZIP_LIMIT // (1024 * 1024)} MB",
        error_code="FSS.0413",
    )


class DependencyService:
    """Dependency versions of every project, and what functions need of them.

    ``code_quota_bytes`` bounds a project's code packages and dependency zips together
    (FSS.1042); ``max_versions`` the versions of all its dependencies (FSS.1045).
    """

    def __init__(
        self,
        store: Store,
        *,
        code_quota_bytes: int,
        max_versions: int = Settings.max_dependency_versions_per_project,
    ) -> None:
        self._store = store
        self._code_quota_bytes = code_quota_bytes
        self._max_versions = max_versions
        # Zip digests by version id: versions never change, so what is known stays true.
        self._digests: dict[str, str] = {}

    async def create(self, project_id: str, body: CreateDependencyBody) -> DependencyVersion:
        """The next version of the dependency ``body.name`` (version 1 of a new one)."""
        if body.depend_type == "obs":
            raise invalid(
                "Invalid dependency: depend_type obs (an OBS link) is not supported by "
                "openfgs; send the zip inline with depend_type zip and depend_file"
            )
        if body.depend_type != "zip":
            raise BadRequest(
                f"Invalid depend_type {body.depend_type[:32]!r}: use zip", error_code="FSS.1032"
            )
        check_name(body.name)
        family = family_of(body.runtime)
        if family is None or not family.dependencies:
            raise invalid(
                f"Invalid runtime {body.runtime[:64]!r}: dependencies are for "
                f"{supported_runtimes()} (not Custom)"
            )
        description = body.description or ""
        if len(description) > DESCRIPTION_LIMIT:
            raise invalid(f"Invalid description: longer than {DESCRIPTION_LIMIT} characters")
        if not storable(description):
            raise invalid("Invalid description: it contains a NUL character")
        data = await asyncio.to_thread(decode_dependency_zip, body.depend_file)
        digest = hashlib.sha512(data).hexdigest()
        await self._check_room(project_id, len(data))
        latest = await self._store.latest_dependency_version(project_id, body.name)
        if latest is not None and (latest.digest, latest.runtime) == (digest, body.runtime):
            raise Conflict(
                f"Dependency {body.name} version {latest.version} already has this zip and runtime",
                error_code="FSS.1065",
            )
        version = DependencyVersion(
            id=str(uuid.uuid4()),
            dep_id=str(uuid.uuid4()),  # used when the name is new
            project_id=project_id,
            name=body.name,
            version=0,
            runtime=body.runtime,
            description=description,
            file_name=f"{body.name}.zip",
            digest=digest,
            etag=hashlib.md5(data, usedforsecurity=False).hexdigest(),
            size=len(data),
            created_at=now_ms(),
        )
        stored = await self._store.insert_dependency_version(version, data)
        self._digests[stored.id] = stored.digest
        return stored

    async def _check_room(self, project_id: str, added: int) -> None:
        if await self._store.count_dependency_versions(project_id) >= self._max_versions:
            raise too_many(f"Too many dependency versions: a project may keep {self._max_versions}")
        total = await self.project_code_bytes(project_id)
        if total + added > self._code_quota_bytes:
            raise Forbidden(
                f"Total code size exceeded: the project's code would take {total + added} "
                f"bytes, over its quota of {self._code_quota_bytes}",
                error_code="FSS.1042",
            )

    async def project_code_bytes(self, project_id: str) -> int:
        """What counts toward the project's code quota: function code and dependency zips."""
        functions = await self._store.total_code_size(project_id)
        return functions + await self._store.total_dependency_size(project_id)

    async def list_latest(
        self,
        project_id: str,
        *,
        name: str | None,
        runtime: str | None,
        dependency_type: str | None,
        offset: int,
        limit: int,
    ) -> tuple[list[DependencyVersion], int]:
        """The latest version of each dependency (name: a part of it); ``public`` ones: none,
        as openfgs keeps no public dependencies."""
        kind = dependency_type or "all"
        if kind not in ("all", "private", "public"):
            raise invalid(f"Invalid dependency_type {kind[:32]!r}: use public, private or all")
        if not all(storable(text) for text in (name or "", runtime or "")):
            raise invalid("Invalid query parameter: name and runtime cannot contain NUL")
        if kind == "public":
            return [], 0
        return await self._store.list_dependencies(project_id, name, runtime, offset, limit)

    async def list_versions(
        self, project_id: str, dep_id: str, offset: int, limit: int
    ) -> tuple[list[DependencyVersion], int]:
        page: tuple[list[DependencyVersion], int] = ([], 0)
        if possible_id(dep_id):
            page = await self._store.list_dependency_versions(project_id, dep_id, offset, limit)
        versions, count = page
        if count == 0:  # a dependency has a version for as long as it exists
            raise not_found(f"The dependency does not exist: {dep_id[:ID_LIMIT]}")
        return versions, count

    async def show(self, project_id: str, dep_id: str, version: int) -> DependencyVersion:
        found = None
        if possible_id(dep_id):
            found = await self._store.get_dependency_version(project_id, dep_id, version)
        if found is None:
            raise not_found(
                f"The dependency version does not exist: {dep_id[:ID_LIMIT]} version {version}"
            )
        return found

    async def delete(self, project_id: str, dep_id: str, version: int) -> None:
        """Delete a version nothing lists (412 FSS.1033 otherwise); the last one takes its
        dependency with it."""
        found = await self.show(project_id, dep_id, version)
        if not await self._store.delete_dependency_version(found):
            raise DependencyInUse(
                f"dependency is currently in use: {found.name} version {found.version} is "
                "listed by a function"
            )

    async def attachable(
        self, project_id: str, ids: Sequence[str], runtime: str
    ) -> tuple[str, ...]:
        """``ids`` as a function of ``runtime`` may list them (checked), in order."""
        if len(ids) > MAX_PER_FUNCTION:
            raise too_many(
                f"Too many dependencies: a function may list {MAX_PER_FUNCTION}, not {len(ids)}"
            )
        if len(set(ids)) != len(ids):
            raise invalid("Invalid depend_version_list: a version is listed twice")
        family = family_of(runtime)
        if ids and (family is None or not family.dependencies):
            raise invalid(f"Invalid depend_version_list: {runtime} functions take no dependencies")
        found = await self.versions(project_id, ids)
        for version_id in ids:
            version = found.get(version_id)
            if version is None:
                raise not_found(f"The dependency version does not exist: {version_id[:ID_LIMIT]}")
            if version.runtime != runtime:
                raise invalid(
                    f"Invalid dependency {version.name} version {version.version}: its runtime "
                    f"{version.runtime} is not the function's ({runtime})"
                )
        return tuple(ids)

    async def versions(self, project_id: str, ids: Sequence[str]) -> dict[str, DependencyVersion]:
        """The versions of ``project_id`` among ``ids``, by id (others are left out)."""
        wanted = [i for i in dict.fromkeys(ids) if possible_id(i)]
        found = await self._store.get_dependency_versions(project_id, wanted)
        for version in found:
            self._digests[version.id] = version.digest
        return {version.id: version for version in found}

    async def of_function(self, function: Function) -> list[DependencyVersion]:
        """The versions ``function`` lists, in its order."""
        if not function.depend_versions:
            return []
        found = await self.versions(function.project_id, function.depend_versions)
        return [found[i] for i in function.depend_versions if i in found]

    async def remember(self, function: Function) -> None:
        """Learn the zip digests of ``function``'s dependencies, for :meth:`layers`."""
        if any(i not in self._digests for i in function.depend_versions):
            await self.versions(function.project_id, function.depend_versions)

    def layers(self, function: Function) -> tuple[str, ...]:
        """The zip digests of ``function``'s dependencies, in order (after :meth:`remember`);
        a version no longer stored is left out."""
        missing = [i for i in function.depend_versions if i not in self._digests]
        if missing:
            log.warning("function %s lists unknown dependency versions %s", function.id, missing)
        return tuple(self._digests[i] for i in function.depend_versions if i in self._digests)
