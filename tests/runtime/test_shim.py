"""The shim that runs custom runtimes and HTTP functions inside an instance (runtime/shim.py).

Each test runs ``shim.serve`` in a real child process, loaded by path as the instance loads it:
a small launcher builds ``bootstrap.Channel`` on two pipes and hands it the config frame. The
test writes frames, reads replies and reads the log (fds 1/2 of the child, a file here) split
on the marker. Bootstraps are real programs: bash with curl, Python, Node.js.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import select
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from openfgs.runtime import bootstrap as bootstrap_module
from openfgs.runtime import shim as shim_module
from tests.support import free_port, wait_for

BOOTSTRAP_PY = bootstrap_module.__file__
SHIM_PY = shim_module.__file__
MARKER = "\0\x1bmarker\0"
LIMIT = 6 * 1024 * 1024
OTHER_UID = 65534
PYTHON_C = (sys.executable, "-I", "-S", "-c")

# What the instance bootstrap does once it is in its sandbox, here without the sandbox.
LAUNCHER = """
import importlib.util, os, sys

def load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

bootstrap = load("bootstrap", sys.argv[1])
shim = load("openfgs_shim", sys.argv[2])
request_fd, reply_fd = int(sys.argv[3]), int(sys.argv[4])
os.set_inheritable(request_fd, False)
os.set_inheritable(reply_fd, False)
channel = bootstrap.Channel(request_fd, reply_fd, os.dup(1))
config = channel.receive()[0]
channel.marker = config["marker"].encode()
os.chdir(config["code_dir"])
sys.exit(shim.serve(channel, config))
"""


class Instance:
    """A launched shim: frames in, replies and log segments out."""

    def __init__(self, config: dict[str, Any], log_path: Path) -> None:
        self.config = config
        self.log_path = log_path
        request_read, self._requests = os.pipe()
        self._replies, reply_write = os.pipe()
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen(
                [*PYTHON_C, LAUNCHER, BOOTSTRAP_PY, SHIM_PY, str(request_read), str(reply_write)],
                pass_fds=(request_read, reply_write),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,  # one killpg ends the bootstrap's processes too
            )
        os.close(request_read)
        os.close(reply_write)
        self.send(config)

    def send(self, header: dict[str, Any], body: bytes = b"") -> None:
        encoded = json.dumps(header).encode()
        data = bootstrap_module.FRAME.pack(len(encoded), len(body)) + encoded + body
        view = memoryview(data)
        while view:
            view = view[os.write(self._requests, view) :]

    def receive(self, timeout: float = 10.0) -> tuple[dict[str, Any], bytes]:
        deadline = time.monotonic() + timeout
        sizes = self._read(bootstrap_module.FRAME.size, deadline)
        header_size, body_size = bootstrap_module.FRAME.unpack(sizes)
        header = json.loads(self._read(header_size, deadline))
        assert isinstance(header, dict)
        return header, self._read(body_size, deadline)

    def _read(self, size: int, deadline: float) -> bytes:
        data = b""
        while len(data) < size:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self._replies], [], [], max(left, 0))
            assert ready, f"no reply within the deadline; log: {self.log()!r}"
            chunk = os.read(self._replies, size - len(data))
            assert chunk, f"the instance closed its reply pipe; log: {self.log()!r}"
            data += chunk
        return data

    def load(self) -> dict[str, Any]:
        """The load frame."""
        return self.receive(timeout=20.0)[0]

    def invoke(
        self, event: Any, *, raw: bytes | None = None, max_result_bytes: int = LIMIT, **extra: Any
    ) -> tuple[dict[str, Any], bytes]:
        header = {"request_id": str(uuid.uuid4()), "max_result_bytes": max_result_bytes, **extra}
        self.send(header, raw if raw is not None else json.dumps(event).encode())
        return self.receive()

    def result(self, event: Any, **extra: Any) -> Any:
        """Invoke, expect success, and decode the JSON result."""
        reply, body = self.invoke(event, **extra)
        assert reply["status"] == "ok", (reply, self.log())
        return json.loads(body)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def segments(self) -> list[str]:
        return self.log().split(MARKER)

    def close_channel(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._requests)

    def wait_exit(self, timeout: float = 10.0) -> int:
        return int(wait_for(lambda: _exit_code(self.process), timeout, what="instance exit")[0])

    def kill(self) -> None:
        self.close_channel()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)
        os.close(self._replies)


def _exit_code(process: subprocess.Popen[bytes]) -> tuple[int] | None:
    code = process.poll()
    return None if code is None else (code,)


def make_config(code_dir: Path, runtime: str, **overrides: Any) -> dict[str, Any]:
    """A config frame as the service sends it (instance.py ``_config`` plus the shim's keys)."""
    home = code_dir.parent / "home"
    home.mkdir(exist_ok=True)
    config: dict[str, Any] = {
        "handler": "bootstrap",
        "initializer": "",
        "timeout": 10,
        "memory_size": 256,
        "cpu": 200,
        "function_name": "shimfn",
        "version": "latest",
        "package": "default",
        "project_id": "proj1",
        "user_data": {"GREETING": "hello"},
        "marker": MARKER,
        "code_dir": str(code_dir),
        "env": {
            # The venv's directory first: its python3 is this interpreter.
            "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(home),
            "TMPDIR": str(home),
            "LANG": "C.UTF-8",
            "RUNTIME_CODE_ROOT": str(code_dir),
            "RUNTIME_FUNC_NAME": "shimfn",
            "GREETING": "hello",
        },
        "runtime": runtime,
        "alias": "",
        "http_port": free_port(),
        "region": "cn-north-4",
    }
    config.update(overrides)
    return config


Launch = Callable[..., Instance]


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Launch]:
    """Start shims on code written from ``files`` (name → text, or a directory when the name
    ends in "/"; "bootstrap" is executable unless ``executable=False``); all killed at
    teardown."""
    started: list[Instance] = []

    def start(
        runtime: str,
        files: dict[str, str],
        *,
        executable: bool = True,
        extra_env: dict[str, str] | None = None,
        **overrides: Any,
    ) -> Instance:
        base = tmp_path / f"i{len(started)}"
        code_dir = base / "code"
        code_dir.mkdir(parents=True)
        for name, text in files.items():
            if name.endswith("/"):
                (code_dir / name).mkdir()
            else:
                (code_dir / name).write_text(textwrap.dedent(text).lstrip("\n"))
        bootstrap = code_dir / "bootstrap"
        if executable and bootstrap.is_file():
            bootstrap.chmod(0o755)
        config = make_config(code_dir, runtime, **overrides)
        config["env"].update(extra_env or {})
        instance = Instance(config, base / "log")
        started.append(instance)
        return instance

    yield start
    for instance in started:
        instance.kill()


