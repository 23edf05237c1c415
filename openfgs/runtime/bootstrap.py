"""The function instance: the child process that imports user code and serves invocations.

It runs in one of two ways, both with the standard library only (``-I -S`` keeps the service's
paths, packages and environment out, and this file must stay importable without openfgs):

- ``python -I -S bootstrap.py REQUEST_FD REPLY_FD``: a fresh interpreter becomes one instance.
- ``python -I -S bootstrap.py template SOCKET_FD``: the *template*, a warm interpreter that
  forks a new instance whenever the service asks over the unix socket (``serve_template``).
  Forking skips interpreter start-up and the imports the template has already done.

Either way the instance then reads its config frame and enters its sandbox (``enter_sandbox``):
environment replaced, limits applied, privileges dropped when a user is given, code directory
as working directory. Only then does it import user code.

Wire format on the protocol pipes, both directions: ``FRAME`` (header length, body length), a
JSON header, raw body.

- service → instance: a config frame (handler, limits, function metadata, environment, user,
  output marker), then one frame per invocation (header ``request_id``/``max_result_bytes``,
  body = event JSON).
- instance → service: a ``load`` frame once the module is imported (or the sandbox could not be
  entered), an ``init`` frame after the initializer (only when one is configured), then one reply
  per invocation (header ``status``/``message``/``duration_ms``/``maxrss_kb``, body = result JSON
  when ok).

The protocol uses dedicated pipes, so nothing the handler writes can corrupt it. File
descriptors 1 and 2 are one pipe the service reads as the log; before every frame the instance
writes the marker to that pipe through a private duplicate, which tells the service where the
output of that frame ends even if user code closed or redirected fd 1.

Template socket (``SOCK_SEQPACKET``, one JSON object per message): the service sends
``{"fork": true}`` with three descriptors (request pipe read end, reply pipe write end, log pipe
write end); the template answers, in order, ``{"forked": pid}`` with a pidfd of the new
instance, or ``{"error": message}``. Whenever an instance exits the template reaps it and sends
``{"exited": pid, "returncode": code}``. ``{"ready": true}`` is the template's first message.
"""

from __future__ import annotations

import atexit
import ctypes
import faulthandler
import gc
import importlib
import io
import json
import os
import resource
import select
import signal
import socket
import struct
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any, NoReturn

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


def _die_with_parent(parent: int) -> None:
    # A handler stuck in a loop never reads the closed request pipe; have the kernel kill the
    # process when its parent (the service, or the template) dies. Linux only; elsewhere the
    # pipe EOF is the only signal. Changing uid clears the setting, so this comes after that.
    prctl = _prctl()
    if prctl is None:
        return
    pr_set_pdeathsig = 1
    prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent:  # it died before the request was in place
        os._exit(1)


_PRCTL: list[Any] = []  # found once: a forked instance reuses the template's


def _prctl() -> Any:
    if not _PRCTL:
        try:
            _PRCTL.append(ctypes.CDLL(None, use_errno=True).prctl)
        except (OSError, AttributeError):
            _PRCTL.append(None)
    return _PRCTL[0]


def _close_stray_fds(keep: tuple[int, ...]) -> None:
    # Event loops differ in what they let through exec (uvloop passes duplicates of the stdio
    # pipes), and a forked instance inherits the template's descriptors; user code gets stdio
    # and nothing else of the service's.
    low = 3
    for fd in sorted(keep):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, resource.getrlimit(resource.RLIMIT_NOFILE)[0])


