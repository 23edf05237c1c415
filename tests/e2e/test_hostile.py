"""Hostile requests against a real ``openfgs serve``: each gets a FunctionGraph-shaped 4xx (or,
for an accepted event, a terminal record), memory stays flat, and the service restarts cleanly.

One process serves the whole corpus; the last tests measure its memory and restart it.
"""

from __future__ import annotations

import json
import os
import random
import socket
import string
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.conftest import RawApi, function_path, zip_of
from tests.support import (
    CREDENTIAL,
    PROJECT,
    b64,
    create_function,
    sdk_client,
    token_body,
    urn,
    wait_for,
)

from .conftest import Serve, ServeProcess

pytestmark = pytest.mark.slow

FAILING = """
def handler(event, context):
    raise RuntimeError("always")
"""
NESTED = b"[" * 1000 + b"]" * 1000
FUNCTIONS = f"/v2/{PROJECT}/fgs/functions"


class Hostile:
    """The one service process of this module, with what its tests need to reach it."""

    def __init__(self, serve: Serve, data_dir: Path) -> None:
        self.serve = serve
        self.data_dir = data_dir
        self.process: ServeProcess = serve.start(data_dir)
        self.raw = RawApi(self.process.url)
        self.sdk = sdk_client(self.process.url)

    def restart(self) -> None:
        self.raw.close()
        self.process.stop()
        self.process = self.serve.start(self.data_dir)
        self.raw = RawApi(self.process.url)
        self.sdk = sdk_client(self.process.url)

    def rss_mb(self) -> float:
        status = Path(f"/proc/{self.process.process.pid}/status").read_text()
        line = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
        return int(line.split()[1]) / 1024

    def port(self) -> int:
        return int(self.process.url.rsplit(":", 1)[1])


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hostile]:
    tmp = tmp_path_factory.mktemp("hostile")
    serve = Serve(tmp)
    try:
        service = Hostile(serve, tmp / "data")
        try:
            create_function(service.sdk, "victim", "def handler(e, c):\n    return e\n")
            create_function(service.sdk, "failing", FAILING)
            create_function(service.sdk, "sink", "def handler(e, c):\n    return 1\n")
            yield service
        finally:
            service.raw.close()
    finally:
        serve.close()


def assert_fss_4xx(response: httpx.Response) -> None:
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    body = response.json()
    assert set(body) == {"error_code", "error_msg"}, body
    assert body["error_code"].startswith(("FSS.", "APIGW.")), body