# ---------------------------------------------------------------------------------------------
# Custom runtime

# FunctionGraph's published bash bootstrap: poll with curl, find the request id among the
# response headers with grep, post the answer with curl -d.
BASH_SAMPLE = r"""
#!/bin/bash
set -euo pipefail

# Initialization - load function handler
# (the sample's handler is inline here)

# Processing
while true
do
  HEADERS="$(mktemp)"
  # Get an event. The HTTP request will block until one is received
  EVENT_DATA=$(curl -sS -LD "$HEADERS" -X GET "http://$RUNTIME_API_ADDR/v1/runtime/invocation/request")

  # Extract request ID by scraping response headers received above
  REQUEST_ID=$(grep -Fi x-cff-request-id "$HEADERS" | tr -d '[:space:]' | cut -d: -f2)

  # Run the handler function from the script
  RESPONSE="Echoing request: '$EVENT_DATA'"

  # Send the response
  curl -X POST "http://$RUNTIME_API_ADDR/v1/runtime/invocation/response/$REQUEST_ID" -d "$RESPONSE"
done
"""

# A Python bootstrap whose every move the event dictates (keep-alive http.client).
PY_BOOTSTRAP = f"""
#!{sys.executable} -u
import http.client, json, os, signal, subprocess, sys

host, port = os.environ["RUNTIME_API_ADDR"].split(":")
api = http.client.HTTPConnection(host, int(port))
print("bootstrap started", flush=True)


def call(method, path, body=None, headers=None):
    api.request(method, path, body=body, headers=headers or {{}})
    response = api.getresponse()
    return response, response.read()


while True:
    response, event = call("GET", "/v1/runtime/invocation/request")
    request_id = response.getheader("X-Cff-Request-Id")
    op = json.loads(event)
    answer = "/v1/runtime/invocation/response/" + request_id
    kind = op.get("op")
    if kind == "echo":
        print("handling", request_id, flush=True)
        body = json.dumps({{
            "event": op, "headers": dict(response.getheaders()), "status": response.status,
            "env": dict(os.environ), "pid": os.getpid(),
        }})
        call("POST", answer, body)
    elif kind == "error":
        call("POST", "/v1/runtime/invocation/error/" + request_id, op["body"].encode())
    elif kind == "exit":
        sys.exit(op["code"])
    elif kind == "signal":
        os.kill(os.getpid(), signal.SIGKILL)
    elif kind == "big":
        statuses = call("POST", answer, b"x" * op["size"])[0].status
        api.close()  # the runtime closes after a 413
        print("big answer got", statuses, flush=True)
    elif kind == "stray":
        wrong = call("POST", "/v1/runtime/invocation/response/not-" + request_id, b"1")
        call("POST", answer, json.dumps({{"stray": wrong[0].status}}))
    elif kind == "hold":
        print("holding", request_id, flush=True)
    elif kind == "curl":
        url = "http://" + os.environ["RUNTIME_API_ADDR"] + answer
        subprocess.run(["curl", "-sS", "-X", "POST", url, *op["args"]], check=True)
"""


def test_reference_bash_bootstrap_answers_each_invocation(launch: Launch) -> None:
    instance = launch("Custom", {"bootstrap": BASH_SAMPLE})
    assert instance.load() == {"status": "ok", "message": ""}
    for number in range(3):
        reply, body = instance.invoke({"n": number}, invoke_type="async" if number else "sync")
        assert reply["status"] == "ok", (reply, instance.log())
        assert body == f"""Echoing request: '{{"n": {number}}}'""".encode()
        assert reply["duration_ms"] > 0
        assert reply["maxrss_kb"] > 0
    # curl's output (the runtime API's answer to the first POST) went to the log.
    assert '{"status": "OK"}' in instance.log()


def test_invocation_headers_and_environment(launch: Launch) -> None:
    instance = launch("Custom", {"bootstrap": PY_BOOTSTRAP})
    assert instance.load()["status"] == "ok"
    seen = instance.result({"op": "echo"}, invoke_type="async")
    headers = {name.lower(): value for name, value in seen["headers"].items()}
    assert seen["status"] == 200
    assert headers["x-cff-request-id"]
    assert headers["x-cff-invoke-type"] == "async"
    assert headers["content-type"] == "application/json"
    assert not any("key" in name or "token" in name for name in headers)  # no agency credentials
    assert seen["event"] == {"op": "echo"}
    assert seen["env"]["RUNTIME_API_ADDR"].startswith("127.0.0.1:")
    assert seen["env"]["GREETING"] == "hello"
    assert seen["env"]["RUNTIME_CODE_ROOT"] == instance.config["code_dir"]
    second = instance.result({"op": "echo"})  # invoke_type absent: sync
    assert second["headers"]["X-Cff-Invoke-Type"] == "sync"
    assert second["headers"]["X-Cff-Request-Id"] != headers["x-cff-request-id"]
    assert second["pid"] == seen["pid"]  # one bootstrap for the instance's life


