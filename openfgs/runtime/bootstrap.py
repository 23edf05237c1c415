"""The function instance: the child process that imports user code and serves invocations.

It runs in one of two ways, both with the standard library only (``-I -S`` keeps the service's
paths, packages and environment out, and this file must stay importable without openfgs):

- ``python -I -S bootstrap.py REQUEST_FD REPLY_FD SANDBOX``: a fresh interpreter becomes one
  instance (in new namespaces: it clones the instance and waits for it).
- ``python -I -S bootstrap.py template SOCKET_FD OPTIONS``: the *template*, a warm interpreter
  that forks a new instance whenever the service asks over the unix socket (``Template``).
  Forking skips interpreter start-up and the imports the template has already done.
- ``python -I -S bootstrap.py probe SANDBOX``: exit 0 when instances can get namespaces here.

``SANDBOX`` is JSON from the service's ``Sandbox.options``: ``namespaces``, ``network``,
``cgroups`` (hierarchy → the pool's parent group) and, for a spawned instance, ``group`` (the
group the service made for it). ``OPTIONS`` is ``{"run_as": [uid, gid] | null, "sandbox": …}``.

Either way the instance then reads its config frame and enters its sandbox (``enter_sandbox``):
environment replaced, limits written into its control group, privileges dropped when a user is
given, code directory as working directory. Only then does it import user code. The config's
``program`` says what serves after that (``runtime/families.py``): this file for Python, or
``shim.py`` for custom runtimes and HTTP functions (``network: "own"`` gives those a network
namespace of their own first); a Node.js instance is node itself (``node/bootstrap.js``), which
enters its sandbox the same way.

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
write end); the template answers, in order, ``{"forked": pid, "group": name}`` with a pidfd of
the new instance (``name``: its control group under the pool's parents, "" for none), or
``{"error": message}``. ``{"fork": true, "program": "node"}`` (no descriptors) asks for a node
instance: node cannot be handed descriptors, so the template starts node standbys on pipes of
its own and answers with the pidfd followed by the service's ends of those pipes (request write
end, reply read end, log read end); see ``exec_node`` for the descriptors node gets. Whenever an instance exits the template reaps it and sends
``{"exited": pid, "returncode": code}`` (also for standbys, which the service never heard of).
``{"ready": true, "problem": text}`` is the template's first message.
"""

from __future__ import annotations

import atexit
import ctypes
import errno
import faulthandler
import fcntl
import gc
import importlib
import io
import json
import os
import platform
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

    def __init__(self, config: Header, request_id: str, timeout: float, alias: str = "") -> None:
        self._config = config
        self._request_id = request_id
        self._alias = alias
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
        return self._alias

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
    context = Context(
        config, str(header["request_id"]), float(config["timeout"]), str(header.get("alias", ""))
    )
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
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if address_space_mb <= 0:  # runtimes that reserve far more than they use (node, Java)
        return
    wanted = address_space_mb * 1024 * 1024
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


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


def _prctl() -> Any:
    try:
        return _libc().prctl
    except (OSError, AttributeError):
        return None


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


# The sandbox: namespaces and control groups. The service decides what to use (its
# ``sandbox.py`` and ``cgroups.py``) and hands it over as plain data; this side only acts on it.
CLONE_NEWNS = 0x00020000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
_SYS_CLONE = {"x86_64": 56, "aarch64": 220}
_MS_NOSUID, _MS_NODEV, _MS_NOEXEC, _MS_REC, _MS_PRIVATE = 2, 4, 8, 1 << 14, 1 << 18
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 1
_IFREQ = struct.Struct("16sh14x")

# This instance's control group: one directory per hierarchy, set once it has joined them.
_GROUP: dict[str, str] = {}


def clone_flags(sandbox: Header) -> int:
    """The namespaces an instance gets: its own processes and mounts, and maybe network."""
    if not sandbox.get("namespaces"):
        return 0
    flags = CLONE_NEWPID | CLONE_NEWNS
    return flags | CLONE_NEWNET if sandbox.get("network") == "loopback" else flags


