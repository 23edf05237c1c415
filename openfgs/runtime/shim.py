"""Custom runtimes and HTTP functions: the part of an instance that runs the code's ``bootstrap``.

The Python bootstrap (``bootstrap.py``) reads the config frame and enters the sandbox; for the
runtimes ``Custom`` and ``http`` it then loads this file by path (standard library only: it runs
under ``python -I -S`` and is not imported as part of openfgs) and calls
``serve(channel, config)``. The protocol towards the service is the Python instance's: one load
frame, then one reply per invocation frame.

Both runtimes start ``bootstrap`` from the code root once per instance, with the function's
environment, the code directory as working directory, stdin ``/dev/null`` and stdout/stderr the
instance's log. A bootstrap that is executable is executed (a script without a ``#!`` line runs
under ``/bin/sh``, as a shell would run it); whatever it starts is killed with the instance.

**Custom runtime** (FunctionGraph's runtime API). The bootstrap gets
``RUNTIME_API_ADDR=127.0.0.1:<port>`` and talks HTTP/1.1 to it:

- ``GET /v1/runtime/invocation/request`` waits for the next invocation and answers 200 with the
  event as body and the headers ``X-Cff-Request-Id``, ``X-Cff-Invoke-Type`` (``sync``/``async``)
  and ``Content-Type: application/json``. No agency credential headers are sent: openfgs has no
  agency credentials, and FunctionGraph sends them only when an agency is configured.
- ``POST /v1/runtime/invocation/response/<id>`` (the result) and ``.../error/<id>`` (an error
  object; ``{"errorMessage", "errorType"}`` by convention) end that invocation with 200. The body
  is taken raw, whatever its Content-Type (curl's ``-d`` says form-urlencoded; nothing is
  decoded), with Content-Length or chunked. An id that is not the running invocation's is 404,
  one already answered 409; a result larger than the invocation's ``max_result_bytes`` is 413
  and ends it as ``result_too_large``. Any other path is 404, another method 405, a malformed
  request 400 (414/431 for a request line or headers over 64 KiB, 501 for a transfer coding
  other than chunked); the connection is then closed and the API serves on.
- An error body that is JSON is the error object as it is; any other body becomes
  ``{"errorMessage": <text>, "errorType": "FunctionError"}``.
- The instance is loaded when the bootstrap first asks for an invocation.
- On hosts where instances share the network, other functions can reach the port; a
  connection is accepted only from a socket owned by this instance's own uid (asked of the
  kernel with sock_diag, else looked up in ``/proc/net/tcp``/``tcp6``). Under strict isolation each function runs as a user of its own,
  so only the function's own processes get in; where functions share one uid (relaxed
  isolation, a service not running as root) they are not kept apart by this.

**HTTP functions.** The bootstrap holds a start command and is run with ``/bin/sh`` when it is
not executable (FunctionGraph's samples have no ``#!`` line). The instance is loaded once
``127.0.0.1:<http_port>`` accepts a connection. Each invocation becomes one HTTP/1.1 request on
a keep-alive connection (opened again when the function closed it):

- An APIG event (an object with ``httpMethod``, as an HTTP trigger builds it) is sent as
  ``httpMethod path?queryStringParameters`` with its headers and body (base64-decoded when
  ``isBase64Encoded``). Any other event — a plain ``InvokeFunction`` body such as ``{"a": 1}``
  — is sent as FunctionGraph does, ``POST /`` with the event JSON as an ``application/json``
  body: a web framework sees an ordinary JSON POST.
- Hop-by-hop headers are dropped both ways; the caller's ``X-CFF-*`` headers are replaced by the
  platform's (``X-CFF-Request-Id``, ``-Memory``, ``-Timeout``, ``-Func-Version``,
  ``-Func-Name``, ``-Project-Id``, ``-Package``, ``-Region``), so none can be forged.
- The answer becomes ``{"body": <base64>, "headers": {name: [values]}, "statusCode": n,
  "isBase64Encoded": true}`` (FunctionGraph's observed shape); Content-Length is dropped as the
  body carries its length. An answer that is not HTTP, or a closed connection, fails the
  invocation with a message saying so.

**The bootstrap process.** If it exits during an invocation, that invocation fails with its exit
status (the reply says ``"reusable": false``) and ``serve`` returns; if it exits between
invocations, the instance exits at once, so the service starts a new one rather than sending
the next invocation to a dead instance. Either way the instance exits with the bootstrap's exit
code (128 + the signal number when a signal killed it). The
service enforces timeouts by killing the instance; nothing here keeps time for it.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import http
import http.client
import ipaddress
import json
import os
import resource
import select
import signal
import socket
import stat
import struct
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO, Protocol
from urllib.parse import quote, urlencode

# Reply statuses, as bootstrap.py names them.
OK = "ok"
FUNCTION_ERROR = "function_error"
RESULT_TOO_LARGE = "result_too_large"

Header = dict[str, Any]

DEFAULT_HTTP_PORT = 8000
# The service waits for the load frame max(timeout, 30 s); an HTTP server gets as long to listen.
MIN_START_SECONDS = 30.0
START_POLL_SECONDS = 0.02
# Runtime API bounds: request line and headers together, connections at once, answered ids kept
# to tell a repeated answer (409) from an unknown id (404).
MAX_HEAD_BYTES = 64 * 1024
MAX_CONNECTIONS = 64
ANSWERED_KEPT = 256
# How often a long poll checks that its client is still there.
POLL_CHECK_SECONDS = 1.0
MAX_MESSAGE_CHARS = 4096
TCP_ESTABLISHED = 1
TCP_LISTEN = 10

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "expect",
    }
)
_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


class Channel(Protocol):
    """bootstrap.Channel, as far as the shim uses it."""

    def receive(self) -> tuple[Header, bytes] | None: ...

    def send(self, header: Header, body: bytes = b"") -> None: ...


def serve(channel: Channel, config: Header) -> int:
    """Start the bootstrap, then serve invocations until the service closes the channel."""
    runtime: Runtime = (
        HttpFunction(config) if config.get("runtime") == "http" else CustomRuntime(config)
    )
    try:
        with runtime.child.busy():
            problem = runtime.start()
            channel.send({"status": FUNCTION_ERROR if problem else OK, "message": problem})
        while not problem and runtime.child.exit_code is None:
            frame = channel.receive()
            if frame is None:
                break
            with runtime.child.busy():
                reply, body = runtime.invoke(*frame)
                channel.send(reply, body)
    finally:
        runtime.stop()
    return runtime.child.instance_exit_code()


def say(text: str) -> None:
    """A diagnostic line about the runtime, into the function's log."""
    with contextlib.suppress(OSError):
        os.write(2, f"openfgs: {text}\n".encode())