def test_the_bootstraps_output_is_the_log_of_its_invocation(launch: Launch) -> None:
    instance = launch("Custom", {"bootstrap": PY_BOOTSTRAP})
    instance.load()
    first = instance.result({"op": "echo"})
    instance.result({"op": "echo"})
    segments = instance.segments()
    assert "bootstrap started" in segments[0]
    assert f"handling {first['headers']['X-Cff-Request-Id']}" in segments[1]
    assert segments[2].count("handling") == 1


def test_an_error_posted_as_json_is_the_error_object(launch: Launch) -> None:
    instance = launch("Custom", {"bootstrap": PY_BOOTSTRAP})
    instance.load()
    error = {"errorType": "ValueError", "errorMessage": "no such user"}
    reply, body = instance.invoke({"op": "error", "body": json.dumps(error)})
    assert reply["status"] == "function_error"
    assert reply["message"] == "ValueError: no such user"
    assert json.loads(body) == error
    assert instance.result({"op": "echo"})["event"] == {"op": "echo"}  # it goes on


def test_an_error_posted_as_text_is_wrapped(launch: Launch) -> None:
    instance = launch("Custom", {"bootstrap": PY_BOOTSTRAP})
    instance.load()
    reply, body = instance.invoke({"op": "error", "body": "it broke\n"})
    assert reply["status"] == "function_error"
    assert reply["message"] == "it broke\n"
    assert json.loads(body) == {"errorMessage": "it broke\n", "errorType": "FunctionError"}


def test_a_result_over_the_limit_is_result_too_large(launch: Launch) -> None:
    instance = launch("Custom", {"bootstrap": PY_BOOTSTRAP})
    instance.load()
    reply, body = instance.invoke({"op": "big", "size": 5000}, max_result_bytes=4096)
    assert reply["status"] == "result_too_large"
    assert "4096" in reply["message"]
    assert body == b""
    reply, body = instance.invoke({"op": "big", "size": 4096}, max_result_bytes=4096)
    assert (reply["status"], body) == ("ok", b"x" * 4096)  # exactly the limit is fine
    assert "big answer got 413" in instance.log()


def test_curl_form_and_chunked_bodies_are_taken_raw(launch: Launch, tmp_path: Path) -> None:
    instance = launch("Custom", {"bootstrap": PY_BOOTSTRAP})
    instance.load()
    reply, body = instance.invoke({"op": "curl", "args": ["-d", "a=1&b=%20two"]})
    assert (reply["status"], body) == ("ok", b"a=1&b=%20two")
    payload = tmp_path / "payload"
    payload.write_bytes(bytes(range(256)) * 64)
    chunked = ["-H", "Transfer-Encoding: chunked", "--data-binary", f"@{payload}"]
    reply, body = instance.invoke({"op": "curl", "args": chunked})
    assert (reply["status"], body) == ("ok", payload.read_bytes())
    # Large enough for curl to ask "Expect: 100-continue" first.
    payload.write_bytes(b"y" * (2 * 1024 * 1024))
    reply, body = instance.invoke({"op": "curl", "args": ["--data-binary", f"@{payload}"]})
    assert (reply["status"], len(body)) == ("ok", 2 * 1024 * 1024)


def test_answers_to_other_or_answered_ids_are_refused(launch: Launch) -> None:
    instance = launch("Custom", {"bootstrap": PY_BOOTSTRAP})
    instance.load()
    assert instance.result({"op": "stray"}) == {"stray": 404}
    echoed = instance.result({"op": "echo"})
    request_id = echoed["headers"]["X-Cff-Request-Id"]
    api = api_address(echoed)
    assert post(api, f"/v1/runtime/invocation/response/{request_id}", b"again")[0] == 409
    assert post(api, f"/v1/runtime/invocation/error/{request_id}", b"again")[0] == 409
    status, body = post(api, "/v1/runtime/invocation/response/never-issued", b"1")
    assert status == 404
    assert json.loads(body)["errorMessage"]


def api_address(echoed: dict[str, Any]) -> tuple[str, int]:
    host, port = echoed["env"]["RUNTIME_API_ADDR"].split(":")
    return host, int(port)


