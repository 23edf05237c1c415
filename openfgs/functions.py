"""The function registry: create, read, update and delete functions and their code packages."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import re
import uuid
from collections.abc import Awaitable, Callable
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
    valid_runtime,
)
from openfgs.runtime.code import CodePackageError, bundle_digest, check_zip
from openfgs.runtime.environment import env_name_problem
from openfgs.runtime.types import FunctionSpec
from openfgs.schemas import (
    MEMORY_SIZES,
    CreateFunctionBody,
    FuncCode,
    StrategyConfig,
    UpdateFunctionCodeBody,
    UpdateFunctionConfigBody,
)
from openfgs.store.base import DependencyGone, Store

INLINE_LIMIT = 10 * 1024
ZIP_LIMIT = 50 * 1024 * 1024
USER_DATA_LIMIT = 4096
USER_DATA_KEYS = 20
DEFAULT_CONCURRENCY = 400
# FunctionGraph's quota on the total code size of an account (FSS.1042).
DEFAULT_CODE_QUOTA = 20 * 1024**3
CACHE_ENTRIES = 10_000  # functions remembered by name and by id, each
_HANDLER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+")
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


def _bad(code: str, message: str) -> BadRequest:
    return BadRequest(message, error_code=code)


def check_runtime(runtime: str) -> None:
    if not valid_runtime(runtime):
        raise _bad("FSS.1005", f"Invalid runtime: {runtime!r}; openfgs runs Python3.x functions")


def check_handler(handler: str, code: str = "FSS.1003", field: str = "handler") -> None:
    if not _HANDLER.fullmatch(handler) or len(handler) > 128:
        raise _bad(code, f"Invalid {field}: {handler!r}; expected 'module.function'")


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


def check_initializer(handler: str | None, timeout: int | None) -> None:
    if handler:
        check_handler(handler, "FSS.1404", "initializer_handler")
    if timeout is not None and not 1 <= timeout <= 300:
        raise _bad("FSS.1405", f"Invalid initializer_timeout: {timeout}; expected 1 to 300")


def decode_code(code_type: str | None, func_code: FuncCode | None) -> tuple[str, bytes]:
    """Return the stored code type and package bytes; an empty inline file means default code."""
    kind = code_type or "inline"
    if kind not in ("inline", "zip"):
        raise _bad("FSS.1006", f"Invalid function code entry mode: {kind!r}; use inline or zip")
    text = (func_code.file if func_code else None) or ""
    if not text:
        if kind == "zip":
            raise _bad("FSS.1012", "The function code must be configured: func_code.file")
        return kind, DEFAULT_CODE
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
        dependencies: DependencyService | None = None,
    ) -> None:
        self._store = store
        self.dependencies = dependencies or DependencyService(
            store, code_quota_bytes=code_quota_bytes
        )
        self.region = region
        self._cache_seconds = cache_seconds
        self._code_quota_bytes = code_quota_bytes
        # Misses are remembered too, so URNs a caller makes up are bounded like the rest.
        self._cache: TtlCache[tuple[str, str, str], Function | None] = TtlCache(CACHE_ENTRIES)
        self._by_id: TtlCache[int, Function | None] = TtlCache(CACHE_ENTRIES)
        self.release_hooks: list[Callable[[str], Awaitable[Any]]] = []

    def _forget(self, function: Function) -> None:
        self._cache.pop((function.project_id, function.package, function.name))
        self._by_id.pop(function.id)

    async def create(self, project_id: str, body: CreateFunctionBody) -> Function:
        if not valid_function_name(body.func_name):
            raise _bad("FSS.1002", f"Invalid function name: {body.func_name!r}")
        if not valid_package_name(body.package):
            raise _bad("FSS.1004", f"Invalid package: {body.package!r}")
        self._check_config(body.runtime, body.handler, body.memory_size, body.user_data)
        check_initializer(body.initializer_handler, body.initializer_timeout)
        concurrency, concurrent_num = _concurrency(body.strategy_config, None)
        depend_versions = await self.dependencies.attachable(
            project_id, body.depend_version_list or [], body.runtime
        )
        # Decoding and reading a package through takes a while for 50 MB: not on the loop.
        code_type, code = await asyncio.to_thread(decode_code, body.code_type, body.func_code)
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
        return created

    @staticmethod
    def _check_config(runtime: str, handler: str, memory: int, user_data: str | None) -> None:
        check_runtime(runtime)
        check_handler(handler)
        check_memory(memory)
        check_user_data(user_data)

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
        """The function a path URN names (unqualified or ``:latest``), or NotFound."""
        urn = Urn.parse(urn_text)
        if urn.project_id != project_id:
            raise NotFound(f"can not find function: {urn_text}", error_code=missing_code)
        if urn.qualifier not in (None, LATEST):
            raise NotFound(f"The version does not exist: {urn.qualifier}", error_code="FSS.1052")
        key = (project_id, urn.package, urn.name)
        cached = self._cache.lookup(key)
        if cached is not None:
            function = cached.value
        else:
            function = await self._store.get_function(*key)
            if function is not None:
                await self.dependencies.remember(function)
            self._cache.put(key, function, self._cache_seconds)
        if function is None:
            raise NotFound(f"can not find function: {urn_text}", error_code=missing_code)
        return function

    async def get_by_id(self, function_id: int) -> Function | None:
        cached = self._by_id.lookup(function_id)
        if cached is not None:
            return cached.value
        function = await self._store.get_function_by_id(function_id)
        if function is not None:
            await self.dependencies.remember(function)
        self._by_id.put(function_id, function, self._cache_seconds)
        return function

    async def list(
        self, project_id: str, package: str | None, name: str | None, marker: int, limit: int
    ) -> tuple[list[Function], int]:
        return await self._store.list_functions(project_id, package, name, marker, limit)

    async def update_config(self, function: Function, body: UpdateFunctionConfigBody) -> Function:
        if body.func_name != function.name:
            raise _bad(
                "FSS.1002", f"Invalid function name: {body.func_name!r} is not this function"
            )
        self._check_config(body.runtime, body.handler, body.memory_size, body.user_data)
        check_initializer(body.initializer_handler, body.initializer_timeout)
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
        depend_versions = function.depend_versions
        if body.depend_version_list is not None:  # the list replaces the previous one
            depend_versions = await self.dependencies.attachable(
                function.project_id, body.depend_version_list, function.runtime
            )
        code_type, code = await asyncio.to_thread(decode_code, body.code_type, body.func_code)
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
        await self._store.delete_function(function)
        self._forget(function)
        await self._released(function.code_digest)

    async def _released(self, digest: str) -> None:
        for hook in self.release_hooks:
            await hook(digest)

    async def referenced_digests(self) -> set[str]:
        """The code digests some function of any project uses: code packages, dependency
        zips and the bundles of the two."""
        digests = await self._store.referenced_code_digests()
        for package, layers in await self._store.function_dependency_digests():
            digests.update(layers)
            if layers:
                digests.add(bundle_digest(package, layers))
        return digests

    async def code(self, digest: str) -> bytes:
        data = await self._store.get_code(digest)
        if data is None:
            raise NotFound(f"code package {digest[:16]}… not found")
        return data

    def spec(self, function: Function, version: str = LATEST) -> FunctionSpec:
        """What the runtime needs to run ``function`` (its dependencies known: the registry
        learns them when it reads the function)."""
        layers = self.dependencies.layers(function)
        return FunctionSpec(
            urn=function.urn(self.region).qualified(version),
            project_id=function.project_id,
            package=function.package,
            name=function.name,
            version=version,
            runtime=function.runtime,
            handler=function.handler,
            code_type=function.code_type,
            code_digest=bundle_digest(function.code_digest, layers)
            if layers
            else function.code_digest,
            memory_size=function.memory_size,
            timeout=function.timeout,
            user_data=parse_user_data(function.user_data),
            initializer_handler=function.initializer_handler,
            initializer_timeout=function.initializer_timeout,
            max_instances=max(function.concurrency, 1),
            dependencies=layers,
            package_digest=function.code_digest if layers else "",
        )