def reply(status: str, message: str, started: float, maxrss_kb: int) -> Header:
    """A reply frame header."""
    return {
        "status": status,
        "message": message[:MAX_MESSAGE_CHARS],
        "duration_ms": (time.perf_counter() - started) * 1000,
        "maxrss_kb": maxrss_kb,
    }


class Child:
    """The process started from ``bootstrap``, reaped by a thread of its own.

    The thread reaps every child (as process 1 of a PID namespace the instance inherits orphans)
    until the bootstrap exits. Exiting between invocations ends the instance at once.
    """

    def __init__(self, changed: threading.Condition) -> None:
        self._changed = changed  # notified when the child exits
        self._process: subprocess.Popen[bytes] | None = None
        self.exit_code: int | None = None  # as os.waitstatus_to_exitcode gives it
        self._busy = False
        self._stopping = False

    @property
    def pid(self) -> int:
        return self._process.pid if self._process else 0

    def spawn(self, argv: list[str], env: dict[str, str], cwd: str) -> str:
        """Start the bootstrap; returns why it could not start, or ""."""
        try:
            self._process = subprocess.Popen(
                argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, close_fds=True
            )
        except OSError as exc:
            if exc.errno == errno.ENOEXEC and argv[0] != "/bin/sh":
                return self.spawn(["/bin/sh", argv[0]], env, cwd)  # a script with no #! line
            return f"the bootstrap could not be started: {exc.strerror or exc}"
        threading.Thread(target=self._reap, name="reaper", daemon=True).start()
        return ""

    def describe(self) -> str:
        """How the bootstrap ended."""
        code = self.exit_code
        if code is not None and code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = "unknown"
            return f"the bootstrap was killed by signal {-code} ({name})"
        return f"the bootstrap exited with code {code}"

    @contextlib.contextmanager
    def busy(self) -> Iterator[None]:
        """While an invocation runs, an exit is reported to it rather than ending the instance."""
        with self._changed:
            self._busy = True
        try:
            yield
        finally:
            with self._changed:
                self._busy = False

    def stop(self) -> None:
        """Kill the bootstrap (the service kills the rest of the instance's processes)."""
        with self._changed:
            if self._process is None or self.exit_code is not None:
                return
            self._stopping = True
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._process.pid, signal.SIGKILL)

    def _reap(self) -> None:
        assert self._process is not None
        while True:
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                status = 0  # reaped elsewhere; nothing more can be learnt
                break
            if pid == self._process.pid:
                break
        code = os.waitstatus_to_exitcode(status)
        with self._changed:
            self.exit_code = self._process.returncode = code
            self._changed.notify_all()
            if self._stopping:
                return
            say(f"{self.describe()}; the instance stops")
            if not self._busy:
                os._exit(self.instance_exit_code())

    def instance_exit_code(self) -> int:
        """What the instance exits with: 0 while the bootstrap runs (or was stopped), else the
        bootstrap's exit code, 128 + the signal number when a signal killed it."""
        code = self.exit_code
        if code is None or self._stopping:
            return 0
        return 128 - code if code < 0 else code