def post(api: tuple[str, int], path: str, body: bytes) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection(*api, timeout=5)
    try:
        connection.request("POST", path, body)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def raw_exchange(api: tuple[str, int], data: bytes) -> bytes:
    """Send ``data`` as is and read until the server closes (or 5 s pass)."""
    with socket.create_connection(api, timeout=5) as sock:
        sock.sendall(data)
        received = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                received += chunk
        return received


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        pytest.param(b"garbage\r\n\r\n", 400, id="no-request-line"),
        pytest.param(b"GET /v1/runtime/invocation/request HTTP/9.9\r\n\r\n", 400, id="version"),
        pytest.param(b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n", 414, id="long-line"),
        pytest.param(b"GET / HTTP/1.1\r\nX: " + b"a" * 70000 + b"\r\n\r\n", 431, id="headers"),
        pytest.param(b"GET / HTTP/1.1\r\nno colon\r\n\r\n", 400, id="header-line"),
        pytest.param(b"GET /v1/runtime/other HTTP/1.1\r\n\r\n", 404, id="path"),
        pytest.param(b"GET /../etc/passwd HTTP/1.1\r\n\r\n", 404, id="traversal"),
        pytest.param(b"POST /v1/runtime/invocation/request HTTP/1.1\r\n\r\n", 405, id="method"),
        pytest.param(b"GET /v1/runtime/invocation/response/x HTTP/1.1\r\n\r\n", 405, id="get"),
        pytest.param(
            b"GET /v1/runtime/invocation/request HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
            400,
            id="body-on-poll",
        ),
        pytest.param(
            b"POST /v1/runtime/invocation/response/a/b HTTP/1.1\r\n\r\n", 404, id="nested-id"
        ),
        pytest.param(
            b"POST /v1/runtime/invocation/response/x HTTP/1.1\r\nContent-Length: 1\r\n"
            b"Content-Length: 2\r\n\r\n",
            400,
            id="two-lengths",
        ),
    ],
)
def test_malformed_requests_are_refused_and_the_api_goes_on(
    launch: Launch, request_bytes: bytes, status: int
) -> None:
    instance = launch("Custom", {"bootstrap": PY_BOOTSTRAP})
    instance.load()
    api = api_address(instance.result({"op": "echo"}))
    answer = raw_exchange(api, request_bytes)
    assert answer.startswith(f"HTTP/1.1 {status} ".encode()), answer[:200]
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["errorMessage"]
    assert instance.result({"op": "echo"})["event"] == {"op": "echo"}


def test_malformed_bodies_of_the_running_invocation_are_refused(launch: Launch) -> None:
    # The test posts the answers itself while the invocation waits for one.
    instance = launch("Custom", {"bootstrap": PY_BOOTSTRAP})
    instance.load()
    api = api_address(instance.result({"op": "echo"}))
    request_id = "r-malformed"
    # "hold": the bootstrap takes the invocation and leaves it to the test to answer.
    instance.send({"request_id": request_id, "max_result_bytes": 100}, b'{"op": "hold"}')
    wait_for(lambda: f"holding {request_id}" in instance.log(), 10, what="invocation taken")
    path = f"/v1/runtime/invocation/response/{request_id}"
    bad = [
        b"Transfer-Encoding: gzip\r\n\r\n",
        b"Transfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"Transfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n",
        b"Content-Length: -1\r\n\r\n",
    ]
    for headers in bad:
        answer = raw_exchange(api, f"POST {path} HTTP/1.1\r\n".encode() + headers)
        assert answer.split(b" ")[1] in (b"400", b"501"), answer
    # The invocation is still open: a well-formed chunked answer ends it.
    good = b"Transfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-T: 1\r\n\r\n"
    assert raw_exchange_keepalive(api, f"POST {path} HTTP/1.1\r\n".encode() + good).startswith(
        b"HTTP/1.1 200 "
    )
    reply, body = instance.receive()
    assert (reply["status"], body) == ("ok", b"abcde")


def test_an_announced_oversized_result_is_refused_before_its_body(launch: Launch) -> None:
    instance = launch("Custom", {"bootstrap": PY_BOOTSTRAP})
    instance.load()
    api = api_address(instance.result({"op": "echo"}))
    instance.send({"request_id": "r-big", "max_result_bytes": 100}, b'{"op": "hold"}')
    wait_for(lambda: "holding r-big" in instance.log(), 10, what="invocation taken")
    head = (
        b"POST /v1/runtime/invocation/response/r-big HTTP/1.1\r\n"
        b"Content-Length: 101\r\nExpect: 100-continue\r\n\r\n"
    )
    answer = raw_exchange_keepalive(api, head)
    assert answer.startswith(b"HTTP/1.1 413 "), answer  # no "100 Continue" first
    reply, body = instance.receive()
    assert (reply["status"], body) == ("result_too_large", b"")


def raw_exchange_keepalive(api: tuple[str, int], data: bytes) -> bytes:
    """Send ``data`` and read one response's head."""
    with socket.create_connection(api, timeout=5) as sock:
        sock.sendall(data)
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(65536)
            assert chunk, received
            received += chunk
        return received


def connect_as(uid: int, api: tuple[str, int], family: socket.AddressFamily) -> int:
    """In a child running as ``uid``: ask the runtime API for an invocation. Exit 0 when the
    connection was closed without an answer, 1 when it was answered, 2 when it failed."""
    pid = os.fork()
    if pid == 0:
        code = 2
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            host = api[0] if family == socket.AF_INET else f"::ffff:{api[0]}"
            with socket.socket(family, socket.SOCK_STREAM) as sock:
                sock.settimeout(5)
                sock.connect((host, api[1]))
                sock.sendall(b"GET /v1/runtime/nothing HTTP/1.1\r\n\r\n")
                try:
                    code = 1 if sock.recv(100) else 0
                except ConnectionResetError:
                    code = 0
        finally:
            os._exit(code)
    return int(wait_for(lambda: _reaped(pid), 10, what="client exit")[0])


