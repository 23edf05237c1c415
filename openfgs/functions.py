"""The function registry: create, read, update and delete functions and their code packages."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import random
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from openfgs.cache import TtlCache
from openfgs.dependencies import DependencyService, not_found
from openfgs.errors import (
    BadRequest,
    Conflict,
    ConflictError,
    Forbidden,
    NotFound,
    PayloadTooLarge,
)
from openfgs.models import (
    LATEST,
    Function,
    Urn,
    now_ms,
    valid_function_name,
    valid_package_name,
)
from openfgs.runtime.code import CodePackageError, bundle_digest, check_zip
from openfgs.runtime.environment import env_name_problem
from openfgs.runtime.families import (
    RuntimeFamily,
    code_dir_name,
    family_of,
    inline_code_dirs,
    supported_runtimes,
)
from openfgs.runtime.types import FunctionSpec
from openfgs.schemas import (
    MEMORY_SIZES,
    AliasBody,
    CreateFunctionBody,
    FuncCode,
    StrategyConfig,
    UpdateFunctionCodeBody,
    UpdateFunctionConfigBody,
)
from openfgs.store.base import DependencyGone, Store
from openfgs.tags import MAX_TAGS, check_keys, check_tags, parse_tags_text

INLINE_LIMIT = 10 * 1024
ZIP_LIMIT = 50 * 1024 * 1024
USER_DATA_LIMIT = 4096
USER_DATA_KEYS = 20
DEFAULT_CONCURRENCY = 400
# FunctionGraph's quota on the total code size of an account (FSS.1042).
DEFAULT_CODE_QUOTA = 20 * 1024**3
# FunctionGraph's quota on the functions of an account (FSS.1041).
DEFAULT_FUNCTION_QUOTA = 400
MAX_INSTANCES = 1000  # strategy_config.concurrency and max_instance_num: -1, 0 or 1..1000
CACHE_ENTRIES = 10_000  # functions remembered by name and by id, each
VERSION_LIMIT = 20  # versions of a function, its latest included (FunctionGraph's quota)
ALIAS_LIMIT = 10  # aliases of a function
_VERSION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,41}")
_ALIAS_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,62}")
# What makes a version differ from the one published before it (FSS.1016 when nothing does).
PUBLISHED_FIELDS = (
    "runtime",
    "handler",
    "memory_size",
    "timeout",
    "code_type",
    "code_digest",
    "user_data",
    "initializer_handler",
    "initializer_timeout",
    "concurrency",
    "concurrent_num",
    "depend_versions",
)
DEFAULT_CODE = b"""# -*- coding:utf-8 -*-
import json


def handler(event, context):
    return {
        "statusCode": 200,
        "isBase64Encoded": False,
        "body": json.dumps(event),
        "headers": {"Content-Type": "application/json"},
    }