class Runtime:
    """What ``serve`` drives: start the bootstrap, run invocations, stop."""

    def __init__(self, config: Header) -> None:
        self.config = config
        self.code_dir = str(config["code_dir"])
        self.changed = threading.Condition()
        self.child = Child(self.changed)

    def start(self) -> str:
        """Start the bootstrap and wait until it is ready; returns why not, or ""."""
        raise NotImplementedError

    def invoke(self, header: Header, event: bytes) -> tuple[Header, bytes]:
        """Run one invocation; the reply frame."""
        raise NotImplementedError

    def stop(self) -> None:
        self.child.stop()

    def maxrss_kb(self) -> int:
        return tree_maxrss_kb(self.child.pid)

    def failed(self, message: str, started: float, status: str = FUNCTION_ERROR) -> Header:
        return reply(status, message, started, self.maxrss_kb())

    def ended(self, started: float) -> Header:
        """The reply of an invocation the bootstrap's exit ended; the instance ends too, which
        ``reusable`` tells the service before it sees the process go."""
        return {**self.failed(self.child.describe(), started), "reusable": False}


def bootstrap_argv(code_dir: str, must_be_executable: bool) -> tuple[list[str], str]:
    """How to start the code's bootstrap, or why it cannot be."""
    path = os.path.join(code_dir, "bootstrap")
    try:
        info = os.stat(path)
    except OSError:
        info = None
    if info is None or not stat.S_ISREG(info.st_mode):
        if must_be_executable:
            return [], "the code has no executable bootstrap at its root"
        return [], "the code has no bootstrap file at its root"
    if os.access(path, os.X_OK):
        return [path], ""
    if must_be_executable:
        return [], "the code has no executable bootstrap at its root (it is not executable)"
    return ["/bin/sh", path], ""


def tree_maxrss_kb(root: int, most: int = 1000) -> int:
    """Peak resident memory of the bootstrap and its descendants (their sum), in KiB."""
    total, stack, seen = 0, [root] if root else [], set[int]()
    while stack and len(seen) < most:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        total += _status_kb(pid, "VmHWM:")
        stack.extend(_children(pid))
    return max(total, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)