def open_path_dirs() -> dict[str, int]:
    """Descriptors of the interpreter's import directories, opened while still privileged.

    After dropping privileges the instance user may not be able to reach the interpreter's
    own files (an interpreter installed under /root, say). It reaches them through these
    descriptors instead: ``alias_path_dirs`` decides which are needed.
    """
    dirs: dict[str, int] = {}
    for entry in sys.path:
        if entry and entry not in dirs:
            try:
                dirs[entry] = os.open(entry, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except OSError:
                pass
    return dirs


def alias_path_dirs(path_dirs: dict[str, int], unreachable: Callable[[str], bool]) -> list[int]:
    """Import from the ``unreachable`` directories through their descriptors; close the rest.

    Returns the descriptors kept open (they are close-on-exec: no subprocess gets them).
    """
    aliases: dict[str, str] = {}
    for path, fd in path_dirs.items():
        if unreachable(path):
            aliases[path] = f"/proc/self/fd/{fd}"
        else:
            os.close(fd)
    if not aliases:
        return []
    longest_first = sorted(aliases, key=len, reverse=True)

    def alias(path: str) -> str:
        for prefix in longest_first:
            if path == prefix or path.startswith(prefix + "/"):
                return aliases[prefix] + path[len(prefix) :]
        return path

    sys.path[:] = [alias(entry) for entry in sys.path]
    for module in list(sys.modules.values()):
        package_path = getattr(module, "__path__", None)
        if isinstance(package_path, list):  # submodules of packages already imported
            package_path[:] = [alias(entry) for entry in package_path]
    sys.path_importer_cache.clear()
    importlib.invalidate_caches()
    return [path_dirs[path] for path in aliases]


def _inaccessible(path: str) -> bool:
    # os.access checks the real uid: after dropping privileges, the instance user's.
    return not os.access(path, os.R_OK | os.X_OK)


def _unreachable_by(uid: int, gid: int) -> Callable[[str], bool]:
    """Judged by mode bits, for a user this process is not (yet): read and enter ``path``,
    pass through every directory above it."""

    def allows(info: os.stat_result, bits: int) -> bool:
        shift = 6 if info.st_uid == uid else 3 if info.st_gid == gid else 0
        return (info.st_mode >> shift) & bits == bits

    def unreachable(path: str) -> bool:
        path = os.path.abspath(path)
        if not allows(os.stat(path), 0o5):
            return True
        while path != os.path.dirname(path):
            path = os.path.dirname(path)
            if not allows(os.stat(path), 0o1):
                return True
        return False

    return unreachable


def enter_sandbox(config: Header, parent: int, path_dirs: dict[str, int]) -> str:
    """Become the instance ``config`` describes; returns why not, or "" on success."""
    os.environ.clear()
    os.environ.update(config["env"])
    if "tempfile" in sys.modules:  # the template may have cached its own TMPDIR
        setattr(sys.modules["tempfile"], "tempdir", None)  # noqa: B010
    user = config.get("user")
    try:
        apply_limits(int(config["address_space_mb"]))
        if user is not None:
            os.setgroups(user["groups"])
            os.setgid(user["gid"])
            os.setuid(user["uid"])
    except OSError as exc:
        return f"function instance could not drop privileges to {user}: {exc}"
    _die_with_parent(parent)
    alias_path_dirs(path_dirs, _inaccessible)
    code_dir = str(config["code_dir"])
    try:
        os.chdir(code_dir)
    except OSError as exc:
        return f"function instance cannot enter its code directory: {exc}"
    return ""


def _prepare_process(code_dir: str) -> None:
    if code_dir not in sys.path:
        sys.path.insert(0, code_dir)
    # New streams: a forked instance's were made for the template's stdio. Line buffering
    # keeps print() and the logger in order with fd-level writes and stderr.
    sys.stdout = sys.__stdout__ = _text_stream(1)  # type: ignore[misc]
    sys.stderr = sys.__stderr__ = _text_stream(2)  # type: ignore[misc]
    faulthandler.enable()  # a segfault leaves the Python stack in the log


def _text_stream(fd: int) -> io.TextIOWrapper:
    binary = open(fd, "wb", closefd=False)  # noqa: SIM115
    return io.TextIOWrapper(binary, "utf-8", "backslashreplace", line_buffering=True)


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


def serve_instance(request_fd: int, reply_fd: int, parent: int, path_dirs: dict[str, int]) -> int:
    """Serve invocations until the service closes the request pipe.

    ``path_dirs``: from ``open_path_dirs``, to be aliased as needed once privileges are gone
    (a forked instance has none: the template did that for the instance user beforehand).
    """
    # User subprocesses must not inherit the protocol pipes.
    os.set_inheritable(request_fd, False)
    os.set_inheritable(reply_fd, False)
    channel = Channel(request_fd, reply_fd, os.dup(1))
    first = channel.receive()
    if first is None:
        return 0
    config = first[0]
    channel.marker = config["marker"].encode()
    problem = enter_sandbox(config, parent, path_dirs)
    if problem:
        channel.send({"status": FUNCTION_ERROR, "message": problem})
        return 0
    _prepare_process(str(config["code_dir"]))
    handler = _boot(channel, config)
    if handler is None:
        return 0
    while (frame := channel.receive()) is not None:
        reply, body = invoke(handler, config, *frame)
        channel.send(reply, body)
    return 0


# What functions commonly import, loaded by the template while it has nothing else to do, so a
# forked instance finds them in memory (shared with the template until written to).
PRELOAD_AFTER_MS = 50
PRELOAD = (
    "json",
    "re",
    "base64",
    "hashlib",
    "random",
    "datetime",
    "uuid",
    "typing",
    "dataclasses",
    "threading",
    "logging",
    "decimal",
    "tempfile",
    "subprocess",
    "zipfile",
    "http.client",
    "urllib.request",
    "email.mime.text",
)


def serve_template(sock_fd: int, run_as: tuple[int, int] | None) -> int:
    """Fork instances on request until the service closes the socket.

    ``run_as``: the user instances will switch to, so the template can route imports the way
    that user needs before it imports anything, once for all its instances.
    """
    parent = os.getppid()
    _close_stray_fds(keep=(sock_fd,))
    _die_with_parent(parent)
    faulthandler.enable()
    path_dirs = open_path_dirs()
    if run_as is None:
        alias_fds = alias_path_dirs(path_dirs, lambda path: False)
    else:
        alias_fds = alias_path_dirs(path_dirs, _unreachable_by(*run_as))
    sock = socket.socket(fileno=sock_fd)
    wake_read, wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_write)
    # A handler rather than SIG_IGN, which would have the kernel reap children unseen.
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    poller = select.poll()
    poller.register(sock_fd, select.POLLIN)
    poller.register(wake_read, select.POLLIN)
    preload = list(PRELOAD)
    try:
        _serve_requests(sock, poller, (wake_read, wake_write), alias_fds, preload)
    except ConnectionError:  # the service went away while we were answering
        pass
    return 0


