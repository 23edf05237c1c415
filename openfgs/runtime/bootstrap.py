"""The function instance: the child process that imports user code and serves invocations.

The service starts it as ``python -I bootstrap.py REQUEST_FD REPLY_FD`` with the code directory as
its working directory. It must stay importable without the rest of openfgs (``-I`` keeps the
service's own paths and environment out) and cheap to start, so it uses the standard library
only; the service imports the wire constants from here.

Wire format, both directions: ``FRAME`` (header length, body length), a JSON header, raw body.

- service → instance: a config frame (handler, limits, function metadata, output marker), then
  one frame per invocation (header ``request_id``/``max_result_bytes``, body = event JSON).
- instance → service: a ``load`` frame once the module is imported, an ``init`` frame after the
  initializer (only when one is configured), then one reply per invocation (header
  ``status``/``message``/``duration_ms``/``maxrss_kb``, body = result JSON when ok).

The protocol uses dedicated pipes, so nothing the handler writes can corrupt it. File
descriptors 1 and 2 are one pipe the service reads as the log; before every frame the instance
writes the marker to that pipe through a private duplicate, which tells the service where the
output of that frame ends even if user code closed or redirected fd 1.
"""

from __future__ import annotations

import faulthandler
import importlib
import json
import os
import resource
import struct
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

FRAME = struct.Struct(">II")

# Reply statuses; the service maps them to ErrorCode.
OK = "ok"
FUNCTION_ERROR = "function_error"
INITIALIZER_FAILED = "initializer_failed"
OUT_OF_MEMORY = "out_of_memory"
RESULT_TOO_LARGE = "result_too_large"

Header = dict[str, Any]
Handler = Callable[..., Any]


class Channel:
    """The instance's end of the protocol: blocking frame I/O on the two pipes."""

    def __init__(self, request_fd: int, reply_fd: int, mark_fd: int) -> None:
        # Buffered, so a small frame costs one read() system call rather than three.
        self._requests = open(request_fd, "rb", buffering=1 << 16)  # noqa: SIM115
        self._reply_fd = reply_fd
        self._mark_fd = mark_fd
        self.marker = b""

    def receive(self) -> tuple[Header, bytes] | None:
        """The next frame, or None when the service closed the pipe."""
        head = self._requests.read(FRAME.size)
        if len(head) < FRAME.size:
            return None
        header_size, body_size = FRAME.unpack(head)
        header = self._requests.read(header_size)
        body = self._requests.read(body_size)
        if len(header) < header_size or len(body) < body_size:
            return None
        return json.loads(header), body

    def send(self, header: Header, body: bytes = b"") -> None:
        """End the current log segment, then send one frame."""
        _flush_std_streams()
        _write_all(self._mark_fd, self.marker)
        encoded = json.dumps(header).encode()
        _write_all(self._reply_fd, FRAME.pack(len(encoded), len(body)) + encoded + body)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _flush_std_streams() -> None:
    # User code may have replaced or closed these; a failed flush must not lose the reply.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass


class Logger:
    """``context.getLogger()``: timestamped lines with the request id, into the log."""

    def __init__(self, request_id: str) -> None:
        self._request_id = request_id

    def _write(self, level: str, message: object, args: tuple[object, ...]) -> None:
        text = str(message) % args if args else str(message)
        now = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
        line = f"{stamp}.{int(now * 1000) % 1000:03d}Z {self._request_id} {level} {text}\n"
        # The real stdout, so a handler that redirects sys.stdout still has its log lines kept.
        stream = sys.__stdout__ or sys.stdout
        stream.write(line)

    def debug(self, message: object, *args: object) -> None:
        self._write("DEBUG", message, args)

    def info(self, message: object, *args: object) -> None:
        self._write("INFO", message, args)

    def warning(self, message: object, *args: object) -> None:
        self._write("WARN", message, args)

    warn = warning

    def error(self, message: object, *args: object) -> None:
        self._write("ERROR", message, args)


class Context:
    """FunctionGraph's context object, with its Java-style method names."""

    def __init__(self, config: Header, request_id: str, timeout: float) -> None:
        self._config = config
        self._request_id = request_id
        self._deadline = time.monotonic() + timeout
        self._logger = Logger(request_id)

    def getRequestID(self) -> str:
        return self._request_id

    def getRemainingTimeInMilliSeconds(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))

    # No agency credentials exist here; FunctionGraph returns "" when none is configured.
    def getAccessKey(self) -> str:
        return ""

    def getSecretKey(self) -> str:
        return ""

    def getSecurityAccessKey(self) -> str:
        return ""

    def getSecuritySecretKey(self) -> str:
        return ""

    def getSecurityToken(self) -> str:
        return ""

    def getToken(self) -> str:
        return ""

    def getUserData(self, key: str, default: str | None = None) -> str | None:
        value = self._config["user_data"].get(key, default)
        return None if value is None else str(value)

    def getFunctionName(self) -> str:
        return str(self._config["function_name"])

    def getRunningTimeInSeconds(self) -> int:
        return int(self._config["timeout"])

    def getVersion(self) -> str:
        return str(self._config["version"])

    def getMemorySize(self) -> int:
        return int(self._config["memory_size"])

    def getCPUNumber(self) -> int:
        return int(self._config["cpu"])

    def getPackage(self) -> str:
        return str(self._config["package"])

    def getProjectID(self) -> str:
        return str(self._config["project_id"])

    def getAlias(self) -> str:
        return ""

    def getLogger(self) -> Logger:
        return self._logger