def _reaped(pid: int) -> tuple[int] | None:
    done, status = os.waitpid(pid, os.WNOHANG)
    return (os.waitstatus_to_exitcode(status),) if done else None


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to act as another user")
@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6], ids=["ipv4", "ipv6"])
def test_other_users_cannot_reach_the_runtime_api(
    launch: Launch, family: socket.AddressFamily
) -> None:
    instance = launch("Custom", {"bootstrap": PY_BOOTSTRAP})
    instance.load()
    api = api_address(instance.result({"op": "echo"}))
    assert connect_as(os.getuid(), api, family) == 1  # the instance's own user is answered
    assert connect_as(OTHER_UID, api, family) == 0
    assert instance.result({"op": "echo"})["event"] == {"op": "echo"}


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to act as another user")
def test_another_users_poll_never_takes_an_invocation(launch: Launch) -> None:
    instance = launch("Custom", {"bootstrap": PY_BOOTSTRAP})
    instance.load()
    api = api_address(instance.result({"op": "echo"}))
    for _ in range(5):
        assert connect_as(OTHER_UID, api, socket.AF_INET) == 0
    assert [instance.result({"op": "echo"})["event"] for _ in range(3)] == [{"op": "echo"}] * 3


@contextlib.contextmanager
def connected_as(uid: int, port: int, family: socket.AddressFamily) -> Iterator[None]:
    """A child running as ``uid`` holds a connection to 127.0.0.1:``port`` meanwhile."""
    release_read, release_write = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(release_write)
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            host = "127.0.0.1" if family == socket.AF_INET else "::ffff:127.0.0.1"
            with socket.socket(family, socket.SOCK_STREAM) as sock:
                sock.connect((host, port))
                os.read(release_read, 1)  # until the test is done with the connection
            code = 0
        finally:
            os._exit(code)
    os.close(release_read)
    try:
        yield
    finally:
        os.close(release_write)
        assert wait_for(lambda: _reaped(pid), 10, what="client exit") == (0,)


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to act as another user")
@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6], ids=["ipv4", "ipv6"])
def test_both_peer_lookups_name_the_clients_user(family: socket.AddressFamily) -> None:
    """sock_diag where the kernel has it, /proc/net/tcp* where not: the same answers."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        assert shim_module.diag_socket("127.0.0.1", port, "0.0.0.0", 0) == (10, 0)
        with connected_as(OTHER_UID, port, family):
            conn, (host, peer_port) = server.accept()
            with conn:
                assert shim_module.diag_socket(host, peer_port, "127.0.0.1", port) == (
                    1,
                    OTHER_UID,
                )
                assert shim_module.proc_peer_uid(host, peer_port, port) == OTHER_UID
                # Looked up the other way round it is the server's end (root's); no client
                # holds the port of a wrong remote end.
                assert shim_module.proc_peer_uid("127.0.0.1", port, peer_port) == 0
                assert shim_module.diag_socket(host, peer_port, "127.0.0.1", 1) is None
                assert shim_module.proc_peer_uid(host, peer_port, 1) is None


def test_connections_over_the_bound_are_closed_and_their_slots_come_back(
    launch: Launch,
) -> None:
    instance = launch("Custom", {"bootstrap": PY_BOOTSTRAP})
    instance.load()
    api = api_address(instance.result({"op": "echo"}))
    held = [socket.create_connection(api, timeout=5) for _ in range(shim_module.MAX_CONNECTIONS)]
    try:
        # The bootstrap holds one of the slots already: the newest connection is refused.
        assert raw_exchange(api, b"GET /x HTTP/1.1\r\n\r\n") == b""
    finally:
        for sock in held:
            sock.close()
    answered = wait_for(lambda: raw_exchange(api, b"GET /x HTTP/1.1\r\n\r\n"), 10)
    assert answered.startswith(b"HTTP/1.1 404 ")
    assert instance.result({"op": "echo"})["event"] == {"op": "echo"}


def test_an_abandoned_poll_does_not_take_the_next_invocation(launch: Launch) -> None:
    instance = launch("Custom", {"bootstrap": PY_BOOTSTRAP})
    instance.load()
    api = api_address(instance.result({"op": "echo"}))
    with socket.create_connection(api, timeout=5) as sock:
        sock.sendall(b"GET /v1/runtime/invocation/request HTTP/1.1\r\n\r\n")
    assert instance.result({"op": "echo"})["event"] == {"op": "echo"}


@pytest.mark.parametrize(
    ("files", "executable", "message"),
    [
        pytest.param({"other": "x"}, True, "no executable bootstrap", id="missing"),
        pytest.param({"bootstrap": "#!/bin/sh\n"}, False, "not executable", id="not-executable"),
    ],
)
def test_without_an_executable_bootstrap_the_load_fails(
    launch: Launch, files: dict[str, str], executable: bool, message: str
) -> None:
    instance = launch("Custom", files, executable=executable)
    load = instance.load()
    assert load["status"] == "function_error"
    assert message in load["message"]


@pytest.mark.parametrize("runtime", ["Custom", "http"])
def test_a_bootstrap_directory_is_not_a_bootstrap(launch: Launch, runtime: str) -> None:
    load = launch(runtime, {"bootstrap/": ""}).load()
    assert load["status"] == "function_error"
    assert "bootstrap" in load["message"]


def test_a_bootstrap_that_exits_at_start_fails_the_load(launch: Launch) -> None:
    instance = launch("Custom", {"bootstrap": "#!/bin/sh\necho cannot start >&2\nexit 7\n"})
    load = instance.load()
    assert load == {
        "status": "function_error",
        "message": "the bootstrap exited with code 7 before asking for an invocation",
    }
    assert "cannot start" in instance.log()
    assert instance.wait_exit() == 7


def test_a_script_without_shebang_runs_under_sh(launch: Launch) -> None:
    sample = BASH_SAMPLE.replace("#!/bin/bash\nset -euo pipefail\n", "")
    instance = launch("Custom", {"bootstrap": sample})
    assert instance.load()["status"] == "ok"
    assert instance.invoke({"k": 1})[1] == b"""Echoing request: '{"k": 1}'"""


@pytest.mark.parametrize(
    ("op", "message", "code"),
    [
        pytest.param({"op": "exit", "code": 3}, "the bootstrap exited with code 3", 3, id="exit"),
        pytest.param(
            {"op": "signal"}, "the bootstrap was killed by signal 9 (SIGKILL)", 137, id="kill"
        ),
    ],
)
def test_a_bootstrap_dying_in_an_invocation_fails_it_and_ends_the_instance(
    launch: Launch, op: dict[str, Any], message: str, code: int
) -> None:
    instance = launch("Custom", {"bootstrap": PY_BOOTSTRAP})
    instance.load()
    reply, body = instance.invoke(op)
    assert (reply["status"], reply["message"], body) == ("function_error", message, b"")
    assert reply["reusable"] is False
    assert instance.wait_exit() == code


def test_a_bootstrap_dying_between_invocations_ends_the_instance(launch: Launch) -> None:
    instance = launch("Custom", {"bootstrap": PY_BOOTSTRAP})
    instance.load()
    pid = instance.result({"op": "echo"})["pid"]
    os.kill(pid, signal.SIGTERM)
    assert instance.wait_exit() == 128 + signal.SIGTERM
    assert "the bootstrap was killed by signal 15 (SIGTERM); the instance stops" in instance.log()


def test_closing_the_channel_stops_the_bootstrap(launch: Launch) -> None:
    instance = launch("Custom", {"bootstrap": PY_BOOTSTRAP})
    instance.load()
    pid = instance.result({"op": "echo"})["pid"]
    instance.close_channel()
    assert instance.wait_exit() == 0
    wait_for(lambda: not _alive(pid), 10, what="bootstrap killed")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat_file:
            return stat_file.read().split(") ")[1][0] != "Z"
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------
# HTTP functions

PY_SERVER = """
import base64, json, os, socket, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