VICTIM = urn("victim")
# name → (method, path, query, headers, body): signed with the test credential, but for
# headers given as bytes, added after signing as they are.
SIGNED: dict[str, tuple[str, str, dict[str, str], dict[str, Any], bytes]] = {
    "limit superscript two": (
        "GET",
        function_path(VICTIM, "/async-invocations"),
        {"limit": "²"},
        {},
        b"",
    ),
    "limit plus minus": (
        "GET",
        function_path(VICTIM, "/async-invocations"),
        {"limit": "+-5"},
        {},
        b"",
    ),
    "limit minus minus": (
        "GET",
        function_path(VICTIM, "/async-invocations"),
        {"limit": "--5"},
        {},
        b"",
    ),
    "limit arabic three": (
        "GET",
        function_path(VICTIM, "/async-invocations"),
        {"limit": "٣"},
        {},
        b"",
    ),
    "limit huge": (
        "GET",
        function_path(VICTIM, "/async-invocations"),
        {"limit": "9" * 400},
        {},
        b"",
    ),
    "marker superscript": (
        "GET",
        function_path(VICTIM, "/async-invocations"),
        {"marker": "²"},
        {},
        b"",
    ),
    "active marker superscript": (
        "GET",
        function_path(VICTIM, "/active-async-invocations"),
        {"marker": "²", "status": "SUCCESS"},
        {},
        b"",
    ),
    "active limit": (
        "GET",
        function_path(VICTIM, "/active-async-invocations"),
        {"limit": "-1"},
        {},
        b"",
    ),
    "functions marker": ("GET", FUNCTIONS, {"marker": "²"}, {}, b""),
    "functions maxitems": ("GET", FUNCTIONS, {"maxitems": "+-5"}, {}, b""),
    "configs marker": (
        "GET",
        function_path(VICTIM, "/async-invoke-configs"),
        {"marker": "²"},
        {},
        b"",
    ),
    "configs limit": (
        "GET",
        function_path(VICTIM, "/async-invoke-configs"),
        {"limit": "٣"},
        {},
        b"",
    ),
    "instance memory superscript": (
        "POST",
        function_path(VICTIM, "/invocations"),
        {},
        {"X-Cff-Instance-Memory": "²".encode()},  # unsigned: the signer takes text only
        b"{}",
    ),
    "instance memory above the function's": (
        "POST",
        function_path(VICTIM, "/invocations"),
        {},
        {"X-Cff-Instance-Memory": "10240"},
        b"{}",
    ),
    "begin time garbage": (
        "GET",
        function_path(VICTIM, "/async-invocations"),
        {"query_begin_time": "2024-13-45T99:99:99"},
        {},
        b"",
    ),
    "status unknown": (
        "GET",
        function_path(VICTIM, "/async-invocations"),
        {"status": "WAIT\x00"},
        {},
        b"",
    ),
    "request id long": (
        "GET",
        function_path(VICTIM, "/async-invocations"),
        {"request_id": "r" * 5000},
        {},
        b"",
    ),
    "urn with nul": ("GET", function_path(VICTIM + "\x00", "/config"), {}, {}, b""),
    "urn very long": ("GET", function_path("urn:" + "x" * 20000, "/config"), {}, {}, b""),
    "async body not json": ("POST", function_path(VICTIM, "/invocations-async"), {}, {}, b"{nope"),
    "async body invalid utf-8": (
        "POST",
        function_path(VICTIM, "/invocations-async"),
        {},
        {},
        b'"\xff\xfe"',
    ),
    "async body over 256 KB": (
        "POST",
        function_path(VICTIM, "/invocations-async"),
        {},
        {},
        b"1" * (256 * 1024 + 1),
    ),
    "create body nested": ("POST", FUNCTIONS, {}, {}, NESTED),
    "create func_name number": ("POST", FUNCTIONS, {}, {}, b'{"func_name": 5}'),
    "create zip drive letter": ("POST", FUNCTIONS, {}, {}, b""),  # body set below
    "create zip dot entry": ("POST", FUNCTIONS, {}, {}, b""),
    "create zip backslash escape": ("POST", FUNCTIONS, {}, {}, b""),
    "create reserved env": ("POST", FUNCTIONS, {}, {}, b""),
    "create nested user_data": ("POST", FUNCTIONS, {}, {}, b""),
    "config huge timeout": ("PUT", function_path(VICTIM, "/config"), {}, {}, b'{"timeout": 1e400}'),
    "async config nested destination": (
        "PUT",
        function_path(VICTIM, "/async-invoke-config"),
        {},
        {},
        b'{"destination_config": {"on_failure": {"destination": "FunctionGraph", "param": "'
        + b"[" * 500
        + b'"}}}',
    ),
    "cancel nested": ("POST", function_path(VICTIM, "/cancel"), {}, {}, NESTED),
    "rerun garbage": (
        "POST",
        f"/v2/{PROJECT}/openfgs/functions/{VICTIM}/rerun",
        {},
        {},
        b'{"status": ["' + b"x" * 1000 + b'"]}',
    ),
    "detail long id": (
        "GET",
        f"/v2/{PROJECT}/openfgs/async-invocations/" + "r" * 3000,
        {},
        {},
        b"",
    ),
}


def zip_body(name: str, files: dict[str, str], **fields: Any) -> bytes:
    body = {
        "func_name": name,
        "package": "default",
        "runtime": "Python3.9",
        "timeout": 30,
        "handler": "index.handler",
        "memory_size": 128,
        "code_type": "zip",
        "func_code": {"file": b64(zip_of(files))},
        **fields,
    }
    return json.dumps(body).encode()


BODIES = {
    "create zip drive letter": zip_body("drive", {"index.py": "x = 1", "C:/x.txt": "x"}),
    "create zip dot entry": zip_body("dot", {"index.py": "x = 1", ".": "x"}),
    "create zip backslash escape": zip_body("slash", {"index.py": "x = 1", "..\\evil.py": "x"}),
    "create nested user_data": zip_body(
        "nested", {"index.py": "x = 1"}, user_data="[" * 1000 + "]" * 1000
    ),
    "create reserved env": zip_body(
        "env", {"index.py": "x = 1"}, user_data=json.dumps({"LD_PRELOAD": "/tmp/evil.so"})
    ),
}