def _status_kb(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(key):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as children:
                found.extend(int(child) for child in children.read().split())
    except (OSError, ValueError):
        pass
    return found


# ---------------------------------------------------------------------------------------------
# Custom runtime (plain classes, not dataclasses: those need the module in sys.modules, which a
# module loaded by path need not be)


class Invocation:
    """One invocation on its way through the runtime API."""

    def __init__(
        self, request_id: str, invoke_type: str, event: bytes, max_result_bytes: int
    ) -> None:
        self.request_id = request_id
        self.invoke_type = invoke_type
        self.event = event
        self.max_result_bytes = max_result_bytes
        # (route "response"/"error", body), or (TOO_LARGE, b""), once answered.
        self.outcome: tuple[str, bytes] | None = None


TOO_LARGE = "too_large"


class Invocations:
    """The invocation in flight, shared by the frame loop and the runtime API's threads."""

    def __init__(self, changed: threading.Condition, child: Child) -> None:
        self._changed = changed
        self._child = child
        self._waiting: Invocation | None = None  # sent by the service, not yet taken
        self._running: Invocation | None = None  # taken by the bootstrap, not yet answered
        self._answered: deque[str] = deque(maxlen=ANSWERED_KEPT)
        self.polled = False  # the bootstrap has asked for an invocation: it is ready
        self.closed = False

    def run(self, invocation: Invocation) -> tuple[str, bytes] | None:
        """Offer ``invocation`` and wait for its outcome; None when the bootstrap exited."""
        with self._changed:
            self._waiting = invocation
            self._changed.notify_all()
            self._changed.wait_for(
                lambda: invocation.outcome is not None or self._child.exit_code is not None
            )
            self._waiting = self._running = None
            return invocation.outcome

    def wait_ready(self) -> bool:
        """Wait until the bootstrap first asks for an invocation; False if it exited first."""
        with self._changed:
            self._changed.wait_for(lambda: self.polled or self._child.exit_code is not None)
            return self.polled

    def take(self, gone: Callable[[], bool]) -> Invocation | None:
        """The next invocation for a long poll; None when its client left or the API closed."""
        with self._changed:
            if not self.polled:
                self.polled = True
                self._changed.notify_all()
            while True:
                if gone():  # an abandoned poll must not take, or hold a thread for, the next
                    return None
                if self._waiting is not None or self.closed:
                    break
                self._changed.wait(POLL_CHECK_SECONDS)
            invocation, self._waiting = self._waiting, None
            if invocation is not None:
                self._running = invocation
            return invocation

    def put_back(self, invocation: Invocation) -> None:
        """The poll that took ``invocation`` could not hand it over: offer it again."""
        with self._changed:
            if self._running is invocation:
                self._running, self._waiting = None, invocation
                self._changed.notify_all()

    def limit_for(self, request_id: str) -> tuple[int, int]:
        """(HTTP status, result limit) for an answer to ``request_id``: 200 if it is running."""
        with self._changed:
            if self._running is not None and self._running.request_id == request_id:
                return 200, self._running.max_result_bytes
            return (409 if request_id in self._answered else 404), 0

    def answer(self, request_id: str, route: str, body: bytes) -> int:
        """End the running invocation with ``route``'s ``body``; the HTTP status to answer."""
        with self._changed:
            running = self._running
            if running is None or running.request_id != request_id:
                return 409 if request_id in self._answered else 404
            running.outcome = (route, body)
            self._running = None
            self._answered.append(request_id)
            self._changed.notify_all()
            return 200

    def close(self) -> None:
        with self._changed:
            self.closed = True
            self._changed.notify_all()


class CustomRuntime(Runtime):
    """``runtime: "Custom"``: the bootstrap fetches invocations from the runtime API."""

    def __init__(self, config: Header) -> None:
        super().__init__(config)
        self.invocations = Invocations(self.changed, self.child)
        self.api: RuntimeApi | None = None

    def start(self) -> str:
        argv, problem = bootstrap_argv(self.code_dir, must_be_executable=True)
        if problem:
            return problem
        try:
            self.api = RuntimeApi(self.invocations)
        except OSError as exc:
            return f"the runtime API could not listen on 127.0.0.1: {exc}"
        env = {**self.config["env"], "RUNTIME_API_ADDR": f"127.0.0.1:{self.api.port}"}
        problem = self.child.spawn(argv, env, self.code_dir)
        if problem:
            return problem
        self.api.start()
        if not self.invocations.wait_ready():
            return f"{self.child.describe()} before asking for an invocation"
        return ""

    def invoke(self, header: Header, event: bytes) -> tuple[Header, bytes]:
        started = time.perf_counter()
        invocation = Invocation(
            request_id=str(header["request_id"]),
            invoke_type=str(header.get("invoke_type") or "sync"),
            event=event,
            max_result_bytes=int(header["max_result_bytes"]),
        )
        outcome = self.invocations.run(invocation)
        if outcome is None:
            return self.ended(started), b""
        route, body = outcome
        if route == "response":
            return reply(OK, "", started, self.maxrss_kb()), body
        if route == TOO_LARGE:
            limit = invocation.max_result_bytes
            message = f"function result is more than the limit of {limit} bytes"
            return self.failed(message, started, RESULT_TOO_LARGE), b""
        message, error = error_object(body, invocation.max_result_bytes)
        return self.failed(message, started), error

    def stop(self) -> None:
        self.invocations.close()
        if self.api is not None:
            self.api.close()
        super().stop()


def error_object(body: bytes, limit: int) -> tuple[str, bytes]:
    """(message, error object JSON) for what the bootstrap posted to ``/error``."""
    text = body.decode("utf-8", "replace")
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        error = json.dumps({"errorMessage": text, "errorType": "FunctionError"}).encode()
        message = text
    else:
        error = body
        message = text
        if isinstance(value, dict) and "errorMessage" in value:
            message = str(value["errorMessage"])
            if isinstance(value.get("errorType"), str) and value["errorType"]:
                message = f"{value['errorType']}: {message}"
    if len(error) > limit:  # the service refuses a frame body over the limit
        error = b""
    return message or "the function reported an error without a message", error


class BadRequest(Exception):
    """A request the runtime API will not serve; the connection is closed after the answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Request:
    """A runtime API request's line and headers (names lower-case)."""

    def __init__(self, method: str, target: str, version: str) -> None:
        self.method = method
        self.target = target
        self.version = version
        self.headers: dict[str, str] = {}

    @property
    def keep_alive(self) -> bool:
        tokens = self.headers.get("connection", "").lower().replace(" ", "").split(",")
        return self.version == "HTTP/1.1" and "close" not in tokens

    @property
    def has_body(self) -> bool:
        return "transfer-encoding" in self.headers or self.headers.get("content-length", "0") != "0"


API_PREFIX = "/v1/runtime/invocation/"
# The runtime API's routes (the path segment after the prefix) and their methods.
ROUTES = {"request": "GET", "response": "POST", "error": "POST"}


def route_of(target: str) -> tuple[str, str] | None:
    """(route, request id) for a request target, or None when it is no route of the API."""
    path = target.partition("?")[0]
    if not path.startswith(API_PREFIX):
        return None
    name, slash, request_id = path[len(API_PREFIX) :].partition("/")
    if name == "request" and not slash:
        return name, ""
    if name in ROUTES and name != "request" and request_id and "/" not in request_id:
        return name, request_id
    return None


def read_request(reader: BinaryIO) -> Request | None:
    """The next request's line and headers (at most MAX_HEAD_BYTES); None at a clean EOF."""
    line = reader.readline(MAX_HEAD_BYTES + 1)
    if line in (b"\r\n", b"\n"):  # RFC 9112: a stray empty line before a request is ignored
        line = reader.readline(MAX_HEAD_BYTES + 1)
    if not line:
        return None
    if not line.endswith(b"\n"):
        raise BadRequest(414 if len(line) > MAX_HEAD_BYTES else 400, "incomplete request line")
    parts = line.decode("latin-1").rstrip("\r\n").split(" ")
    if len(parts) != 3 or parts[2] not in ("HTTP/1.0", "HTTP/1.1") or not _is_token(parts[0]):
        raise BadRequest(400, "malformed request line")
    request = Request(parts[0], parts[1], parts[2])
    used = len(line)
    while True:
        line = reader.readline(MAX_HEAD_BYTES + 1 - used)
        used += len(line)
        if not line.endswith(b"\n"):
            raise BadRequest(431 if used > MAX_HEAD_BYTES else 400, "incomplete request headers")
        if line in (b"\r\n", b"\n"):
            return request
        _add_header(request.headers, line.decode("latin-1"))


def _add_header(headers: dict[str, str], line: str) -> None:
    name, colon, value = line.partition(":")
    if not colon or not _is_token(name):
        raise BadRequest(400, "malformed header line")
    key, value = name.lower(), value.strip()
    if key in headers:
        if key in ("content-length", "transfer-encoding", "host"):
            raise BadRequest(400, f"repeated {name} header")
        value = f"{headers[key]}, {value}"
    headers[key] = value


def _is_token(text: str) -> bool:
    return bool(text) and all(char in _TOKEN for char in text)


def read_body(reader: BinaryIO, request: Request, limit: int) -> bytes | None:
    """The request body, or None when it is longer than ``limit`` (then left unread)."""
    encoding = request.headers.get("transfer-encoding")
    if encoding is not None:
        if encoding.lower() != "chunked":
            raise BadRequest(501, f"transfer encoding {encoding!r} is not supported")
        return _read_chunked(reader, limit)
    length = request.headers.get("content-length", "0")
    if not (length.isascii() and length.isdigit()):
        raise BadRequest(400, "malformed Content-Length")
    if int(length) > limit:
        return None
    body = reader.read(int(length))
    if len(body) < int(length):
        raise BadRequest(400, "the body is shorter than its Content-Length")
    return body


def _read_chunked(reader: BinaryIO, limit: int) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        line = reader.readline(1024)
        digits = line.partition(b";")[0].strip()
        if not line.endswith(b"\n") or not digits or digits.strip(b"0123456789abcdefABCDEF"):
            raise BadRequest(400, "malformed chunk size")
        length = int(digits, 16)
        if length == 0:
            break
        size += length
        if size > limit:
            return None
        chunk = reader.read(length)
        if len(chunk) < length or reader.readline(3) not in (b"\r\n", b"\n"):
            raise BadRequest(400, "malformed chunk")
        chunks.append(chunk)
    used = 0
    while (line := reader.readline(MAX_HEAD_BYTES + 1 - used)) not in (b"\r\n", b"\n"):
        used += len(line)  # trailers, ignored
        if not line.endswith(b"\n"):
            raise BadRequest(400, "malformed chunked trailer")
    return b"".join(chunks)


def respond(
    conn: socket.socket,
    status: int,
    body: bytes,
    headers: tuple[tuple[str, str], ...] = (),
    close: bool = False,
) -> None:
    """Send one response (JSON unless ``headers`` say otherwise)."""
    lines = [f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}"]
    lines.extend(f"{name}: {value}" for name, value in headers)
    if not any(name.lower() == "content-type" for name, _ in headers):
        lines.append("Content-Type: application/json")
    lines.append(f"Content-Length: {len(body)}")
    if close:
        lines.append("Connection: close")
    conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)