count = 0
if os.environ.get("START_DELAY"):  # a slow start, for the test that wants one
    time.sleep(float(os.environ["START_DELAY"]))
    print("slept; listening next", flush=True)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def any(self):
        global count
        count += 1
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        # Special routes by their last segments, so they work under any route prefix.
        if self.path.endswith("/garbage"):
            self.wfile.write(b"this is not HTTP\\r\\n\\r\\n")
            self.close_connection = True
            return
        if self.path.endswith("/hangup"):
            self.close_connection = True
            return
        if "/big/" in self.path:
            content = b"z" * int(self.path.rsplit("/", 1)[1])
        elif self.path.endswith("/binary"):
            content = bytes(range(256))
        else:
            content = json.dumps({
                "count": count, "method": self.command, "path": self.path,
                "headers": self.headers.items(), "body": base64.b64encode(body).decode(),
                "client_port": self.client_address[1], "pid": os.getpid(),
            }).encode()
        self.send_response(201 if self.command == "POST" else 200)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Set-Cookie", "a=1")
        self.send_header("Set-Cookie", "b=2")
        if self.path.endswith("/bye"):
            self.send_header("Connection", "close")
            self.close_connection = True
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(content)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = any

    def log_message(self, format, *args):
        print("served", self.command, self.path, flush=True)


ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""

NODE_SERVER = """
const http = require('http');
let count = 0;
const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (chunk) => chunks.push(chunk));
  req.on('end', () => {
    count += 1;
    const body = Buffer.concat(chunks);
    res.setHeader('Content-Type', 'application/json; charset=utf-8');
    res.setHeader('X-Powered-By', ['node', 'test']);
    console.log('node served', req.method, req.url);
    res.end(JSON.stringify({
      count, method: req.method, url: req.url, headers: req.headers,
      body: body.toString('base64'), client_port: req.socket.remotePort,
    }));
  });
});
server.listen(Number(process.argv[2]), '127.0.0.1');
"""


def apig_event(
    method: str = "GET",
    path: str = "/",
    *,
    query: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
) -> dict[str, Any]:
    """An APIG event as openfgs/api/apig.py builds it."""
    return {
        "body": base64.b64encode(body).decode(),
        "isBase64Encoded": True,
        "headers": headers or {"host": "gateway.example", "user-agent": "test"},
        "httpMethod": method,
        "path": path,
        "queryStringParameters": query or {},
        "pathParameters": {},
        "requestContext": {"apiId": "t1", "requestId": "r1", "stage": "RELEASE"},
    }


@pytest.fixture
def py_function(launch: Launch) -> Instance:
    port = free_port()
    files = {"bootstrap": f"python3 -u server.py {port}\n", "server.py": PY_SERVER}
    instance = launch("http", files, executable=False, http_port=port)
    assert instance.load() == {"status": "ok", "message": ""}, instance.log()
    return instance


def answer_of(result: dict[str, Any]) -> dict[str, Any]:
    """The JSON body the test server answered with."""
    assert result["isBase64Encoded"] is True
    answer = json.loads(base64.b64decode(result["body"]))
    assert isinstance(answer, dict)
    return answer


def test_requests_reach_one_server_over_one_connection(py_function: Instance) -> None:
    answers = [answer_of(py_function.result(apig_event("GET", "/count"))) for _ in range(3)]
    assert [answer["count"] for answer in answers] == [1, 2, 3]  # one process, state kept
    assert len({answer["client_port"] for answer in answers}) == 1  # one keep-alive connection
    assert "served GET /count" in py_function.segments()[1]