@pytest.mark.parametrize("case", list(SIGNED))
def test_signed_hostile_requests_get_a_4xx(hostile: Hostile, case: str) -> None:
    method, path, query, headers, body = SIGNED[case]
    text = {k: v for k, v in headers.items() if isinstance(v, str)}
    request = hostile.raw.build(
        method, path, params=query, headers=text, content=BODIES.get(case, body)
    )
    extra = {k: v for k, v in headers.items() if isinstance(v, bytes)}
    assert_fss_4xx(send_raw(hostile, request, extra) if extra else hostile.raw.send(request))


UNSIGNED: dict[str, tuple[str, str, dict[str, Any], bytes]] = {
    "no credentials": ("GET", FUNCTIONS, {}, b""),
    "create with a bad body": ("POST", FUNCTIONS, {}, b'{"func_name": 5}'),
    "create with a nested body": ("POST", FUNCTIONS, {}, NESTED),
    "token of garbage": ("GET", FUNCTIONS, {"X-Auth-Token": b"\x01" * 1000}, b""),
    "token endpoint garbage": ("POST", "/v3/auth/tokens", {}, b"\x00\xff" * 100),
    "token endpoint nested": ("POST", "/v3/auth/tokens", {}, NESTED),
    "authorization garbage": (
        "GET",
        FUNCTIONS,
        {"Authorization": "SDK-HMAC-SHA256 " + "," * 5000},
        b"",
    ),
    "authorization latin-1": (
        "GET",
        FUNCTIONS,
        {"Authorization": b"SDK-HMAC-SHA256 Access=\xe9\xe9"},
        b"",
    ),
    "sdk date garbage": (
        "GET",
        FUNCTIONS,
        {
            "X-Sdk-Date": "99999999T999999Z",
            "Authorization": "SDK-HMAC-SHA256 Access=AK, SignedHeaders=x-sdk-date, Signature=00",
        },
        b"",
    ),
    "project id too long": ("GET", "/v2/" + "p" * 5000 + "/fgs/functions", {}, b""),
    "unknown route": ("GET", f"/v2/{PROJECT}/nothing/here", {}, b""),
    "method not allowed": ("PATCH", FUNCTIONS, {}, b""),
}


@pytest.mark.parametrize("case", list(UNSIGNED))
def test_unsigned_hostile_requests_get_a_4xx(hostile: Hostile, case: str) -> None:
    method, path, headers, body = UNSIGNED[case]
    text = {k: v for k, v in headers.items() if isinstance(v, str)}
    request = hostile.raw.build(method, path, headers=text, content=body, credential=None)
    extra = {k: v for k, v in headers.items() if isinstance(v, bytes)}
    assert_fss_4xx(send_raw(hostile, request, extra) if extra else hostile.raw.send(request))


def send_raw(hostile: Hostile, request: httpx.Request, extra: dict[str, bytes]) -> httpx.Response:
    """``request`` with ``extra`` headers of any bytes (httpx refuses non-ASCII ones)."""
    lines = [f"{request.method} {request.url.raw_path.decode()} HTTP/1.1".encode()]
    lines += [name + b": " + value for name, value in request.headers.raw]
    lines += [name.encode() + b": " + value for name, value in extra.items()]
    payload = b"\r\n".join(lines) + b"\r\nConnection: close\r\n\r\n" + request.content
    with socket.create_connection(("127.0.0.1", hostile.port()), timeout=30) as sock:
        sock.sendall(payload)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    return httpx.Response(status, content=body, headers={"content-type": "application/json"})