"""
DEFAULT_NODE_CODE = b"""exports.handler = async (event, context) => {
  return {
    statusCode: 200,
    isBase64Encoded: false,
    body: JSON.stringify(event),
    headers: { "Content-Type": "application/json" },
  };
};
"""
# What a function created without code runs, per family; custom runtimes and HTTP functions
# have no default (their bootstrap is the user's).
DEFAULT_CODE_OF = {"python": DEFAULT_CODE, "nodejs": DEFAULT_NODE_CODE}


def _bad(code: str, message: str) -> BadRequest:
    return BadRequest(message, error_code=code)


def check_runtime(runtime: str) -> RuntimeFamily:
    """The family that runs ``runtime``, or 400 FSS.1005."""
    family = family_of(runtime)
    if family is None:
        raise _bad(
            "FSS.1005", f"Invalid runtime: {runtime[:64]!r}; openfgs runs {supported_runtimes()}"
        )
    return family


def check_handler(
    handler: str, family: RuntimeFamily, code: str = "FSS.1003", field: str = "handler"
) -> None:
    if not family.handler_ok(handler):
        raise _bad(code, f"Invalid {field}: {handler[:128]!r}; {family.handler_hint}")


def check_memory(memory_size: int) -> None:
    if memory_size not in MEMORY_SIZES:
        raise _bad("FSS.1007", f"Invalid function memory: {memory_size}")


def parse_user_data(text: str | None) -> dict[str, str]:
    """``user_data`` is a JSON-encoded object of string values (environment variables).

    Names are checked when ``user_data`` is set (:func:`check_user_data`), not here: this also
    reads what was stored before, which must still run.
    """
    if not text:
        return {}
    if len(text) > USER_DATA_LIMIT:
        raise _bad("FSS.1018", f"Invalid function UserData: larger than {USER_DATA_LIMIT} bytes")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise _bad("FSS.1009", "Invalid function UserData: not a JSON object") from None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise _bad("FSS.1009", "Invalid function UserData: expected a JSON object of strings")
    if len(data) > USER_DATA_KEYS:
        raise _bad("FSS.1017", f"Invalid function UserData: more than {USER_DATA_KEYS} items")
    return data


def check_user_data(text: str | None) -> None:
    """``user_data`` as create and update accept it: valid, and no variable the runtime owns."""
    for name in parse_user_data(text):
        problem = env_name_problem(name)
        if problem is not None:
            raise _bad("FSS.1009", f"Invalid function UserData: {name[:64]!r} {problem}")


def check_initializer(handler: str | None, timeout: int | None, runtime: str) -> None:
    if handler:
        check_handler(handler, check_runtime(runtime), "FSS.1404", "initializer_handler")
    if timeout is not None and not 1 <= timeout <= 300:
        raise _bad("FSS.1405", f"Invalid initializer_timeout: {timeout}; expected 1 to 300")


def decode_code(
    code_type: str | None, func_code: FuncCode | None, runtime: str
) -> tuple[str, bytes]:
    """Return the stored code type and package bytes; an empty inline file means default code
    (for the families that have one)."""
    kind = code_type or "inline"
    if kind not in ("inline", "zip"):
        raise _bad("FSS.1006", f"Invalid function code entry mode: {kind!r}; use inline or zip")
    text = (func_code.file if func_code else None) or ""
    if not text:
        default = DEFAULT_CODE_OF.get(check_runtime(runtime).name)
        if kind == "zip" or default is None:
            raise _bad("FSS.1012", "The function code must be configured: func_code.file")
        return kind, default
    limit = INLINE_LIMIT if kind == "inline" else ZIP_LIMIT
    if len(text) > limit * 4 // 3 + 4:
        raise _too_large(kind, limit)
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise _bad("FSS.1011", "Invalid function code: func_code.file is not base64") from None
    if len(data) > limit:
        raise _too_large(kind, limit)
    if kind == "zip":
        try:
            # The same check the runtime makes before it unpacks, with every entry read once:
            # what is accepted here unpacks at invoke time.
            check_zip(data, verify=True)
        except CodePackageError as exc:
            raise _bad("FSS.1011", f"Invalid function code: {exc}") from None
    return kind, data


def _too_large(kind: str, limit: int) -> PayloadTooLarge:
    code = "FSS.1072" if kind == "inline" else "FSS.1071"
    return PayloadTooLarge(f"The {kind} code is larger than {limit // 1024} KB", error_code=code)


def _check_mutable(function: Function) -> None:
    if not function.is_latest:
        raise _bad(
            "FSS.1015",
            f"Invalid function version: {function.qualifier} is published and cannot change; "
            "update latest and publish a new version",
        )


def _concurrency(config: StrategyConfig | None, current: Function | None) -> tuple[int, int]:
    concurrency = current.concurrency if current else DEFAULT_CONCURRENCY
    concurrent_num = current.concurrent_num if current else 1
    if config is not None:
        if config.concurrency is not None:
            if config.concurrency < -1:
                raise _bad("FSS.1026", "Invalid Concurrency")
            concurrency = DEFAULT_CONCURRENCY if config.concurrency == -1 else config.concurrency
        if config.concurrent_num is not None:
            concurrent_num = config.concurrent_num
    return concurrency, concurrent_num


class FunctionRegistry:
    """Functions of every project, with a small per-process cache for the invoke path.

    ``code_quota_bytes`` bounds the summed ``code_size`` of a project's functions.
    ``release_hooks`` are awaited with a code digest after a function stopped using it
    (deleted, or its code replaced); the runtime removes unpacked code through them.
    """

    def __init__(
        self,
        store: Store,
        region: str,
        cache_seconds: float = 2.0,
        *,
        code_quota_bytes: int = DEFAULT_CODE_QUOTA,
        function_quota: int = DEFAULT_FUNCTION_QUOTA,
        dependencies: DependencyService | None = None,
    ) -> None:
        self._store = store
        self.dependencies = dependencies or DependencyService(
            store, code_quota_bytes=code_quota_bytes
        )
        self.region = region
        self._cache_seconds = cache_seconds
        self._code_quota_bytes = code_quota_bytes
        self.function_quota = function_quota
        # Misses are remembered too, so URNs a caller makes up are bounded like the rest.
        self._cache: TtlCache[tuple[str, str, str, str], Function | None] = TtlCache(CACHE_ENTRIES)
        self._by_id: TtlCache[int, Function | None] = TtlCache(CACHE_ENTRIES)
        self._rows: TtlCache[tuple[str, str, str], tuple[Function, ...]] = TtlCache(CACHE_ENTRIES)
        self.release_hooks: list[Callable[[str], Awaitable[Any]]] = []

    def _forget(self, *functions: Function) -> None:
        """Drop what is remembered of these rows, and of the set of rows of their function."""
        for function in functions:
            family = (function.project_id, function.package, function.name)
            self._cache.pop((*family, function.qualifier))
            self._rows.pop(family)
            self._by_id.pop(function.id)

    async def create(self, project_id: str, body: CreateFunctionBody) -> Function:
        if not valid_function_name(body.func_name):
            raise _bad("FSS.1002", f"Invalid function name: {body.func_name!r}")
        if not valid_package_name(body.package):
            raise _bad("FSS.1004", f"Invalid package: {body.package!r}")
        self._check_config(body.runtime, body.handler, body.memory_size, body.user_data)
        check_initializer(body.initializer_handler, body.initializer_timeout, body.runtime)
        concurrency, concurrent_num = _concurrency(body.strategy_config, None)
        tags = parse_tags_text(body.tags)
        await self._check_function_quota(project_id)
        depend_versions = await self.dependencies.attachable(
            project_id, body.depend_version_list or [], body.runtime
        )
        # Decoding and reading a package through takes a while for 50 MB: not on the loop.
        code_type, code = await asyncio.to_thread(
            decode_code, body.code_type, body.func_code, body.runtime
        )
        await self._check_quota(project_id, len(code))
        now = now_ms()
        function = Function(
            id=0,
            project_id=project_id,
            package=body.package,
            name=body.func_name,
            func_id=str(uuid.uuid4()),
            runtime=body.runtime,
            handler=body.handler,
            memory_size=body.memory_size,
            timeout=body.timeout,
            code_type=code_type,
            code_digest=hashlib.sha512(code).hexdigest(),
            code_size=len(code),
            code_filename=body.code_filename if code_type == "zip" else None,
            user_data=body.user_data or "",
            description=body.description or "",
            initializer_handler=body.initializer_handler or None,
            initializer_timeout=body.initializer_timeout,
            concurrency=concurrency,
            concurrent_num=concurrent_num,
            created_at=now,
            last_modified=now,
            depend_versions=depend_versions,
        )
        try:
            created = await self._store.insert_function(function, code)
        except ConflictError:
            raise Conflict(
                f"The function already exists: {body.func_name}", error_code="FSS.1061"
            ) from None
        except DependencyGone as exc:
            raise not_found(f"The dependency version does not exist: {exc}") from None
        self._forget(created)
        if tags:
            await self._store.put_function_tags(created.id, tags, MAX_TAGS)
        return created

    @staticmethod
    def _check_config(runtime: str, handler: str, memory: int, user_data: str | None) -> None:
        check_handler(handler, check_runtime(runtime))
        check_memory(memory)
        check_user_data(user_data)

    async def _check_function_quota(self, project_id: str) -> None:
        count = await self._store.count_functions(project_id)
        if count >= self.function_quota:
            raise Forbidden(
                f"Function count limit exceeded: the project has {count} functions, its "
                f"quota is {self.function_quota}",
                error_code="FSS.1041",
            )

    async def _check_quota(self, project_id: str, added: int) -> None:
        """Refuse code that would take the project's total code size over the quota."""
        if added <= 0:
            return
        total = await self.dependencies.project_code_bytes(project_id)
        if total + added > self._code_quota_bytes:
            raise Forbidden(
                f"Total code size exceeded: the project's code would take {total + added} "
                f"bytes, over its quota of {self._code_quota_bytes}",
                error_code="FSS.1042",
            )

    async def resolve(
        self, project_id: str, urn_text: str, *, missing_code: str = "FSS.0404"
    ) -> Function:
        """The row a path URN names: the latest (unqualified or ``:latest``), a version
        (``:v1``) or an alias (``:!name``); NotFound otherwise."""
        urn = Urn.parse(urn_text)
        if urn.project_id != project_id:
            raise NotFound(f"can not find function: {urn_text}", error_code=missing_code)
        qualifier = urn.qualifier or LATEST
        function = await self._lookup(project_id, urn.package, urn.name, qualifier)
        if function is not None:
            return function
        if qualifier != LATEST and await self._lookup(project_id, urn.package, urn.name, LATEST):
            if qualifier.startswith("!"):
                raise NotFound(f"The alias does not exist: {qualifier[1:]}", error_code="FSS.1053")
            raise NotFound(f"The version does not exist: {qualifier}", error_code="FSS.1052")
        raise NotFound(f"can not find function: {urn_text}", error_code=missing_code)

    async def resolve_all(
        self, project_id: str, urn_text: str, *, missing_code: str = "FSS.0404"
    ) -> list[Function]:
        """The rows whose records a URN covers: an unqualified URN the function's latest,
        versions and aliases; a qualified one its own row."""
        function = await self.resolve(project_id, urn_text, missing_code=missing_code)
        if Urn.parse(urn_text).qualifier is not None:
            return [function]
        return await self.qualifiers(function)

    async def _lookup(
        self, project_id: str, package: str, name: str, qualifier: str
    ) -> Function | None:
        key = (project_id, package, name, qualifier)
        cached = self._cache.lookup(key)
        if cached is not None:
            return cached.value
        function = await self._store.get_function(*key)
        if function is not None:
            await self.dependencies.remember(function)
        self._cache.put(key, function, self._cache_seconds)
        return function

    async def qualifiers(self, function: Function, *, fresh: bool = False) -> list[Function]:
        """The function's rows: its latest, then versions and aliases in the order made
        (remembered like the rows themselves: a list on an unqualified URN asks for them;
        ``fresh`` for a change that must see every row, whichever node made it)."""
        family = (function.project_id, function.package, function.name)
        cached = None if fresh else self._rows.lookup(family)
        if cached is not None:
            return list(cached.value)
        rows = await self._store.list_function_qualifiers(*family)
        self._rows.put(family, tuple(rows), self._cache_seconds)
        return rows

    async def latest(self, function: Function) -> Function:
        """The latest row of ``function`` (any of its rows)."""
        if function.is_latest:
            return function
        found = await self._lookup(function.project_id, function.package, function.name, LATEST)
        if found is None:
            raise NotFound(f"can not find function: {function.name}", error_code="FSS.1051")
        return found

    @staticmethod
    def pick_version(function: Function) -> str:
        """The version an invocation of ``function`` runs: an alias's version, or the other
        version its ``additional_version_weights`` names for that share of invocations."""
        for other, percent in function.weights.items():
            if random.random() * 100 < percent:
                return other
        return function.version

    async def version_row(self, function: Function, version: str) -> Function:
        """The row of ``version`` of ``function``'s function (``function`` itself when it is
        that version)."""
        if function.alias is None and function.version == version:
            return function
        found = await self._lookup(function.project_id, function.package, function.name, version)
        if found is None:
            raise NotFound(f"The version does not exist: {version}", error_code="FSS.1052")
        return found

    async def runnable(self, function: Function) -> Function:
        """The version row an invocation of ``function`` runs now (an alias picks one)."""
        return await self.version_row(function, self.pick_version(function))

    async def get_by_id(self, function_id: int) -> Function | None:
        cached = self._by_id.lookup(function_id)
        if cached is not None:
            return cached.value
        function = await self._store.get_function_by_id(function_id)
        if function is not None:
            await self.dependencies.remember(function)
        self._by_id.put(function_id, function, self._cache_seconds)
        return function

    async def list_functions(
        self, project_id: str, package: str | None, name: str | None, marker: int, limit: int
    ) -> tuple[list[Function], int]:
        return await self._store.list_functions(project_id, package, name, marker, limit)

    async def update_config(self, function: Function, body: UpdateFunctionConfigBody) -> Function:
        _check_mutable(function)
        if body.func_name != function.name:
            raise _bad(
                "FSS.1002", f"Invalid function name: {body.func_name!r} is not this function"
            )
        self._check_config(body.runtime, body.handler, body.memory_size, body.user_data)
        check_initializer(body.initializer_handler, body.initializer_timeout, body.runtime)
        concurrency, concurrent_num = _concurrency(body.strategy_config, function)
        if body.runtime != function.runtime:  # what the function lists must still fit
            await self.dependencies.attachable(
                function.project_id, function.depend_versions, body.runtime
            )
        updated = replace(
            function,
            runtime=body.runtime,
            handler=body.handler,
            memory_size=body.memory_size,
            timeout=body.timeout,
            user_data=body.user_data if body.user_data is not None else function.user_data,
            description=body.description if body.description is not None else function.description,
            initializer_handler=body.initializer_handler or None,
            initializer_timeout=body.initializer_timeout,
            concurrency=concurrency,
            concurrent_num=concurrent_num,
            last_modified=now_ms(),
        )
        await self._write(updated, None)
        self._forget(function)
        return updated

    async def update_code(self, function: Function, body: UpdateFunctionCodeBody) -> Function:
        _check_mutable(function)
        depend_versions = function.depend_versions
        if body.depend_version_list is not None:  # the list replaces the previous one
            depend_versions = await self.dependencies.attachable(
                function.project_id, body.depend_version_list, function.runtime
            )
        code_type, code = await asyncio.to_thread(
            decode_code, body.code_type, body.func_code, function.runtime
        )
        await self._check_quota(function.project_id, len(code) - function.code_size)
        updated = replace(
            function,
            depend_versions=depend_versions,
            code_type=code_type,
            code_digest=hashlib.sha512(code).hexdigest(),
            code_size=len(code),
            code_filename=body.code_filename if code_type == "zip" else None,
            last_modified=now_ms(),
        )
        await self._write(updated, code)
        self._forget(function)
        if (updated.code_digest, updated.depend_versions) != (
            function.code_digest,
            function.depend_versions,
        ):
            await self._released(function.code_digest)
        return updated

    async def _write(self, function: Function, code: bytes | None) -> None:
        try:
            await self._store.update_function(function, code)
        except DependencyGone as exc:
            raise not_found(f"The dependency version does not exist: {exc}") from None

    async def delete(self, function: Function) -> None:
        """Delete a function with its versions and aliases (given its latest), or one version
        (refused while an alias routes to it), or one alias; records go with them."""
        if function.is_latest:
            rows = await self.qualifiers(function, fresh=True)
        elif function.alias is None:
            users = [
                row.alias
                for row in await self.qualifiers(function, fresh=True)
                if row.alias is not None
                and (row.version == function.version or function.version in row.weights)
            ]
            if users:
                raise Conflict(
                    f"Version {function.version} is used by alias {users[0]}",
                    error_code="FSS.1066",
                )
            rows = [function]
        else:
            rows = [function]
        await self._store.delete_function(*rows)
        self._forget(*rows)
        for digest in {row.code_digest for row in rows}:
            await self._released(digest)

    # -- versions ---------------------------------------------------------------------------

    async def publish(
        self, function: Function, version: str | None, description: str | None
    ) -> Function:
        """Publish ``function``'s latest as an immutable version: a snapshot of its code,
        config and async config."""
        latest = await self.latest(function)
        name = version or time.strftime("v%Y%m%d-%H%M%S", time.gmtime())
        if not _VERSION_NAME.fullmatch(name) or name.lower() == LATEST:
            raise _bad("FSS.1015", f"Invalid function version: {name[:64]!r}")
        rows = await self.qualifiers(latest, fresh=True)
        versions = [row for row in rows if row.alias is None and not row.is_latest]
        if any(row.qualifier == name for row in versions):
            raise Conflict(f"The version already exists: {name}", error_code="FSS.1062")
        if len(versions) + 1 >= VERSION_LIMIT:
            raise _bad(
                "FSS.1015",
                f"Invalid function version: a function has at most {VERSION_LIMIT} versions, "
                "latest included",
            )
        if versions and all(
            getattr(versions[-1], field) == getattr(latest, field) for field in PUBLISHED_FIELDS
        ):
            raise _bad("FSS.1016", "No changes since last publication")
        now = now_ms()
        config = await self._store.get_async_config(latest.id)
        snapshot = replace(
            latest,
            id=0,
            qualifier=name,
            version=name,
            version_description=description or "",
            created_at=now,
            last_modified=now,
        )
        snapshot_config = None if config is None else replace(config, last_modified=now)
        try:
            created = await self._store.insert_function(snapshot, None, snapshot_config)
        except ConflictError:
            raise Conflict(f"The version already exists: {name}", error_code="FSS.1062") from None
        self._forget(created)
        return created

    async def list_versions(
        self, function: Function, marker: int, limit: int
    ) -> tuple[list[Function], int]:
        """A page of the function's latest and published versions, in the order made."""
        rows = await self.qualifiers(await self.latest(function))
        versions = [row for row in rows if row.alias is None]
        return versions[marker : marker + limit], len(versions)

    # -- aliases ----------------------------------------------------------------------------

    async def aliases(self, function: Function, *, fresh: bool = False) -> list[Function]:
        rows = await self.qualifiers(await self.latest(function), fresh=fresh)
        return [row for row in rows if row.alias is not None]

    async def alias(self, function: Function, name: str) -> Function:
        latest = await self.latest(function)
        found = await self._lookup(latest.project_id, latest.package, latest.name, f"!{name}")
        if found is None:
            raise NotFound(f"The alias does not exist: {name[:64]}", error_code="FSS.1053")
        return found

    async def create_alias(self, function: Function, body: AliasBody) -> Function:
        latest = await self.latest(function)
        name = body.name or ""
        if not _ALIAS_NAME.fullmatch(name):
            raise _bad("FSS.1014", f"Invalid function alias: {name[:64]!r}")
        if len(await self.aliases(latest, fresh=True)) >= ALIAS_LIMIT:
            raise _bad(
                "FSS.1014", f"Invalid function alias: a function has at most {ALIAS_LIMIT} aliases"
            )
        now = now_ms()
        row = await self._alias_row(latest, body, replace(latest, created_at=now))
        try:
            created = await self._store.insert_function(replace(row, qualifier=f"!{name}"), None)
        except ConflictError:
            raise Conflict(f"The alias already exists: {name}", error_code="FSS.1063") from None
        self._forget(created)
        return created

    async def update_alias(self, alias: Function, body: AliasBody) -> Function:
        changed = body.model_copy(
            update={
                "version": body.version or alias.version,
                "description": alias.version_description
                if body.description is None
                else body.description,
                "additional_version_weights": alias.weights
                if body.additional_version_weights is None
                else body.additional_version_weights,
            }
        )
        row = await self._alias_row(alias, changed, alias)
        await self._store.update_function(row, None)
        self._forget(alias)
        return row

    async def _alias_row(self, function: Function, body: AliasBody, base: Function) -> Function:
        """An alias row routing as ``body`` says: a copy of its version's config (its
        concurrency is the alias's), keeping ``base``'s identity."""
        version = body.version or ""
        target = await self.version_row(function, version) if version else None
        if target is None or target.alias is not None:
            raise NotFound(f"The version does not exist: {version[:64]}", error_code="FSS.1052")
        weights = body.additional_version_weights or {}
        if len(weights) > 1:
            raise _bad("FSS.1014", "additional_version_weights names at most one other version")
        for other, percent in weights.items():
            if other == version or not 0 <= percent <= 100:
                raise _bad(
                    "FSS.1014",
                    f"Invalid additional_version_weights: {other[:64]!r}: {percent}; "
                    "another version and a percent from 0 to 100",
                )
            await self.version_row(function, other)
        return replace(
            target,
            id=base.id,
            qualifier=base.qualifier,
            version=version,
            version_description=body.description or "",
            alias_weights=json.dumps(weights) if weights else "",
            created_at=base.created_at,
            last_modified=now_ms(),
        )

    async def _released(self, digest: str) -> None:
        for hook in self.release_hooks:
            await hook(digest)

    async def referenced_digests(self) -> set[str]:
        """The code digests some function of any project uses: code packages, dependency
        zips and the bundles of the two."""
        digests = await self._store.referenced_code_digests()
        for digest in list(digests):  # inline code unpacks per runtime family
            digests.update(inline_code_dirs(digest))
        for package, layers in await self._store.function_dependency_digests():
            digests.update(layers)
            if layers:
                for name in (package, *inline_code_dirs(package)):
                    digests.add(bundle_digest(name, layers))
        return digests

    async def code(self, digest: str) -> bytes:
        data = await self._store.get_code(digest)
        if data is None:
            raise NotFound(f"code package {digest[:16]}… not found")
        return data

    # -- max instances and tags ----------------------------------------------------------

    async def set_max_instances(self, function: Function, max_instance_num: int) -> Function:
        """UpdateFunctionMaxInstanceConfig: the same setting as ``strategy_config.concurrency``
        (``-1``: the default, ``0``: disabled, else at most MAX_INSTANCES)."""
        if not -1 <= max_instance_num <= MAX_INSTANCES:
            raise _bad(
                "FSS.1026",
                f"Invalid max_instance_num: {max_instance_num}; expected -1, 0 or 1 to "
                f"{MAX_INSTANCES}",
            )
        config = StrategyConfig(concurrency=max_instance_num)
        concurrency, _ = _concurrency(config, function)
        updated = replace(function, concurrency=concurrency, last_modified=now_ms())
        await self._store.update_function(updated, None)
        self._forget(function)
        return updated

    async def tags(self, function: Function) -> Sequence[tuple[str, str]]:
        return await self._store.list_function_tags(function.id)

    async def add_tags(self, function: Function, tags: Sequence[tuple[str, str]]) -> None:
        """CreateTags: a key the function has takes the new value; at most MAX_TAGS in all."""
        checked = check_tags(tags)
        count = await self._store.put_function_tags(function.id, checked, MAX_TAGS)
        if count is None:
            raise NotFound(f"can not find function: {function.name}")
        if count > MAX_TAGS:
            raise _bad(
                "FSS.0400",
                f"Invalid tags: a function has at most {MAX_TAGS} tags; these would make {count}",
            )

    async def remove_tags(self, function: Function, keys: Sequence[str]) -> None:
        await self._store.delete_function_tags(function.id, check_keys(keys))

    async def project_tags(self, project_id: str) -> Mapping[str, Sequence[str]]:
        """Every tag key of a project's functions with the values it has, sorted."""
        found: dict[str, list[str]] = {}
        for key, value in await self._store.list_project_tags(project_id):
            found.setdefault(key, []).append(value)
        return found

    @property
    def code_quota_bytes(self) -> int:
        return self._code_quota_bytes

    async def count(self, project_id: str) -> int:
        return await self._store.count_functions(project_id)

    async def total_code_size(self, project_id: str) -> int:
        return await self._store.total_code_size(project_id)

    def spec(self, function: Function, version: str = LATEST) -> FunctionSpec:
        """What the runtime needs to run ``function`` (its dependencies known: the registry
        learns them when it reads the function)."""
        layers = self.dependencies.layers(function)
        package = code_dir_name(function.code_digest, function.code_type, function.runtime)
        return FunctionSpec(
            urn=function.urn(self.region).qualified(version),
            project_id=function.project_id,
            package=function.package,
            name=function.name,
            version=version,
            runtime=function.runtime,
            handler=function.handler,
            code_type=function.code_type,
            code_digest=bundle_digest(package, layers) if layers else package,
            memory_size=function.memory_size,
            timeout=function.timeout,
            user_data=parse_user_data(function.user_data),
            initializer_handler=function.initializer_handler,
            initializer_timeout=function.initializer_timeout,
            max_instances=max(function.concurrency, 1),
            dependencies=layers,
            package_digest=package if layers else "",
        )
