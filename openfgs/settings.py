"""The one typed settings object, built at the edge from flags and ``OPENFGS_*`` variables.

No other module reads the environment. Every field is documented in docs/settings.md, and a
test checks that the page names each of them. Every field is also a command-line flag: the CLI
generates them from :func:`setting_specs`, so a new field needs no CLI change.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from openfgs.errors import ConfigError

ENV_PREFIX = "OPENFGS_"


@dataclass(frozen=True)
class Settings:
    """Everything an openfgs process can be told. Names map to ``OPENFGS_<NAME>``."""

    host: str = "127.0.0.1"
    port: int = 8000
    # `serve`: processes accepting on host:port (SO_REUSEPORT): the primary runs everything,
    # the others the API only (docs/deployment.md, "More processes").
    processes: int = 1
    data_dir: Path = Path(".openfgs")
    region: str = "cn-north-4"
    # The region's time zone (IANA name): timer cron expressions without CRON_TZ= use it, and
    # a timer event's time carries its offset.
    timezone: str = "UTC"
    # The base URL HTTP triggers are reached at (their invoke_url); default http://{host}:{port}.
    public_url: str = ""
    database_url: str = ""
    database_pool_size: int = 10
    # Where the CLI's client commands send requests; default http://{host}:{port}.
    endpoint: str = ""
    # Credential ensured at start when all three are set.
    project_id: str = ""
    access_key: str = ""
    secret_key: str = field(default="", repr=False)
    # Embedded worker.
    worker: bool = True
    # Async invocations one worker runs at once; 0: by store, 16 embedded (SQLite) and 32 on
    # PostgreSQL, where a claim costs the database more per statement than per row, so fewer,
    # larger claims are worth the extra slots (docs/benchmarks.md, "Worker slots").
    worker_concurrency: int = 0
    poll_interval: float = 1.0
    lease_seconds: int = 60
    shutdown_grace_seconds: float = 30.0
    # Async lifecycle.
    retry_backoff_seconds: float = 1.0
    retry_backoff_max_seconds: float = 60.0
    max_waiting_per_function: int = 100_000
    retention_seconds: int = 7 * 86400
    # Runtime.
    instance_idle_seconds: float = 300.0
    # "uid:gid" every instance runs as; empty: a user per function when the service runs as
    # root, else the service's own user; "self": always the service's own user.
    instance_user: str = ""
    # Request limits (openfgs.api.guard and openfgs.api.server; docs/api.md "Request limits").
    max_async_body_bytes: int = 256 * 1024
    max_sync_body_bytes: int = 6 * 1024 * 1024
    max_body_bytes: int = 64 * 1024  # every route without a limit of its own
    max_header_bytes: int = 32 * 1024  # request line and headers together
    header_read_timeout_seconds: float = 10.0
    body_read_timeout_seconds: float = 30.0  # between two chunks of a body
    request_read_timeout_seconds: float = 120.0  # a whole body
    keep_alive_seconds: float = 5.0
    max_connections: int = 1024
    signature_skew_seconds: int = 15 * 60
    token_ttl_seconds: int = 24 * 3600
    log_level: str = "info"
    # Authentication limits.
    auth_max_failures: int = 5  # failures of one access key within the window that lock it
    auth_failure_window_seconds: float = 60.0
    auth_lockout_seconds: float = 300.0
    auth_token_requests_per_minute: int = 30  # per client address, on POST /v3/auth/tokens
    auth_table_entries: int = 10_000  # entries of each authentication cache and table
    # Code storage.
    # The summed code_size of a project's functions (FunctionGraph's quota, 20 GB).
    max_code_bytes_per_project: int = 20 * 1024**3
    # The functions of a project (FunctionGraph's quota, FSS.1041).
    max_functions_per_project: int = 400
    # The versions of all dependencies of a project (openfgs.dependencies, FSS.1045).
    max_dependency_versions_per_project: int = 1000
    # Sandbox.
    # "strict", "relaxed", or empty: strict when the service runs as root, else relaxed.
    isolation: str = ""
    # "first-last": the user and group ids functions run as, one per function; must mean
    # nothing else on the host. Empty: 0x70100000 to 0x701FFFFF.
    function_ids: str = ""
    sandbox_max_processes: int = 512
    # "host", or "loopback": instances get a network of their own with only a loopback device.
    sandbox_network: str = "host"
    # Observability (docs/observability.md).
    metrics: bool = True  # GET /metrics and the HTTP request metrics
    # A worker node (`openfgs worker`, no API) serves GET /metrics on this port; 0: it does not.
    metrics_port: int = 0
    # When set, GET /metrics requires "Authorization: Bearer <token>".
    metrics_token: str = field(default="", repr=False)
    # "text" or "json": one JSON object per log line, with the request id where there is one.
    log_format: str = "text"

    def __post_init__(self) -> None:
        # Instances, the worker and the lock all run from other working directories: a relative
        # data dir means the folder the command was started in, resolved once, here.
        object.__setattr__(
            self, "data_dir", Path(os.path.abspath(Path(self.data_dir).expanduser()))
        )
        if self.worker_concurrency < 0:
            raise ConfigError(
                f"{ENV_PREFIX}WORKER_CONCURRENCY: {self.worker_concurrency} is not 0 (the store's "
                "default) or a number of invocations"
            )

    @property
    def worker_slots(self) -> int:
        """``worker_concurrency``, or the store's default when it is 0."""
        if self.worker_concurrency:
            return self.worker_concurrency
        return 64 if self.database_url else 16

    @property
    def api_endpoint(self) -> str:
        return self.endpoint or f"http://{self.host}:{self.port}"

    @property
    def database_path(self) -> Path:
        return self.data_dir / "openfgs.db"

    def with_overrides(self, **overrides: Any) -> Settings:
        """Apply the overrides that are not None (flags, already of their fields' types)."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


# How a text value (a variable or a flag) becomes a field's value, by the field's annotation;
# an annotation not named here takes the text as it is.
PARSERS: dict[str, Callable[[str], Any]] = {"int": int, "float": float, "Path": Path}
TRUE_WORDS = ("1", "true", "yes", "on")


@dataclass(frozen=True)
class SettingSpec:
    """One setting as the command line and the documentation name it."""

    name: str
    kind: str  # the field's annotation: "int", "float", "bool", "Path", "str", ...
    default: Any

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def parse(self, raw: str) -> Any:
        if self.kind == "bool":
            return raw.strip().lower() in TRUE_WORDS
        return PARSERS.get(self.kind, str)(raw)


def setting_specs() -> list[SettingSpec]:
    """Every field of :class:`Settings`, in declaration order."""
    specs = []
    for f in fields(Settings):
        factory = f.default_factory
        default = factory() if callable(factory) else f.default
        kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        specs.append(SettingSpec(f.name, kind, default))
    return specs


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Build settings from ``OPENFGS_*`` variables, then apply explicit overrides (flags)."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for spec in setting_specs():
        raw = env.get(spec.env)
        if raw is not None and raw != "":
            try:
                values[spec.name] = spec.parse(raw)
            except ValueError as exc:
                raise ConfigError(f"{spec.env}: {exc}") from None
    return Settings(**values).with_overrides(**overrides)


def setting_names() -> list[str]:
    return [spec.env for spec in setting_specs()]


def settings_environ(settings: Settings, **overrides: Any) -> dict[str, str]:
    """This process's environment with ``settings`` (and ``overrides``) as ``OPENFGS_*``
    variables: what a child process given it loads with :func:`load_settings` is ``settings``."""
    given = replace(settings, **overrides)
    env = dict(os.environ)
    for spec in setting_specs():
        value = getattr(given, spec.name)
        env[spec.env] = str(value).lower() if spec.kind == "bool" else str(value)
    return env
