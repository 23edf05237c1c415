"""What the runtime is given and what it gives back. It never sees the store."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from openfgs.models import ErrorCode

# Called only when the code package of a digest is not yet unpacked on this node.
CodeLoader = Callable[[], Awaitable[bytes]]
# The same for the zip of a dependency, by its digest.
DependencyLoader = Callable[[str], Awaitable[bytes]]


@dataclass(frozen=True)
class FunctionSpec:
    """Everything needed to start an instance of one function version."""

    urn: str  # qualified URN, e.g. urn:fss:cn-north-4:<project>:function:default:hello:latest
    project_id: str
    package: str
    name: str
    version: str
    runtime: str  # "Python3.9", ...
    handler: str  # "index.handler": module path and function name
    code_type: str  # "inline" (source of index.py) or "zip" (a zip archive)
    code_digest: str  # sha512 hex of the code package; instances are keyed by it
    memory_size: int  # MB
    timeout: int  # seconds, for one invocation
    user_data: dict[str, str] = field(default_factory=dict)
    initializer_handler: str | None = None
    initializer_timeout: int | None = None
    max_instances: int = 400
    # Dependencies: the digests of their zips, merged over the code in this order. With any,
    # ``code_digest`` names the bundle (code.bundle_digest) and ``package_digest`` the code.
    dependencies: tuple[str, ...] = ()
    package_digest: str = ""


@dataclass(frozen=True)
class RunResult:
    """The outcome of one invocation."""

    ok: bool
    result: str = ""  # the handler's return value as JSON text when ok
    error_code: int = ErrorCode.OK
    error_message: str = ""
    log: str = ""  # captured stdout, stderr and context logger output, bounded
    duration_ms: float = 0.0
    memory_used_mb: float = 0.0
    # A failure as the function's runtime shapes it for callers (Node.js and custom runtimes:
    # ``{"errorMessage", "errorType", "stackTrace"}``); "" when the runtime gives none.
    error_result: str = ""