def fork_into(flags: int) -> int:
    """``os.fork()``, but the child starts in new namespaces (``clone(2)`` with ``flags``).

    In a new PID namespace the child is process 1 and sees only its own descendants. CPython
    has no clone; its fork hooks run around the system call exactly as ``os.fork`` runs them.
    """
    if not flags:
        return os.fork()
    number = _SYS_CLONE.get(platform.machine())
    if number is None:
        raise OSError(errno.ENOSYS, "clone: unknown system call number on this machine")
    libc = _libc()
    libc.syscall.restype = ctypes.c_long
    ctypes.pythonapi.PyOS_BeforeFork()
    pid = libc.syscall(number, flags | signal.SIGCHLD, 0, 0, 0, 0)
    if pid == 0:
        ctypes.pythonapi.PyOS_AfterFork_Child()
        return 0
    ctypes.pythonapi.PyOS_AfterFork_Parent()
    if pid < 0:
        code = ctypes.get_errno()
        raise OSError(code, f"clone: {os.strerror(code)}")
    return int(pid)


def enter_namespaces(flags: int) -> None:
    """In a new namespace: mount a /proc of its own (so only its processes show) and bring up
    the loopback of a new network namespace. Mounts stay private to the instance."""
    if not flags:
        return
    libc = _libc()
    for args in (
        (None, b"/", None, _MS_REC | _MS_PRIVATE, None),
        (b"proc", b"/proc", b"proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, None),
    ):
        if libc.mount(*args) != 0:
            code = ctypes.get_errno()
            raise OSError(code, f"mount {args[1]!r}: {os.strerror(code)}")
    if flags & CLONE_NEWNET:
        _loopback_up()


OWN_NETWORK = "own"
_CLONE_NEWUSER = 0x10000000


def enter_own_network() -> None:
    """A network namespace with only a loopback, for an instance whose server must listen on
    FunctionGraph's fixed port without meeting any other's. Unprivileged, a user namespace
    mapping only this user comes with it (the kernel allows that to anyone)."""
    libc = _libc()
    uid, gid = os.getuid(), os.getgid()
    flags = CLONE_NEWNET if os.geteuid() == 0 else CLONE_NEWNET | _CLONE_NEWUSER
    if libc.unshare(flags) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"unshare: {os.strerror(code)}")
    if flags & _CLONE_NEWUSER:
        _write_file("/proc/self/setgroups", "deny")
        _write_file("/proc/self/uid_map", f"{uid} {uid} 1")
        _write_file("/proc/self/gid_map", f"{gid} {gid} 1")
    _loopback_up()


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        _, ifflags = _IFREQ.unpack(fcntl.ioctl(probe, _SIOCGIFFLAGS, _IFREQ.pack(b"lo", 0)))
        fcntl.ioctl(probe, _SIOCSIFFLAGS, _IFREQ.pack(b"lo", ifflags | _IFF_UP))


def join_group(dirs: dict[str, str], pid: int = 0) -> None:
    """Move ``pid`` (0: this process) into the group ``dirs`` (hierarchy → directory)."""
    for directory in dirs.values():
        _write_file(os.path.join(directory, "cgroup.procs"), str(pid))


def enter_group(limits: dict[str, dict[str, str]]) -> None:
    """Write the function's limits (hierarchy → file → value) into this instance's group,
    while still privileged: the files are root's, so the instance cannot raise them."""
    for hierarchy, files in limits.items():
        for name, value in files.items():
            _write_file(os.path.join(_GROUP[hierarchy], name), value)


def _write_file(path: str, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


_LIBC: list[Any] = []


def _libc() -> Any:
    if not _LIBC:
        _LIBC.append(ctypes.CDLL(None, use_errno=True))
    return _LIBC[0]


def enter_sandbox(config: Header, parent: int, path_dirs: dict[str, int]) -> str:
    """Become the instance ``config`` describes; returns why not, or "" on success."""
    user = config.get("user")
    try:
        enter_group(config.get("cgroup_limits") or {})
    except (OSError, KeyError) as exc:
        return f"function instance could not enter its control group: {exc}"
    if config.get("network") == OWN_NETWORK:
        try:
            enter_own_network()
        except OSError as exc:
            return f"function instance could not get a network of its own: {exc}"
    try:
        apply_limits(int(config["address_space_mb"]))
        if user is not None:
            os.setgroups(user["groups"])
            os.setgid(user["gid"])
            os.setuid(user["uid"])
    except OSError as exc:
        return f"function instance could not drop privileges to {user}: {exc}"
    # Only now: nothing of the function's environment is seen by a privileged process.
    os.environ.clear()
    os.environ.update(config["env"])
    if "tempfile" in sys.modules:  # the template may have cached its own TMPDIR
        setattr(sys.modules["tempfile"], "tempdir", None)  # noqa: B010
    _die_with_parent(parent)
    alias_path_dirs(path_dirs, _inaccessible)
    code_dir = str(config["code_dir"])
    try:
        os.chdir(code_dir)
    except OSError as exc:
        return f"function instance cannot enter its code directory: {exc}"
    return ""


SHIM = "shim"
_SHIM: list[Any] = []


def load_shim() -> Any:
    """``shim.py`` beside this file, loaded by path (this file runs without openfgs on its
    path). Loaded while still privileged, and by the template before it forks anything, so an
    instance user need not be able to read the service's files."""
    if not _SHIM:
        import importlib.util

        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "shim.py")
        spec = importlib.util.spec_from_file_location("openfgs_shim", path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {path}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _SHIM.append(module)
    return _SHIM[0]


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
    shim = None
    if config.get("program") == SHIM:
        try:
            shim = load_shim()
        except Exception as exc:
            channel.send({"status": FUNCTION_ERROR, "message": f"runtime unavailable: {exc}"})
            return 0
    problem = enter_sandbox(config, parent, path_dirs)
    if problem:
        channel.send({"status": FUNCTION_ERROR, "message": problem})
        return 0
    if shim is not None:  # a custom runtime or an HTTP function: its bootstrap serves
        return int(shim.serve(channel, config))
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
    SHIM,  # custom runtimes and HTTP functions
)