def api_error(status: int, message: str) -> bytes:
    """The runtime API's error body (the shape the runtime API's clients already parse)."""
    kind = http.HTTPStatus(status).phrase.replace(" ", "")
    return json.dumps({"errorType": kind, "errorMessage": message}).encode()


def header_value(text: str) -> str:
    """``text`` with the characters that could end a header line taken out."""
    return "".join(char for char in text if char >= " " or char == "\t").replace("\x7f", "")


class RuntimeApi:
    """The runtime API server on 127.0.0.1: a thread accepts, a thread serves each connection."""

    def __init__(self, invocations: Invocations) -> None:
        self._invocations = invocations
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=MAX_CONNECTIONS)
        self.port: int = self._listener.getsockname()[1]
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        # sock_diag answers in microseconds where /proc/net/tcp takes milliseconds on a busy
        # host; it is used when it finds our own listening socket (the kernel may lack it).
        try:
            self._diag = diag_socket("127.0.0.1", self.port, "0.0.0.0", 0) == (
                TCP_LISTEN,
                os.getuid(),
            )
        except OSError:
            self._diag = False

    def start(self) -> None:
        threading.Thread(target=self._accept_all, name="runtime-api", daemon=True).start()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
        self._listener.close()

    def _accept_all(self) -> None:
        while True:
            try:
                conn, peer = self._listener.accept()
            except OSError:
                return
            if not self._slots.acquire(blocking=False):
                conn.close()
                continue
            if self._peer_uid(peer[0], peer[1]) != os.getuid():
                self._slots.release()
                conn.close()  # another user's process: say nothing
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _peer_uid(self, host: str, port: int) -> int | None:
        """The uid of the client socket ``host:port`` connected to us; None if not found."""
        if not self._diag:
            return proc_peer_uid(host, port, self.port)
        try:
            found = diag_socket(host, port, "127.0.0.1", self.port)
        except OSError:
            return None
        return found[1] if found is not None and found[0] == TCP_ESTABLISHED else None

    def _serve(self, conn: socket.socket) -> None:
        try:
            with conn, conn.makefile("rb") as reader:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                while self._serve_one(conn, reader):
                    pass
                linger(conn)
        except OSError:
            pass
        finally:
            self._slots.release()

    def _serve_one(self, conn: socket.socket, reader: BinaryIO) -> bool:
        """Serve one request; whether the connection stays open."""
        try:
            request = read_request(reader)
            if request is None:
                return False
            found = route_of(request.target)
            if found is None:
                raise BadRequest(404, f"no route {request.target[:200]!r} in the runtime API")
            route, request_id = found
            if request.method != ROUTES[route]:
                raise BadRequest(405, f"{route} takes {ROUTES[route]}, not {request.method}")
            if route == "request":
                return self._next(conn, request)
            return self._answer(conn, reader, request, route, request_id)
        except BadRequest as exc:
            respond(conn, exc.status, api_error(exc.status, str(exc)), close=True)
            return False

    def _next(self, conn: socket.socket, request: Request) -> bool:
        if request.has_body:
            raise BadRequest(400, "a request for an invocation has no body")
        invocation = self._invocations.take(lambda: peer_gone(conn))
        if invocation is None:
            return False
        headers = (
            ("X-Cff-Request-Id", header_value(invocation.request_id)),
            ("X-Cff-Invoke-Type", header_value(invocation.invoke_type)),
            ("Content-Type", "application/json"),
        )
        try:
            respond(conn, 200, invocation.event, headers, close=not request.keep_alive)
        except OSError:
            self._invocations.put_back(invocation)
            return False
        return request.keep_alive

    def _answer(
        self, conn: socket.socket, reader: BinaryIO, request: Request, route: str, request_id: str
    ) -> bool:
        status, limit = self._invocations.limit_for(request_id)
        if status != 200:
            message = "already answered" if status == 409 else "is not the running invocation"
            raise BadRequest(status, f"request {request_id[:100]!r} {message}")
        length = request.headers.get("content-length", "")
        too_long = length.isascii() and length.isdigit() and int(length) > limit
        if not too_long and request.headers.get("expect", "").lower() == "100-continue":
            conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")  # else 413 before the body comes
        body = read_body(reader, request, limit)
        if body is None:
            self._invocations.answer(request_id, TOO_LARGE, b"")
            raise BadRequest(413, f"the result is larger than the limit of {limit} bytes")
        status = self._invocations.answer(request_id, route, body)
        if status != 200:
            respond(conn, status, api_error(status, f"request {request_id[:100]!r} was answered"))
        else:
            respond(conn, 200, b'{"status": "OK"}', close=not request.keep_alive)
        return request.keep_alive