def load_callable(path: str, what: str) -> tuple[Handler | None, str]:
    """Import ``pkg.module.function``; on failure the message says why (traceback to stderr)."""
    module_name, _, function_name = path.rpartition(".")
    if not module_name or not function_name:
        return None, f"invalid {what} {path!r}: expected 'module.function'"
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        traceback.print_exc()
        return None, f"cannot import module {module_name!r}: {type(exc).__name__}: {exc}"
    function = getattr(module, function_name, None)
    if not callable(function):
        return None, f"{what} {path!r} not found"
    return function, ""


def run_initializer(config: Header) -> tuple[str, str]:
    """Run the initializer once; returns (status, message)."""
    initializer, message = load_callable(config["initializer"], "initializer")
    if initializer is None:
        return INITIALIZER_FAILED, message
    try:
        initializer(Context(config, "", float(config["initializer_timeout"])))
    except Exception as exc:
        traceback.print_exc()
        return INITIALIZER_FAILED, f"initializer failed: {type(exc).__name__}: {exc}"
    return OK, ""


def invoke(handler: Handler, config: Header, header: Header, event: bytes) -> tuple[Header, bytes]:
    """Run the handler once and turn every outcome into a reply frame."""
    context = Context(config, str(header["request_id"]), float(config["timeout"]))
    started = time.perf_counter()
    try:
        value = handler(json.loads(event), context)
    except MemoryError:
        _print_exception()
        message = f"function ran out of memory (memory_size {config['memory_size']} MB)"
        return _reply(OUT_OF_MEMORY, message, started), b""
    except Exception as exc:
        _print_exception()
        return _reply(FUNCTION_ERROR, f"{type(exc).__name__}: {exc}", started), b""
    duration_reply = _reply(OK, "", started)
    try:
        body = json.dumps(value, allow_nan=False).encode()
    except (TypeError, ValueError, RecursionError) as exc:
        message = f"function result is not JSON serializable: {type(exc).__name__}: {exc}"
        return {**duration_reply, "status": FUNCTION_ERROR, "message": message}, b""
    limit = int(header["max_result_bytes"])
    if len(body) > limit:
        message = f"function result is {len(body)} bytes, more than the limit of {limit}"
        return {**duration_reply, "status": RESULT_TOO_LARGE, "message": message}, b""
    return duration_reply, body


def _reply(status: str, message: str, started: float) -> Header:
    return {
        "status": status,
        "message": message,
        "duration_ms": (time.perf_counter() - started) * 1000,
        "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }


def _print_exception() -> None:
    try:
        traceback.print_exc()
    except Exception:  # e.g. MemoryError again while formatting
        pass


def apply_limits(address_space_mb: int) -> None:
    """Cap the address space (see the runtime's module docs for the figure) and core dumps."""
    wanted = address_space_mb * 1024 * 1024
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _die_with_parent() -> None:
    # A handler stuck in a loop never reads the closed request pipe; have the kernel kill the
    # instance if the service dies. Linux only; elsewhere the pipe EOF is the only signal.
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def _close_stray_fds(keep: tuple[int, ...]) -> None:
    # Event loops differ in what they let through exec (uvloop passes duplicates of the stdio
    # pipes); user code gets stdio and nothing else of the service's.
    low = 3
    for fd in sorted(keep):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, resource.getrlimit(resource.RLIMIT_NOFILE)[0])


def _prepare_process(config: Header, code_dir: str) -> None:
    apply_limits(int(config["address_space_mb"]))
    if code_dir not in sys.path:
        sys.path.insert(0, code_dir)
    # Line buffering keeps print() and the logger in order with fd-level writes and stderr.
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(line_buffering=True, errors="backslashreplace")
    faulthandler.enable()  # a segfault leaves the Python stack in the log


def _boot(channel: Channel, config: Header) -> Handler | None:
    handler, message = load_callable(config["handler"], "handler")
    channel.send({"status": OK if handler else FUNCTION_ERROR, "message": message})
    if handler is None:
        return None
    if config.get("initializer"):
        status, message = run_initializer(config)
        channel.send({"status": status, "message": message})
        if status != OK:
            return None
    return handler


def main(argv: list[str]) -> int:
    """Serve invocations until the service closes the request pipe."""
    request_fd, reply_fd = int(argv[1]), int(argv[2])
    _close_stray_fds(keep=(request_fd, reply_fd))
    # User subprocesses must not inherit the protocol pipes.
    os.set_inheritable(request_fd, False)
    os.set_inheritable(reply_fd, False)
    _die_with_parent()
    channel = Channel(request_fd, reply_fd, os.dup(1))
    first = channel.receive()
    if first is None:
        return 0
    config = first[0]
    channel.marker = config["marker"].encode()
    _prepare_process(config, os.getcwd())
    handler = _boot(channel, config)
    if handler is None:
        return 0
    while (frame := channel.receive()) is not None:
        reply, body = invoke(handler, config, *frame)
        channel.send(reply, body)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