def serve_template(sock_fd: int, run_as: tuple[int, int] | None, sandbox: Header) -> int:
    """Fork instances on request until the service closes the socket.

    ``run_as``: the user instances will switch to, so the template can route imports the way
    that user needs before it imports anything, once for all its instances. ``sandbox``: the
    namespaces and control groups instances get (see ``Template``).
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
    template = Template(sock, (wake_read, wake_write), alias_fds, sandbox)
    try:
        template.serve()
    except ConnectionError:  # the service went away while we were answering
        pass
    return 0


# Instances forked ahead of need: entering namespaces and joining control groups costs more
# than the rest of a cold start, so it is done while the template has nothing else to do.
STANDBYS = 2
# Started node processes kept ahead of need, once a Node.js function has run here: node takes
# ~100 ms to start, which is most of a cold start. Each costs ~40 MB while it waits. V8 sizes
# its heap when node starts, so a standby is for one memory size: two for the size asked for
# last, one for the size before it.
NODE_STANDBYS = (2, 1)
NODE = "node"


def node_heap_mb(memory_size: int) -> int:
    """V8's old-space limit for a function of ``memory_size`` MB: the rest is node's own
    memory (~35 MB) and the young generation. Without it V8 sizes its heap for the host and
    collects too late, and the control group kills a function that only made garbage."""
    return max(memory_size * 3 // 4, 32)


def node_argv(argv: list[str], memory_size: int) -> list[str]:
    """``argv`` (node, bootstrap.js) with the heap limit of ``memory_size``."""
    return [argv[0], f"--max-old-space-size={node_heap_mb(memory_size)}", *argv[1:]]


class Standby:
    """A process forked ahead of need, waiting in its sandbox for an instance's pipes.

    A Python standby is given the service's pipes through ``sock``. A node standby has
    exec'd node on pipes of the template's making (node cannot receive descriptors): the
    template keeps their other ends in ``pipes`` (request write, reply read, log read) and
    hands those to the service instead.
    """

    def __init__(
        self,
        pid: int,
        pidfd: int,
        sock: socket.socket | None,
        group: str,
        pipes: tuple[int, ...] = (),
    ) -> None:
        self.pid = pid
        self.pidfd = pidfd
        self.sock = sock  # the template's end; the pipes go through it
        self.group = group  # its control group's name under each of the pool's parents
        self.pipes = pipes
        self.memory = 0  # a node standby's memory size (its heap limit)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        os.close(self.pidfd)
        for fd in self.pipes:
            os.close(fd)
        self.pipes = ()


class Template:
    """The template's side of the socket, and the standbys it keeps.

    A standby is forked (into new PID and mount namespaces when ``sandbox["namespaces"]``),
    mounts its own /proc, and is moved into a new control group (``sandbox["cgroups"]``:
    hierarchy → the pool's parent directory) before it is needed. A fork request hands the
    instance's pipes to the oldest standby, which becomes the instance; the template makes
    the next standby as soon as it is idle.
    """

    def __init__(
        self,
        sock: socket.socket,
        wake_fds: tuple[int, int],
        alias_fds: list[int],
        sandbox: Header,
    ) -> None:
        self._sock = sock
        self._wake_fds = wake_fds
        self._alias_fds = alias_fds
        self._flags = clone_flags(sandbox)
        self._parents: dict[str, str] = dict(sandbox.get("cgroups") or {})
        self._standbys: list[Standby] = []
        self._node: list[str] = list(sandbox.get("node") or [])  # argv: node, bootstrap.js
        self._node_standbys: list[Standby] = []
        # Memory size → node standbys to keep; none until a Node.js instance is asked for.
        self._node_wanted: dict[int, int] = {}
        self._made = 0
        self._broken = ""  # why standbys cannot be made; then only requests try again
        self._preload = list(PRELOAD)

    def serve(self) -> None:
        """Answer requests; refill standbys, then preload modules, while idle."""
        poller = select.poll()
        poller.register(self._sock.fileno(), select.POLLIN)
        poller.register(self._wake_fds[0], select.POLLIN)
        self._refill()
        self._sock.send(json.dumps({"ready": True, "problem": self._broken}).encode())
        quiet = False
        while True:
            if self._wants_standby():
                timeout: int | None = 0
            elif self._preload:  # preloading waits for a quiet moment
                timeout = 0 if quiet else PRELOAD_AFTER_MS
            else:
                timeout = None
            events = poller.poll(timeout)
            quiet = not events
            if quiet and self._wants_standby():
                self._refill()
            elif quiet and self._preload:
                _preload(self._preload.pop(0))
            for fd, _ in events:
                if fd == self._wake_fds[0]:
                    while _drain(fd):
                        pass
                    self._reap()
                elif not self._serve_fork_request():
                    return

    def _wants_standby(self) -> bool:
        if self._broken:
            return False
        return len(self._standbys) < STANDBYS or self._node_lacking() is not None

    def _node_lacking(self) -> int | None:
        """A memory size with fewer node standbys than wanted."""
        for memory, wanted in self._node_wanted.items():
            if sum(1 for s in self._node_standbys if s.memory == memory) < wanted:
                return memory
        return None

    def _refill(self) -> None:
        try:
            if len(self._standbys) < STANDBYS:
                self._standbys.append(self._make_standby())
            elif (memory := self._node_lacking()) is not None:
                self._node_standbys.append(self._make_node_standby(memory))
        except OSError as exc:
            self._broken = f"cannot prepare an instance: {exc}"

    def _new_group(self) -> tuple[str, dict[str, str]]:
        self._made += 1
        name = f"i{os.getpid()}-{self._made}"
        dirs = {key: os.path.join(parent, name) for key, parent in self._parents.items()}
        for directory in dirs.values():
            os.mkdir(directory, 0o755)
        return name, dirs

    def _fork_standby(self, dirs: dict[str, str], become: Callable[[], int]) -> int:
        gc.freeze()  # the collector would otherwise copy every page of the template it visits
        try:
            pid = fork_into(self._flags)
        except OSError:
            _remove_dirs(dirs)
            raise
        if pid == 0:
            _exit_after(become)
        return pid

    def _placed(self, standby: Standby, dirs: dict[str, str], kept: list[Standby]) -> Standby:
        try:
            join_group(dirs, standby.pid)
        except OSError:
            os.kill(standby.pid, signal.SIGKILL)
            kept.append(standby)  # reaped, closed and removed as it exits
            raise
        return standby

    def _make_standby(self) -> Standby:
        name, dirs = self._new_group()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            pid = self._fork_standby(dirs, lambda: self._become_instance(ours, theirs, dirs))
        finally:
            theirs.close()
        standby = Standby(pid, os.pidfd_open(pid), ours, name)
        return self._placed(standby, dirs, self._standbys)

    def _make_node_standby(self, memory: int) -> Standby:
        """A node process started on pipes of ours, waiting in its sandbox for its config."""
        if not self._node:
            raise OSError(errno.ENOENT, "node is not installed")
        name, dirs = self._new_group()
        request = os.pipe2(os.O_CLOEXEC)
        reply = os.pipe2(os.O_CLOEXEC)
        output = os.pipe2(os.O_CLOEXEC)
        theirs = (request[0], reply[1], output[1])
        try:
            pid = self._fork_standby(dirs, lambda: self._become_node(theirs, dirs, memory))
        except OSError:
            for fd in (*request, *reply, *output):
                os.close(fd)
            raise
        for fd in theirs:
            os.close(fd)
        pipes = (request[1], reply[0], output[0])
        standby = Standby(pid, os.pidfd_open(pid), None, name, pipes)
        standby.memory = memory
        return self._placed(standby, dirs, self._node_standbys)

    def _shed_template(self) -> None:
        """In a forked standby: close what is the template's, not the instance's."""
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.close(self._sock.detach())
        for fd in self._wake_fds:
            os.close(fd)
        for other in (*self._standbys, *self._node_standbys):
            other.close()

    def _become_instance(
        self, ours: socket.socket, theirs: socket.socket, dirs: dict[str, str]
    ) -> int:
        """In the standby: shed the template, wait for the pipes, serve as an instance."""
        ours.close()
        self._shed_template()
        parent = os.getppid()  # 0 in a new PID namespace: the template is outside it
        _die_with_parent(parent)
        enter_namespaces(self._flags)
        _GROUP.update(dirs)
        message, fds, _, _ = socket.recv_fds(theirs, 64, 3)
        theirs.close()
        if not message or len(fds) != 3:  # the template went away
            return 0
        os.setsid()  # its own session and process group, so one killpg ends what it starts
        request_fd, reply_fd, output_fd = fds
        os.dup2(output_fd, 1)
        os.dup2(output_fd, 2)
        os.close(output_fd)
        _close_stray_fds(keep=(request_fd, reply_fd, *self._alias_fds))
        return serve_instance(request_fd, reply_fd, parent, {})

    def _become_node(self, fds: tuple[int, int, int], dirs: dict[str, str], memory: int) -> int:
        """In the standby: shed the template, become node on ``fds`` (request read, reply
        write, log write); it waits for its config frame and enters its sandbox itself."""
        self._shed_template()
        _die_with_parent(os.getppid())
        enter_namespaces(self._flags)
        os.setsid()
        exec_node(node_argv(self._node, memory), *fds, {"group": dirs})

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            for kept in (self._standbys, self._node_standbys):
                for standby in [s for s in kept if s.pid == pid]:
                    kept.remove(standby)  # died before it was needed
                    standby.close()
                    groups = {k: os.path.join(p, standby.group) for k, p in self._parents.items()}
                    _remove_dirs(groups)
            code = os.waitstatus_to_exitcode(status)
            self._sock.send(json.dumps({"exited": pid, "returncode": code}).encode())

    def _serve_fork_request(self) -> bool:
        """Hand one instance's pipes to a standby; False when the service has gone."""
        try:
            message, fds, _, _ = socket.recv_fds(self._sock, 4096, 3, socket.MSG_CMSG_CLOEXEC)
        except ConnectionError:
            return False
        if not message:
            return False
        request = json.loads(message)
        if request.get("program") == NODE:
            for fd in fds:
                os.close(fd)
            self._serve_node_request(int(request.get("memory_size") or 128))
            return True
        try:
            if len(fds) != 3:
                self._send({"error": f"expected 3 descriptors, got {len(fds)}"})
                return True
            standby = self._hand_over(fds)
        except OSError as exc:
            self._send({"error": f"fork failed: {exc}"})
            return True
        finally:
            for fd in fds:
                os.close(fd)
        reply = {"forked": standby.pid, "group": standby.group if self._parents else ""}
        socket.send_fds(self._sock, [json.dumps(reply).encode()], [standby.pidfd])
        standby.close()
        return True

    def _serve_node_request(self, memory: int) -> None:
        """Hand a started node standby of ``memory`` MB, with the service's ends of its
        pipes, over; keep standbys for this size and the one asked for before it."""
        self._want_node(memory)
        try:
            matching = [s for s in self._node_standbys if s.memory == memory]
            if matching:
                standby = matching[0]
                self._node_standbys.remove(standby)
            else:
                standby = self._make_node_standby(memory)
        except OSError as exc:
            self._send({"error": f"cannot start node: {exc}"})
            return
        reply = {"forked": standby.pid, "group": standby.group if self._parents else ""}
        socket.send_fds(self._sock, [json.dumps(reply).encode()], [standby.pidfd, *standby.pipes])
        standby.close()

    def _want_node(self, memory: int) -> None:
        sizes = [m for m in self._node_wanted if m != memory][-(len(NODE_STANDBYS) - 1) :]
        sizes = [*sizes, memory] if len(NODE_STANDBYS) > 1 else [memory]
        self._node_wanted = dict(zip(sizes, reversed(NODE_STANDBYS[: len(sizes)]), strict=True))
        kept: dict[int, int] = {}
        for standby in self._node_standbys:  # surplus: a size asked for less, or no more
            kept[standby.memory] = kept.get(standby.memory, 0) + 1
            if kept[standby.memory] > self._node_wanted.get(standby.memory, 0):
                os.kill(standby.pid, signal.SIGKILL)  # reaped, closed and removed as any

    def _hand_over(self, fds: list[int]) -> Standby:
        while True:
            standby = self._standbys.pop(0) if self._standbys else self._make_standby()
            assert standby.sock is not None  # a Python standby's
            try:
                socket.send_fds(standby.sock, [b"go"], fds)
                return standby
            except OSError:  # it died meanwhile; its exit is reported when it is reaped
                standby.close()

    def _send(self, message: Header) -> None:
        self._sock.send(json.dumps(message).encode())


def exec_node(argv: list[str], request: int, reply: int, output: int, options: Header) -> NoReturn:
    """Become node running the Node.js bootstrap: request pipe on fd 3, reply pipe on fd 4,
    the log on fds 1 and 2 and a private copy on fd 5 (for its end-of-segment markers)."""
    # Out of the way of the numbers they are going to, then into place.
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (request, reply, output)]
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    for fd, target in zip((*high, high[2], high[2]), (3, 4, 5, 1, 2), strict=True):
        os.dup2(fd, target)  # inheritable: these are what node keeps
    _close_stray_fds(keep=(3, 4, 5))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # as every instance: no core dumps
    os.execve(argv[0], [*argv, json.dumps(options)], dict(os.environ))