def _serve_requests(
    sock: socket.socket,
    poller: select.poll,
    wake_fds: tuple[int, int],
    alias_fds: list[int],
    preload: list[str],
) -> None:
    wake_read = wake_fds[0]
    sock.send(json.dumps({"ready": True}).encode())
    quiet = False
    while True:
        # Preloading waits for a quiet moment, then goes on until something happens.
        events = poller.poll(None if not preload else 0 if quiet else PRELOAD_AFTER_MS)
        quiet = not events
        if quiet and preload:
            _preload(preload.pop(0))
        for fd, _ in events:
            if fd == wake_read:
                while _drain(wake_read):
                    pass
                _reap(sock)
            elif not _serve_fork_request(sock, wake_fds, alias_fds):
                return


def _preload(name: str) -> None:
    try:
        importlib.import_module(name)
    except Exception:  # a module missing from this build only costs the instance its import
        pass


def _drain(fd: int) -> bool:
    try:
        return bool(os.read(fd, 512))
    except BlockingIOError:
        return False


def _reap(sock: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        code = os.waitstatus_to_exitcode(status)
        sock.send(json.dumps({"exited": pid, "returncode": code}).encode())


def _serve_fork_request(
    sock: socket.socket, wake_fds: tuple[int, int], alias_fds: list[int]
) -> bool:
    """Fork one instance; False when the service has gone."""
    try:
        message, fds, _, _ = socket.recv_fds(sock, 4096, 3, socket.MSG_CMSG_CLOEXEC)
    except ConnectionError:
        return False
    if not message:
        return False
    if len(fds) != 3:
        for fd in fds:
            os.close(fd)
        sock.send(json.dumps({"error": f"expected 3 descriptors, got {len(fds)}"}).encode())
        return True
    gc.freeze()  # the collector would otherwise copy every page of the template it visits
    try:
        pid = os.fork()
    except OSError as exc:
        reply: Header = {"error": f"fork failed: {exc}"}
        pidfd = -1
    else:
        if pid == 0:
            _run_forked_instance(sock, wake_fds, (fds[0], fds[1], fds[2]), alias_fds)
        reply = {"forked": pid}
        pidfd = os.pidfd_open(pid)
    for fd in fds:
        os.close(fd)
    if pidfd < 0:
        sock.send(json.dumps(reply).encode())
    else:
        socket.send_fds(sock, [json.dumps(reply).encode()], [pidfd])
        os.close(pidfd)
    return True


def _run_forked_instance(
    sock: socket.socket,
    wake_fds: tuple[int, int],
    fds: tuple[int, int, int],
    alias_fds: list[int],
) -> NoReturn:
    """The new instance, right after fork: shed the template and serve; never returns."""
    code = 1
    try:
        parent = os.getppid()
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.close(sock.detach())
        for fd in wake_fds:
            os.close(fd)
        os.setsid()  # its own session and process group, so one killpg ends what it starts
        request_fd, reply_fd, output_fd = fds
        os.dup2(output_fd, 1)
        os.dup2(output_fd, 2)
        os.close(output_fd)
        _close_stray_fds(keep=(request_fd, reply_fd, *alias_fds))
        code = serve_instance(request_fd, reply_fd, parent, {})
    except SystemExit as exc:  # what a fresh interpreter would exit with
        code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
        if not isinstance(exc.code, int | None):
            print(exc.code, file=sys.stderr)
    except BaseException:
        _print_exception()
    finally:
        try:
            atexit._run_exitfuncs()
            _flush_std_streams()
        finally:
            os._exit(code)


def main(argv: list[str]) -> int:
    """Run as the template, or as one instance started by the service."""
    if argv[1] == "template":
        run_as = (int(argv[3]), int(argv[4])) if len(argv) > 4 else None
        return serve_template(int(argv[2]), run_as)
    request_fd, reply_fd = int(argv[1]), int(argv[2])
    parent = os.getppid()
    _close_stray_fds(keep=(request_fd, reply_fd))
    return serve_instance(request_fd, reply_fd, parent, open_path_dirs())


if __name__ == "__main__":
    sys.exit(main(sys.argv))