def test_the_answer_has_status_array_headers_and_a_base64_body(py_function: Instance) -> None:
    result = py_function.result(apig_event("POST", "/binary", body=b"in"))
    assert result["statusCode"] == 201
    assert base64.b64decode(result["body"]) == bytes(range(256))
    headers = result["headers"]
    assert headers["Content-Type"] == ["application/json; charset=utf-8"]
    assert headers["Set-Cookie"] == ["a=1", "b=2"]
    assert "Content-Length" not in headers and "Connection" not in headers
    assert all(isinstance(values, list) for values in headers.values())


def test_method_path_query_headers_and_binary_body_are_forwarded(py_function: Instance) -> None:
    body = bytes(range(256)) * 4
    event = apig_event(
        "PUT",
        "/items/a b/ü",
        query={"q": "x y", "empty": "", "sym": "&="},
        headers={"host": "gw.example", "x-custom": "v1", "content-type": "application/x-bin"},
        body=body,
    )
    answer = answer_of(py_function.result(event))
    assert answer["method"] == "PUT"
    assert answer["path"] == "/items/a%20b/%C3%BC?q=x%20y&empty=&sym=%26%3D"
    assert base64.b64decode(answer["body"]) == body
    headers = {name.lower(): value for name, value in answer["headers"]}
    assert headers["x-custom"] == "v1"
    assert headers["content-type"] == "application/x-bin"
    assert headers["host"] == "gw.example"
    assert headers["content-length"] == str(len(body))


def test_the_platform_headers_are_added_and_cannot_be_forged(py_function: Instance) -> None:
    forged = {"X-CFF-Request-Id": "forged", "x-cff-func-name": "other", "x-cff-extra": "1"}
    answer = answer_of(py_function.result(apig_event(headers=forged), request_id="req-42"))
    headers: dict[str, list[str]] = {}
    for name, value in answer["headers"]:
        headers.setdefault(name.lower(), []).append(value)
    assert headers["x-cff-request-id"] == ["req-42"]
    assert headers["x-cff-memory"] == ["256"]
    assert headers["x-cff-timeout"] == ["10"]
    assert headers["x-cff-func-version"] == ["latest"]
    assert headers["x-cff-func-name"] == ["shimfn"]
    assert headers["x-cff-project-id"] == ["proj1"]
    assert headers["x-cff-package"] == ["default"]
    assert headers["x-cff-region"] == ["cn-north-4"]
    assert "x-cff-extra" not in headers


def test_hop_by_hop_request_headers_are_not_forwarded(py_function: Instance) -> None:
    hop = {"connection": "close", "transfer-encoding": "chunked", "upgrade": "h2c", "x-ok": "1"}
    answer = answer_of(py_function.result(apig_event("POST", "/", headers=hop, body=b"abc")))
    names = {name.lower() for name, _ in answer["headers"]}
    assert "x-ok" in names
    assert not names & {"connection", "transfer-encoding", "upgrade"}
    assert base64.b64decode(answer["body"]) == b"abc"
    # The connection stayed open although the caller asked to close it.
    again = answer_of(py_function.result(apig_event()))
    assert again["client_port"] == answer["client_port"]


def test_an_event_cannot_inject_headers_or_requests(py_function: Instance) -> None:
    event = apig_event(
        "GET",
        "/a\r\nX-Injected: 1\r\n\r\nGET /second HTTP/1.1",
        query={"q\r\nX-Injected": "1\r\nX-Injected: 2"},
        headers={"x-evil": "a\r\nX-Injected: 3", "bad name": "1", "x-nul": "a\x00b"},
    )
    answer = answer_of(py_function.result(event))
    names = [name.lower() for name, _ in answer["headers"]]
    assert "x-injected" not in names and "bad name" not in names
    assert dict(answer["headers"])["x-evil"] == "aX-Injected: 3"  # one value, line ends removed
    assert answer["path"].startswith("/a%0D%0AX-Injected")
    assert answer_of(py_function.result(apig_event()))["count"] == 2  # no smuggled request


def test_an_event_that_is_not_apig_is_posted_as_json(py_function: Instance) -> None:
    answer = answer_of(py_function.result({"a": 1, "httpMethod": 5}))
    assert (answer["method"], answer["path"]) == ("POST", "/")
    assert json.loads(base64.b64decode(answer["body"])) == {"a": 1, "httpMethod": 5}
    headers = {name.lower(): value for name, value in answer["headers"]}
    assert headers["content-type"] == "application/json"


def test_a_plain_text_body_and_a_head_request(py_function: Instance) -> None:
    event = {"httpMethod": "post", "path": "/t", "body": "plain ü", "isBase64Encoded": False}
    answer = answer_of(py_function.result(event))
    assert answer["method"] == "POST"
    assert base64.b64decode(answer["body"]) == "plain ü".encode()
    head = py_function.result(apig_event("HEAD", "/"))
    assert (head["statusCode"], head["body"]) == (200, "")
    assert answer_of(py_function.result(apig_event()))["method"] == "GET"


@pytest.mark.parametrize(
    ("event", "message"),
    [
        pytest.param({"httpMethod": "GET", "path": "no-slash"}, "path", id="path"),
        pytest.param({"httpMethod": "G T"}, "HTTP method", id="method"),
        pytest.param(
            {"httpMethod": "GET", "body": "%%%", "isBase64Encoded": True}, "base64", id="body"
        ),
    ],
)
def test_an_event_that_cannot_be_a_request_fails_the_invocation(
    py_function: Instance, event: dict[str, Any], message: str
) -> None:
    reply, _ = py_function.invoke(event)
    assert reply["status"] == "function_error"
    assert message in reply["message"]
    assert answer_of(py_function.result(apig_event()))["method"] == "GET"


