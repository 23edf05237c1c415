"""The one typed settings object, built at the edge from flags and ``OPENFGS_*`` variables.

No other module reads the environment. Every field is documented in docs/settings.md, and a
test checks that the page names each of them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

ENV_PREFIX = "OPENFGS_"


@dataclass(frozen=True)
class Settings:
    """Everything an openfgs process can be told. Names map to ``OPENFGS_<NAME>``."""

    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Path(".openfgs")
    region: str = "cn-north-4"
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
    worker_concurrency: int = 16
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
    # Request limits.
    max_async_body_bytes: int = 256 * 1024
    max_sync_body_bytes: int = 6 * 1024 * 1024
    signature_skew_seconds: int = 15 * 60
    token_ttl_seconds: int = 24 * 3600
    log_level: str = "info"
    # Sandbox.
    # "strict", "relaxed", or empty: strict when the service runs as root, else relaxed.
    isolation: str = ""
    # "first-last": the user and group ids functions run as, one per function; must mean
    # nothing else on the host. Empty: 0x70100000 to 0x701FFFFF.
    function_ids: str = ""
    sandbox_max_processes: int = 512
    # "host", or "loopback": instances get a network of their own with only a loopback device.
    sandbox_network: str = "host"

    def __post_init__(self) -> None:
        # Instances, the worker and the lock all run from other working directories: a relative
        # data dir means the folder the command was started in, resolved once, here.
        object.__setattr__(self, "data_dir", Path(self.data_dir).expanduser().absolute())

    @property
    def api_endpoint(self) -> str:
        return self.endpoint or f"http://{self.host}:{self.port}"

    @property
    def database_path(self) -> Path:
        return self.data_dir / "openfgs.db"

    def with_overrides(self, **overrides: Any) -> Settings:
        """Apply non-None overrides (as from CLI flags), converting strings to field types."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


def _convert(kind: Any, raw: str) -> Any:
    if kind in (bool, "bool"):
        return raw.strip().lower() in ("1", "true", "yes", "on")
    if kind in (int, "int"):
        return int(raw)
    if kind in (float, "float"):
        return float(raw)
    if kind in (Path, "Path"):
        return Path(raw)
    return raw


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Build settings from ``OPENFGS_*`` variables, then apply explicit overrides."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for f in fields(Settings):
        raw = env.get(ENV_PREFIX + f.name.upper())
        if raw is not None and raw != "":
            try:
                values[f.name] = _convert(f.type, raw)
            except ValueError as exc:
                raise SystemExit(f"{ENV_PREFIX}{f.name.upper()}: {exc}") from None
    return Settings(**values).with_overrides(**overrides)


def setting_names() -> list[str]:
    return [ENV_PREFIX + f.name.upper() for f in fields(Settings)]