def linger(conn: socket.socket, most: int = 1 << 20, seconds: float = 1.0) -> None:
    """Close gently: closing with unread input would reset the connection, and the client
    could lose the answer just sent (a refused request's body is never read)."""
    conn.shutdown(socket.SHUT_WR)
    conn.settimeout(seconds)
    drained = 0
    with contextlib.suppress(OSError):
        while drained < most and (chunk := conn.recv(65536)):
            drained += len(chunk)


def peer_gone(conn: socket.socket) -> bool:
    """Whether the client of ``conn`` has closed its end."""
    try:
        return conn.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


# sock_diag (netlink): one exact lookup of a TCP socket, as ``ss`` makes them.
NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 1
NLMSG_ERROR = 2
_NLMSG = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, sequence, port id
_DIAG_REQUEST = struct.Struct("=BBBBI")  # inet_diag_req_v2: family, protocol, ext, pad, states
_DIAG_SOCKET = struct.Struct("!HH16s16s")  # inet_diag_sockid: ports and addresses
_DIAG_TAIL = struct.Struct("=III")  # ... interface, cookie (none)
_DIAG_UID = struct.Struct("=I")
_DIAG_UID_OFFSET = 64  # of idiag_uid in inet_diag_msg


def diag_socket(host: str, port: int, remote_host: str, remote_port: int) -> tuple[int, int] | None:
    """(state, uid) of the IPv4 TCP socket ``host:port`` → ``remote_host:remote_port`` (a
    listening socket: remote 0.0.0.0:0), asked of the kernel; None when there is none.
    Raises OSError when sock_diag cannot be used here. A client on an IPv6 socket connected
    to 127.0.0.1 (IPv4-mapped) is found as well: such sockets are IPv4 ones to the kernel."""
    local = ipaddress.IPv4Address(host).packed.ljust(16, b"\0")
    remote = ipaddress.IPv4Address(remote_host).packed.ljust(16, b"\0")
    body = (
        _DIAG_REQUEST.pack(socket.AF_INET, socket.IPPROTO_TCP, 0, 0, 0xFFFFFFFF)
        + _DIAG_SOCKET.pack(port, remote_port, local, remote)
        + _DIAG_TAIL.pack(0, 0xFFFFFFFF, 0xFFFFFFFF)
    )
    message = _NLMSG.pack(_NLMSG.size + len(body), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, 1, 0)
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG) as netlink:
        netlink.settimeout(1.0)
        netlink.sendto(message + body, (0, 0))
        answer = netlink.recv(65536)
    kind = _NLMSG.unpack_from(answer)[1]
    end = _NLMSG.size + _DIAG_UID_OFFSET + _DIAG_UID.size
    if kind == NLMSG_ERROR or len(answer) < end:
        return None
    return answer[_NLMSG.size + 1], _DIAG_UID.unpack_from(answer, end - _DIAG_UID.size)[0]