def _remove_dirs(dirs: dict[str, str]) -> None:
    for directory in dirs.values():
        try:
            os.rmdir(directory)
        except OSError:
            pass


def _exit_after(run: Callable[[], int]) -> NoReturn:
    """Run a forked child's work and exit as a fresh interpreter would; never returns."""
    code = 1
    try:
        code = run()
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


def _preload(name: str) -> None:
    try:
        if name == SHIM:
            load_shim()
        else:
            importlib.import_module(name)
    except Exception:  # a module missing from this build only costs the instance its import
        pass


def _drain(fd: int) -> bool:
    try:
        return bool(os.read(fd, 512))
    except BlockingIOError:
        return False


def probe(sandbox: Header) -> int:
    """Exit 0 when an instance could enter ``sandbox``'s namespaces here; else say why."""
    flags = clone_flags(sandbox)
    try:
        pid = fork_into(flags)
    except OSError as exc:
        print(exc, file=sys.stderr)
        return 1
    if pid == 0:
        try:
            enter_namespaces(flags)
        except OSError as exc:
            print(exc, file=sys.stderr)
            os._exit(1)
        os._exit(0)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def _mirror_exit(pid: int) -> int:
    """Wait for the instance in its namespaces and exit the way it did."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    if code < 0:
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    return code


def main(argv: list[str]) -> int:
    """Run as the template, as a probe, or as one instance started by the service."""
    if argv[1] == "template":
        options = json.loads(argv[3]) if len(argv) > 3 else {}
        run_as = options.get("run_as")
        user = (int(run_as[0]), int(run_as[1])) if run_as else None
        return serve_template(int(argv[2]), user, options.get("sandbox") or {})
    if argv[1] == "probe":
        return probe(json.loads(argv[2]))
    request_fd, reply_fd = int(argv[1]), int(argv[2])
    sandbox = json.loads(argv[3]) if len(argv) > 3 else {}
    flags = clone_flags(sandbox)
    parent = os.getppid()
    _close_stray_fds(keep=(request_fd, reply_fd))
    path_dirs = open_path_dirs()
    join_group(sandbox.get("group") or {})  # the group the service made for this instance
    _GROUP.update(sandbox.get("group") or {})
    if flags:
        # The instance runs in new namespaces as this process's child; this one only waits.
        pid = fork_into(flags)
        if pid:
            os.close(request_fd)
            os.close(reply_fd)
            return _mirror_exit(pid)
        parent = os.getppid()
        _die_with_parent(parent)
        enter_namespaces(flags)
    if sandbox.get("node"):  # a Node.js instance: node reads the config frame itself
        os.setsid()
        argv = node_argv(sandbox["node"], int(sandbox.get("memory_size") or 128))
        exec_node(argv, request_fd, reply_fd, 1, {"group": _GROUP})
    return serve_instance(request_fd, reply_fd, parent, path_dirs)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
