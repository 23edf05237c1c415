"""The composition root: builds the store, domain services, runtime and worker from settings."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import IO, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from openfgs.auth.limits import AuthLimits
from openfgs.auth.service import Authenticator
from openfgs.dependencies import DependencyService
from openfgs.errors import ConfigError, OpenFgsError
from openfgs.execution import Executor
from openfgs.functions import FunctionRegistry
from openfgs.invocations import InvocationService, LifecycleSettings
from openfgs.models import Credential
from openfgs.procs import Fronts
from openfgs.runtime.isolation import FUNCTION_IDS
from openfgs.runtime.pool import InstancePool
from openfgs.runtime.sandbox import SandboxPolicy
from openfgs.settings import Settings
from openfgs.store import Store, create_store
from openfgs.triggers import TimerScheduler, TriggerService
from openfgs.worker import Worker

log = logging.getLogger("openfgs")
FAR_FUTURE = 2**62


class DataDirLocked(OpenFgsError):
    """Another openfgs process serves the same embedded data directory."""


def instance_user(text: str) -> tuple[int, int] | Literal["auto"] | None:
    """``OPENFGS_INSTANCE_USER``: "" (a user per function when root), "self", or "uid:gid"."""
    if not text:
        return "auto"
    if text == "self":
        return None
    uid, sep, gid = text.partition(":")
    if not (_ascii_number(uid) and (not sep or _ascii_number(gid))):
        raise ConfigError(f"OPENFGS_INSTANCE_USER: expected uid:gid or 'self', not {text!r}")
    return int(uid), int(gid or uid)


def function_ids(text: str) -> range:
    """``OPENFGS_FUNCTION_IDS``: "" (the built-in range) or "first-last"."""
    if not text:
        return FUNCTION_IDS
    first, sep, last = (part.strip() for part in text.partition("-"))
    if not (sep and _ascii_number(first) and _ascii_number(last)):
        raise ConfigError(f"OPENFGS_FUNCTION_IDS: expected first-last, not {text!r}")
    ids = range(int(first), int(last) + 1)
    if not ids or ids[0] < 1000 or ids[-1] >= 2**32 - 1:
        raise ConfigError("OPENFGS_FUNCTION_IDS: an empty range, ids of system users, or past 2³²")
    return ids


def region_zone(name: str) -> str:
    """``OPENFGS_TIMEZONE`` checked: an IANA time zone name."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"OPENFGS_TIMEZONE: unknown time zone {name!r}") from None
    return name


def sandbox_policy(settings: Settings) -> SandboxPolicy:
    """The sandbox settings, checked."""
    try:
        return SandboxPolicy(
            isolation=settings.isolation or "auto",
            max_processes=settings.sandbox_max_processes,
            network=settings.sandbox_network,
        )
    except ValueError as exc:
        field = str(exc).split(" ", 1)[0]
        name = {"isolation": "ISOLATION", "network": "SANDBOX_NETWORK"}.get(
            field, "SANDBOX_MAX_PROCESSES"
        )
        raise ConfigError(f"OPENFGS_{name}: {exc}") from None


def _ascii_number(text: str) -> bool:
    return 0 < len(text) <= 10 and text.isascii() and text.isdigit()