@pytest.mark.parametrize(
    ("path", "message"),
    [
        pytest.param("/garbage", "the function's answer is not HTTP", id="garbage"),
        pytest.param("/hangup", "closed the connection without answering", id="hangup"),
    ],
)
def test_a_server_answering_badly_fails_that_invocation_only(
    py_function: Instance, path: str, message: str
) -> None:
    reply, body = py_function.invoke(apig_event("GET", path))
    assert reply["status"] == "function_error"
    assert message in reply["message"]
    assert body == b""
    assert answer_of(py_function.result(apig_event()))["method"] == "GET"  # reconnected


def test_a_server_closing_after_each_answer_is_reconnected(py_function: Instance) -> None:
    ports = [answer_of(py_function.result(apig_event("GET", "/bye")))["client_port"]]
    ports.append(answer_of(py_function.result(apig_event("GET", "/bye")))["client_port"])
    assert ports[0] != ports[1]
    assert answer_of(py_function.result(apig_event()))["count"] == 3


def test_an_answer_over_the_limit_is_result_too_large(py_function: Instance) -> None:
    reply, body = py_function.invoke(apig_event("GET", "/big/100000"), max_result_bytes=50000)
    assert (reply["status"], body) == ("result_too_large", b"")
    reply, body = py_function.invoke(apig_event("GET", "/big/37500"), max_result_bytes=50000)
    assert reply["status"] == "result_too_large"  # the body fits, its base64 JSON does not
    result = py_function.result(apig_event("GET", "/big/30000"), max_result_bytes=50000)
    assert base64.b64decode(result["body"]) == b"z" * 30000


def test_a_node_server(launch: Launch) -> None:
    port = free_port()
    files = {"bootstrap": f"node server.js {port}\n", "server.js": NODE_SERVER}
    instance = launch("http", files, executable=False, http_port=port)
    assert instance.load()["status"] == "ok", instance.log()
    first = answer_of(instance.result(apig_event("GET", "/n", query={"a": "1"})))
    second = instance.result(apig_event("POST", "/n", body=b"\x00\xff"))
    assert (first["count"], first["url"]) == (1, "/n?a=1")
    assert first["headers"]["x-cff-func-name"] == "shimfn"
    assert answer_of(second)["count"] == 2
    assert base64.b64decode(answer_of(second)["body"]) == b"\x00\xff"
    assert answer_of(second)["client_port"] == first["client_port"]
    assert second["headers"]["X-Powered-By"] == ["node", "test"]
    assert "node served POST /n" in instance.segments()[2]


def test_a_slow_start_is_waited_for(launch: Launch) -> None:
    port = free_port()
    files = {"bootstrap": f"python3 -u server.py {port}\n", "server.py": PY_SERVER}
    instance = launch(
        "http", files, executable=False, http_port=port, extra_env={"START_DELAY": "1"}
    )
    assert instance.load()["status"] == "ok"
    # Printed before the server listens: the load came after it, not when the process started.
    assert "slept; listening next" in instance.segments()[0]
    assert answer_of(instance.result(apig_event()))["count"] == 1


def test_an_executable_bootstrap_is_run_directly(launch: Launch) -> None:
    port = free_port()
    files = {
        "bootstrap": f"#!/bin/sh\nexec python3 -u server.py {port}\n",
        "server.py": PY_SERVER,
    }
    instance = launch("http", files, http_port=port)
    assert instance.load()["status"] == "ok"
    answer = answer_of(instance.result(apig_event()))
    assert answer["pid"] == wait_for(lambda: _children(instance.process.pid))[0]


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as children:
        return [int(child) for child in children.read().split()]


def test_a_server_exiting_before_it_listens_fails_the_load(launch: Launch) -> None:
    instance = launch("http", {"bootstrap": "echo no port >&2; exit 4\n"}, executable=False)
    assert instance.load() == {
        "status": "function_error",
        "message": f"the bootstrap exited with code 4 before listening on "
        f"127.0.0.1:{instance.config['http_port']}",
    }
    assert "no port" in instance.log()


def test_an_http_function_without_bootstrap_fails_the_load(launch: Launch) -> None:
    instance = launch("http", {"server.py": PY_SERVER})
    assert instance.load() == {
        "status": "function_error",
        "message": "the code has no bootstrap file at its root",
    }


def test_an_http_server_dying_between_invocations_ends_the_instance(py_function: Instance) -> None:
    pid = answer_of(py_function.result(apig_event()))["pid"]
    os.kill(pid, signal.SIGKILL)
    # sh runs python as its child and exits with 128 + 9 when it is killed; the instance exits
    # with the bootstrap's code.
    assert py_function.wait_exit() == 128 + signal.SIGKILL
    assert "the bootstrap exited with code 137; the instance stops" in py_function.log()


def test_default_port_is_8000(tmp_path: Path) -> None:
    runtime = shim_module.HttpFunction(make_config(tmp_path, "http", http_port=None))
    assert runtime.port == 8000


def test_bootstrap_files_have_modes_checked(tmp_path: Path) -> None:
    bootstrap = tmp_path / "bootstrap"
    bootstrap.write_text("x")
    assert shim_module.bootstrap_argv(str(tmp_path), must_be_executable=False)[0] == [
        "/bin/sh",
        str(bootstrap),
    ]
    bootstrap.chmod(bootstrap.stat().st_mode | stat.S_IXUSR)
    assert shim_module.bootstrap_argv(str(tmp_path), must_be_executable=True)[0] == [str(bootstrap)]