def proc_peer_uid(host: str, port: int, local_port: int) -> int | None:
    """The uid owning the connected socket ``host:port`` → 127.0.0.1:``local_port``.

    /proc/net/tcp lists every socket of this network namespace with its owner; the client's
    entry is the one whose local end is the peer and whose remote end is the server. Only an
    established entry counts: one that is closing shows uid 0. The entry is found as a string
    (the table holds every connection of the host's network: parsing each line would cost
    milliseconds per connection on a busy host).
    """
    for table, width in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 16)):
        peer = f"{_proc_hex(host, width)}:{port:04X}"
        server = f"{_proc_hex('127.0.0.1', width)}:{local_port:04X}"
        needle = f" {peer} {server} {TCP_ESTABLISHED:02X} ".encode()
        try:
            with open(table, "rb") as lines:
                text = lines.read()
        except OSError:
            continue
        at = text.find(needle)
        if at >= 0:
            # After the addresses and state: tx:rx queues, timer, retransmits, then the uid.
            fields = text[at + len(needle) : text.find(b"\n", at)].split()
            return int(fields[3]) if len(fields) > 3 and fields[3].isdigit() else None
    return None


def _proc_hex(host: str, width: int) -> str:
    """An address as /proc/net/tcp* prints it: 32-bit words in host byte order, in hex; an
    IPv4 address in the IPv6 table is IPv4-mapped."""
    raw = ipaddress.ip_address(host).packed
    if width == 16 and len(raw) == 4:
        raw = bytes(10) + b"\xff\xff" + raw
    if sys.byteorder == "little":
        raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return raw.hex().upper()


# ---------------------------------------------------------------------------------------------
# HTTP functions


class HttpFunction(Runtime):
    """``runtime: "http"``: the bootstrap starts a web server; invocations become requests."""

    def __init__(self, config: Header) -> None:
        super().__init__(config)
        self.port = int(config.get("http_port") or DEFAULT_HTTP_PORT)
        self.connection = FunctionConnection(self.port)

    def start(self) -> str:
        argv, problem = bootstrap_argv(self.code_dir, must_be_executable=False)
        if problem:
            return problem
        problem = self.child.spawn(argv, dict(self.config["env"]), self.code_dir)
        if problem:
            return problem
        seconds = max(float(self.config["timeout"]), MIN_START_SECONDS)
        deadline = time.monotonic() + seconds
        while self.child.exit_code is None:
            with contextlib.suppress(OSError):
                self.connection.adopt(socket.create_connection(("127.0.0.1", self.port), 1.0))
                return ""
            if time.monotonic() > deadline:
                return f"the function did not listen on 127.0.0.1:{self.port} within {seconds:g} s"
            with self.changed:  # woken early when the bootstrap exits
                self.changed.wait(START_POLL_SECONDS)
        return f"{self.child.describe()} before listening on 127.0.0.1:{self.port}"

    def invoke(self, header: Header, event: bytes) -> tuple[Header, bytes]:
        started = time.perf_counter()
        limit = int(header["max_result_bytes"])
        headers = platform_headers(self.config, str(header["request_id"]))
        try:
            method, target, request_headers, body = http_request(event)
        except ValueError as exc:
            return self.failed(f"the event cannot be sent as an HTTP request: {exc}", started), b""
        try:
            answer = self.connection.exchange(
                method, target, [*request_headers, *headers], body, limit * 3 // 4
            )
        except (http.client.HTTPException, OSError, ValueError) as exc:
            self.connection.close()
            if self.child.exit_code is not None:
                return self.ended(started), b""
            return self.failed(self._why(exc), started), b""
        if answer is None:
            message = f"function result is more than the limit of {limit} bytes"
            return self.failed(message, started, RESULT_TOO_LARGE), b""
        result = json.dumps(answer).encode()
        if len(result) > limit:
            message = f"function result is {len(result)} bytes, more than the limit of {limit}"
            return self.failed(message, started, RESULT_TOO_LARGE), b""
        return reply(OK, "", started, self.maxrss_kb()), result

    def _why(self, exc: Exception) -> str:
        if isinstance(exc, http.client.RemoteDisconnected):
            return "the function closed the connection without answering"
        if isinstance(exc, http.client.IncompleteRead):
            return "the function closed the connection in the middle of its answer"
        if isinstance(exc, http.client.BadStatusLine | http.client.LineTooLong):
            return f"the function's answer is not HTTP: {str(exc)[:200]!r}"
        return f"the function's HTTP server failed: {type(exc).__name__}: {str(exc)[:200]}"

    def stop(self) -> None:
        self.connection.close()
        super().stop()