@dataclass
class Services:
    """Everything one openfgs process runs, started and stopped together.

    ``front``: this process is front number ``front`` of ``serve --processes N`` — the API
    only: no worker, no timer scheduler, no lock on the data dir, no recovery; the primary
    process does all of those (docs/architecture.md, "More processes").
    """

    settings: Settings
    store: Store
    registry: FunctionRegistry
    invocations: InvocationService
    auth: Authenticator
    pool: InstancePool
    executor: Executor
    triggers: TriggerService
    scheduler: TimerScheduler
    worker: Worker | None = None
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _worker_task: asyncio.Task[None] | None = None
    _scheduler_task: asyncio.Task[None] | None = None
    _lock_file: IO[str] | None = None
    started: bool = False
    first_start: bool = False  # the store had no credential at all when this process started
    front: int | None = None
    # Run first when stopping, while the store is still open (the primary stops its fronts,
    # whose last writes it commits).
    stop_hooks: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    fronts: Fronts | None = None  # the primary's, with more than one process

    @classmethod
    def build(
        cls, settings: Settings, store: Store | None = None, *, front: int | None = None
    ) -> Services:
        store = store or create_store(settings)
        dependencies = DependencyService(
            store,
            code_quota_bytes=settings.max_code_bytes_per_project,
            max_versions=settings.max_dependency_versions_per_project,
        )
        registry = FunctionRegistry(
            store,
            settings.region,
            code_quota_bytes=settings.max_code_bytes_per_project,
            function_quota=settings.max_functions_per_project,
            dependencies=dependencies,
        )
        invocations = InvocationService(
            store,
            registry,
            LifecycleSettings(
                retry_backoff_seconds=settings.retry_backoff_seconds,
                retry_backoff_max_seconds=settings.retry_backoff_max_seconds,
                max_waiting_per_function=settings.max_waiting_per_function,
                retention_seconds=settings.retention_seconds,
            ),
        )
        auth = Authenticator(
            store,
            skew_seconds=settings.signature_skew_seconds,
            token_ttl_seconds=settings.token_ttl_seconds,
            limits=AuthLimits.from_settings(settings),
        )
        pool = InstancePool(
            # A front runs sync invocations in instances of its own, unpacked apart.
            settings.data_dir / ("instances" if front is None else f"fronts/{front}/instances"),
            idle_seconds=settings.instance_idle_seconds,
            run_as=instance_user(settings.instance_user),
            function_ids=function_ids(settings.function_ids),
            sandbox=sandbox_policy(settings),
            load_dependency=registry.code,
        )
        worker = None
        if settings.worker and front is None:
            worker = Worker(
                invocations,
                registry,
                pool,
                concurrency=settings.worker_slots,
                poll_interval=settings.poll_interval,
                lease_seconds=settings.lease_seconds,
                grace_seconds=settings.shutdown_grace_seconds,
            )
        invocations.cancel_hooks.append(pool.cancel)
        executor = Executor(registry, pool)
        triggers = TriggerService(store, registry, region_zone(settings.timezone))
        scheduler = TimerScheduler(triggers, invocations, registry, store)
        services = cls(
            settings,
            store,
            registry,
            invocations,
            auth,
            pool,
            executor,
            triggers,
            scheduler,
            worker,
            front=front,
        )
        registry.release_hooks.append(services.release_code)
        return services

    @property
    def dependencies(self) -> DependencyService:
        return self.registry.dependencies

    async def start(self) -> None:
        """Open the store, recover what a crash left running, ensure credentials, start work."""
        if self.started:
            return
        if self.front is not None:
            await self._start_front()
            return
        self.lock_data_dir()
        await self.pool.prepared()  # says in the log how instances will be isolated
        await self.store.open()
        s = self.settings
        self.first_start = await self.store.count_credentials() == 0
        # Functions may have been deleted while this node was down (or by another node).
        await self.sweep_code()
        if s.project_id and s.access_key and s.secret_key:
            await self.auth.ensure_credential(Credential(s.project_id, s.access_key, s.secret_key))
        if self.worker is not None and not s.database_url:
            try:
                recovered = await self.invocations.recover(cutoff=FAR_FUTURE)
            except Exception:  # start anyway: the upkeep recovers them once their leases end
                log.exception("recovering what a previous run left running failed")
                recovered = 0
            if recovered:
                log.warning("recovered %d invocations left running by a previous run", recovered)
        if self.worker is not None:
            await self.store.subscribe(self.invocations.notifier.notify)
            self._worker_task = asyncio.create_task(self.worker.run(self._stop))
        self._scheduler_task = asyncio.create_task(self.scheduler.run(self._stop))
        self.started = True

    async def _start_front(self) -> None:
        await self.pool.prepared()
        await self.store.open()
        self.first_start = await self.store.count_credentials() == 0
        await self.sweep_code()
        self.started = True

    async def stop(self) -> None:
        if not self.started:
            return
        for hook in self.stop_hooks:
            try:
                await hook()
            except Exception:
                log.exception("stopping failed")
        self._stop.set()
        for task in (self._scheduler_task, self._worker_task):
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.pool.close()
        await self.store.close()
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None
        self.started = False

    def lock_data_dir(self) -> None:
        """One embedded service per data directory: it recovers RUNNING rows as its own."""
        if self.settings.database_url or self._lock_file is not None:
            return
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        handle = open(self.settings.data_dir / "serve.lock", "a+")  # noqa: SIM115
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise DataDirLocked(
                f"another openfgs process serves {self.settings.data_dir}"
            ) from None
        handle.truncate(0)
        handle.write(str(os.getpid()))
        handle.flush()
        self._lock_file = handle

    async def release_code(self, digest: str) -> None:
        """A function stopped using ``digest``: remove unpacked code no function uses."""
        await self.sweep_code()

    async def sweep_code(self) -> list[str]:
        """Remove this node's unpacked code of digests no function references any more.

        Code an invocation is running stays until a later sweep. A failure is logged, not
        raised: the function change that triggered the sweep has been made.
        """
        try:
            keep = await self.registry.referenced_digests()
            removed = await self.pool.sweep_code(keep)
        except Exception:
            log.exception("removing unused code packages failed")
            return []
        if removed:
            log.info("removed %d unused code packages", len(removed))
        return removed