def test_a_nested_event_to_a_failing_function_with_a_destination_ends_terminal(
    hostile: Hostile,
) -> None:
    param = json.dumps({"func_urn": urn("sink")})
    config = {
        "max_async_retry_attempts": 0,
        "destination_config": {"on_failure": {"destination": "FunctionGraph", "param": param}},
    }
    path = function_path(urn("failing"), "/async-invoke-config")
    assert hostile.raw.call("PUT", path, content=json.dumps(config).encode()).status_code == 200
    accepted = hostile.raw.call(
        "POST", function_path(urn("failing"), "/invocations-async"), content=NESTED
    )
    assert accepted.status_code == 202, accepted.text
    request_id = accepted.json()["request_id"]

    def status() -> str | None:
        page = hostile.raw.call(
            "GET",
            function_path(urn("failing"), "/async-invocations"),
            params={"request_id": request_id},
        ).json()["invocations"]
        return (
            page[0]["status"]
            if page and page[0]["status"] in ("SUCCESS", "FAIL", "DISCARD")
            else None
        )

    assert wait_for(status, 60) == "FAIL"
    # The service keeps serving everyone, and restarts cleanly with the record in its store.
    victim = hostile.raw.call("POST", function_path(VICTIM, "/invocations"), content=b'{"k": 1}')
    assert victim.status_code == 200, victim.text
    hostile.restart()
    assert hostile.raw.call("GET", FUNCTIONS).status_code == 200


def raw_exchange(hostile: Hostile, head: bytes, body: bytes = b"") -> int:
    """Send ``head`` (and ``body``) on a fresh connection; the status of the answer."""
    with socket.create_connection(("127.0.0.1", hostile.port()), timeout=30) as sock:
        try:
            sock.sendall(head + body)
        except OSError:
            pass  # the server may answer and close before everything is sent
        answer = sock.recv(65536)
    return int(answer.split()[1])


def test_huge_bodies_are_refused_by_their_declared_size(hostile: Hostile) -> None:
    for path in (
        function_path(VICTIM, "/invocations"),
        "/v3/auth/tokens",
        FUNCTIONS,
    ):
        head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 1600000000\r\n\r\n".encode()
        assert raw_exchange(hostile, head) == 413, path


def test_memory_stays_flat_under_hostile_floods(hostile: Hostile) -> None:
    """Big headers, unknown access keys, streamed bodies without a length, wrong passwords."""
    flood(hostile, 20)  # warm up: what a first request allocates is no growth
    before = hostile.rss_mb()
    flood(hostile, 1000)
    after = hostile.rss_mb()
    # Unbounded, the access keys alone would keep 20 MB and the headers 100 MB.
    assert after - before < 15, (before, after)


def flood(hostile: Hostile, count: int) -> None:
    rng = random.Random(count)
    big = b"Authorization: SDK-HMAC-SHA256 Access=" + b"A" * (1 << 20) + b"\r\n"
    for _ in range(count // 10):
        head = f"GET {FUNCTIONS} HTTP/1.1\r\nHost: x\r\n".encode() + big + b"\r\n"
        assert raw_exchange(hostile, head) == 431
    date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    with httpx.Client(base_url=hostile.process.url, timeout=30) as client:
        for _ in range(count):
            key = "".join(rng.choices(string.ascii_uppercase, k=20_000))
            authorization = f"SDK-HMAC-SHA256 Access={key}, SignedHeaders=x-sdk-date, Signature=00"
            answer = client.get(
                FUNCTIONS, headers={"X-Sdk-Date": date, "Authorization": authorization}
            )
            assert answer.status_code in (401, 403), answer.text

        def stream() -> Iterator[bytes]:
            for _ in range(64):
                yield b"x" * (1 << 20)

        # Chunked, without a credential: refused before a byte of it is kept.
        answer = client.post(function_path(VICTIM, "/invocations"), content=stream())
        assert answer.status_code == 403


def test_repeated_wrong_passwords_lock_the_key(hostile: Hostile) -> None:
    def token(secret: str) -> httpx.Response:
        body = token_body(CREDENTIAL.access_key, secret, None, method="password")
        return httpx.post(f"{hostile.process.url}/v3/auth/tokens", json=body, timeout=30)

    answers = [token("wrong-" + str(n)) for n in range(20)]
    assert all(400 <= a.status_code < 500 for a in answers)
    assert {a.status_code for a in answers[-5:]} <= {401, 429}
    locked = token(CREDENTIAL.secret_key)
    assert locked.status_code in (401, 429), locked.text
    assert "retry-after" in {k.lower() for k in locked.headers}


def test_the_service_restarts_cleanly_after_the_corpus(hostile: Hostile) -> None:
    hostile.restart()
    assert (
        hostile.raw.call("POST", function_path(VICTIM, "/invocations"), content=b"{}").status_code
        == 200
    )
    assert os.path.exists(hostile.data_dir / "openfgs.db")