def platform_headers(config: Header, request_id: str) -> list[tuple[str, str]]:
    """The X-CFF-* headers FunctionGraph adds to every request to an HTTP function."""
    values = [
        ("X-CFF-Request-Id", request_id),
        ("X-CFF-Memory", config.get("memory_size")),
        ("X-CFF-Timeout", config.get("timeout")),
        ("X-CFF-Func-Version", config.get("version")),
        ("X-CFF-Func-Name", config.get("function_name")),
        ("X-CFF-Project-Id", config.get("project_id")),
        ("X-CFF-Package", config.get("package")),
        ("X-CFF-Region", config.get("region")),
    ]
    return [(name, header_value("" if value is None else str(value))) for name, value in values]


def http_request(event: bytes) -> tuple[str, str, list[tuple[str, str]], bytes]:
    """(method, target, headers, body) of the request an invocation's event becomes."""
    try:
        value = json.loads(event)
    except (ValueError, RecursionError):
        value = None
    if not isinstance(value, dict) or not isinstance(value.get("httpMethod"), str):
        return "POST", "/", [("Content-Type", "application/json")], event
    method = value["httpMethod"].upper()
    if not _is_token(method):
        raise ValueError(f"httpMethod {method[:50]!r} is not an HTTP method")
    path = value.get("path") or "/"
    if not isinstance(path, str) or not path.startswith("/"):
        raise ValueError("path must be a string starting with '/'")
    target = quote(path, safe="/%!$&'()*+,;=:@")
    query = _query_pairs(value.get("queryStringParameters"))
    if query:
        target += "?" + urlencode(query, quote_via=quote)
    return method, target, _forwarded_headers(value.get("headers")), _event_body(value)


def _query_pairs(query: Any) -> list[tuple[str, str]]:
    if not isinstance(query, dict):
        return []
    pairs = []
    for name, value in query.items():
        for one in value if isinstance(value, list) else [value]:
            pairs.append((str(name), "" if one is None else str(one)))
    return pairs


def _forwarded_headers(headers: Any) -> list[tuple[str, str]]:
    """The caller's headers that reach the function: no hop-by-hop, framing or X-CFF-* ones."""
    if not isinstance(headers, dict):
        return []
    forwarded = []
    for name, value in headers.items():
        key = str(name).lower()
        if not _is_token(key) or key in HOP_BY_HOP or key == "content-length":
            continue
        if key.startswith("x-cff-"):
            continue
        for one in value if isinstance(value, list) else [value]:
            forwarded.append((str(name), header_value("" if one is None else str(one))))
    return forwarded


def _event_body(event: dict[str, Any]) -> bytes:
    body = event.get("body")
    if body is None:
        return b""
    if not isinstance(body, str):
        return json.dumps(body).encode()
    if event.get("isBase64Encoded") is True:
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("body is not base64 although isBase64Encoded is true") from None
    return body.encode()


class FunctionConnection:
    """One keep-alive connection to the function's server, opened again when it was closed."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._conn: http.client.HTTPConnection | None = None

    def adopt(self, sock: socket.socket) -> None:
        """Use ``sock`` (already connected) for the next request."""
        self.close()
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._conn = http.client.HTTPConnection("127.0.0.1", self._port)
        self._conn.sock = sock

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def exchange(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes, limit: int
    ) -> dict[str, Any] | None:
        """Send one request; the answer in FunctionGraph's shape, None if its body is over
        ``limit``."""
        conn = self._ready()
        conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        if not any(name.lower() == "host" for name, _ in headers):
            conn.putheader("Host", f"127.0.0.1:{self._port}")
        for name, value in headers:
            conn.putheader(name, _header_bytes(value))
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        if conn.sock is not None:
            # A server that writes headers and body apart (Python's http.server does) would
            # wait on our delayed ACK (40 ms) under Nagle's algorithm: acknowledge at once.
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        response = conn.getresponse()
        content = response.read(limit + 1)
        if len(content) > limit:
            self.close()  # the rest is never read
            return None
        if response.will_close:
            self.close()
        return {
            "body": base64.b64encode(content).decode(),
            "headers": _answer_headers(response.getheaders()),
            "statusCode": response.status,
            "isBase64Encoded": True,
        }

    def _ready(self) -> http.client.HTTPConnection:
        conn = self._conn
        # An idle keep-alive connection that reads as ready was closed by the server.
        if conn is not None and conn.sock is not None:
            readable, _, _ = select.select([conn.sock], [], [], 0)
            if readable:
                self.close()
                conn = None
        if conn is None:
            conn = self._conn = http.client.HTTPConnection("127.0.0.1", self._port)
        return conn


def _header_bytes(value: str) -> bytes:
    # Header values arrive decoded as latin-1 (byte for byte); anything else a caller wrote
    # into an event is sent as UTF-8.
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode()


def _answer_headers(pairs: list[tuple[str, str]]) -> dict[str, list[str]]:
    """Header values as arrays, under the first spelling of each name."""
    grouped: dict[str, list[str]] = {}
    spelling: dict[str, str] = {}
    for name, value in pairs:
        key = name.lower()
        if key in HOP_BY_HOP or key == "content-length":
            continue
        grouped.setdefault(spelling.setdefault(key, name), []).append(value)
    return grouped
