"""Requests are bounded before any work: headers, bodies per route, read times, connections,
and the caller authenticated before anything reads the body.

The protocol-level bounds are driven over raw sockets, as a slow or hostile client sends them.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from openfgs.api.guard import code_body_bytes
from tests.api.conftest import RawApi, function_path
from tests.support import PROJECT, LiveServer, ServerFactory, issue_token, urn

SHORT = 0.5  # seconds: the read timeouts of the bounded server below


@pytest.fixture
def bounded(make_server: ServerFactory) -> LiveServer:
    """A server with short read timeouts and few connections, to reach every bound quickly."""
    return make_server(
        header_read_timeout_seconds=SHORT,
        body_read_timeout_seconds=SHORT,
        request_read_timeout_seconds=4 * SHORT,
        max_connections=4,
    )


def connect(server: LiveServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.settings.port), timeout=20)
    return sock


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes, bool]:
    """Status, headers, body, and whether the server closed the connection after it."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed before a response: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    closed = headers.get("connection", "").lower() == "close"
    if closed:
        sock.settimeout(5)
        assert sock.recv(1) == b"", "the server said close but kept the connection"
    return status, headers, body[:length], closed


def assert_fss(body: bytes, code: str) -> None:
    parsed = json.loads(body)
    assert set(parsed) == {"error_code", "error_msg"}, parsed
    assert parsed["error_code"] == code, parsed


def test_headers_larger_than_the_limit_get_431_and_the_connection_closes(
    server: LiveServer,
) -> None:
    limit = server.settings.max_header_bytes
    with connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (limit + 1))
        status, _, body, closed = read_response(sock)
    assert status == 431 and closed
    assert_fss(body, "FSS.0431")


def test_a_16_mb_access_value_is_refused_without_being_kept(server: LiveServer) -> None:
    header = b"Authorization: SDK-HMAC-SHA256 Access=" + b"A" * (16 << 20) + b"\r\n"
    with connect(server) as sock:
        sock.sendall(b"GET /v2/%s/fgs/functions HTTP/1.1\r\nHost: x\r\n" % PROJECT.encode())
        with pytest.raises(OSError):  # the server closes while we are still sending
            sock.sendall(header)
        sock.settimeout(5)
        received = sock.recv(65536)
    assert received.startswith(b"HTTP/1.1 431 ")


def test_headers_just_under_the_limit_are_served(server: LiveServer) -> None:
    with connect(server) as sock:
        padding = b"a" * (server.settings.max_header_bytes - 200)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + padding + b"\r\n\r\n")
        status, _, _, _ = read_response(sock)
    assert status == 200


def test_trickled_headers_get_408_at_the_header_deadline(bounded: LiveServer) -> None:
    with connect(bounded) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        started = time.monotonic()
        status = None
        # One header byte at a time, well inside any per-byte timeout, never finishing.
        while status is None and time.monotonic() - started < 20:
            try:
                sock.sendall(b"X")
            except OSError:
                break
            sock.settimeout(SHORT / 5)
            try:
                status = int(sock.recv(65536).split()[1])
            except TimeoutError:
                continue
    assert status == 408


def test_an_idle_connection_is_closed_at_the_header_deadline(bounded: LiveServer) -> None:
    with connect(bounded) as sock:
        sock.settimeout(20)
        assert sock.recv(1) == b""


def test_a_trickled_body_gets_408(bounded: LiveServer) -> None:
    path = f"/v2/{PROJECT}/fgs/functions"
    with connect(bounded) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n".encode() + b"{"
        )
        status, _, body, closed = read_response(sock)
    assert status == 408 and closed
    assert_fss(body, "FSS.0408")


def test_a_body_trickled_inside_the_chunk_timeout_is_cut_at_the_total(
    bounded: LiveServer,
) -> None:
    path = f"/v2/{PROJECT}/fgs/functions"
    with connect(bounded) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n".encode())
        started = time.monotonic()
        answer = b""
        while not answer and time.monotonic() - started < 20:
            try:
                sock.sendall(b"x")  # well inside the chunk timeout, never finishing
            except OSError:
                break
            sock.settimeout(SHORT / 4)
            try:
                answer = sock.recv(65536)
            except TimeoutError:
                continue
    assert answer.startswith(b"HTTP/1.1 408 "), answer


def test_connections_past_the_cap_get_503(bounded: LiveServer) -> None:
    held = [connect(bounded) for _ in range(bounded.settings.max_connections)]
    try:
        with connect(bounded) as sock:
            status, _, body, closed = read_response(sock)
        assert status == 503 and closed
        assert_fss(body, "FSS.0503")
    finally:
        for sock in held:
            sock.close()


def test_a_declared_length_over_the_limit_is_refused_before_the_body_is_sent(
    server: LiveServer,
) -> None:
    path = function_path(urn("nothing"), "/invocations-async")
    with connect(server) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n".encode()
        )
        status, _, body, _ = read_response(sock)
    assert status == 413
    assert_fss(body, "FSS.0413")


@pytest.mark.parametrize(
    ("method", "suffix", "limit"),
    [
        ("POST", "/invocations-async", lambda s: s.max_async_body_bytes),
        ("POST", "/invocations", lambda s: s.max_sync_body_bytes),
        ("PUT", "/async-invoke-config", lambda s: s.max_body_bytes),
        ("PUT", "/config", lambda s: s.max_body_bytes),
        ("PUT", "/code", code_body_bytes),
    ],
)
def test_each_route_refuses_a_body_over_its_limit_before_authentication(
    server: LiveServer, raw: RawApi, method: str, suffix: str, limit: object
) -> None:
    size = limit(server.settings) + 1  # type: ignore[operator]
    path = function_path(urn("nothing"), suffix)
    response = raw.call(method, path, content=b"x" * size, credential=None)
    assert response.status_code == 413, response.text
    assert response.json()["error_code"] == "FSS.0413"


def test_token_endpoint_refuses_a_large_body(server: LiveServer, raw: RawApi) -> None:
    body = b"x" * (server.settings.max_body_bytes + 1)
    response = raw.call("POST", "/v3/auth/tokens", content=body, credential=None)
    assert response.status_code == 413


@pytest.mark.parametrize("content", [b'{"func_name": 5}', b"{bad json", b"[" * 1000])
def test_an_unauthenticated_caller_learns_nothing_of_the_body(
    server: LiveServer, raw: RawApi, content: bytes
) -> None:
    response = raw.call("POST", f"/v2/{PROJECT}/fgs/functions", content=content, credential=None)
    assert response.status_code == 403, response.text


def test_an_authenticated_caller_gets_the_body_errors(server: LiveServer, raw: RawApi) -> None:
    response = raw.call("POST", f"/v2/{PROJECT}/fgs/functions", content=b"{bad json")
    assert response.status_code == 400, response.text


def test_an_unknown_route_under_a_project_needs_authentication(
    server: LiveServer, raw: RawApi
) -> None:
    assert raw.call("GET", f"/v2/{PROJECT}/nothing", credential=None).status_code == 403
    assert raw.call("GET", f"/v2/{PROJECT}/nothing").status_code == 404


def test_a_bad_content_length_is_400(server: LiveServer) -> None:
    with connect(server) as sock:
        sock.sendall(b"POST /v3/auth/tokens HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\n")
        status, _, _, _ = read_response(sock)
    assert status == 400


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 403),
        (
            {
                "Authorization": "SDK-HMAC-SHA256 Access=NOSUCHKEY, SignedHeaders=x-sdk-date, Signature=0"
            },
            401,
        ),
        ({"X-Auth-Token": "MIInot-a-token"}, 403),
    ],
)
def test_a_large_body_is_not_read_for_an_unknown_caller(
    server: LiveServer, headers: dict[str, str], status: int
) -> None:
    """The answer comes while the body has not been sent at all."""
    headers = {**headers, "X-Sdk-Date": time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())}
    head = f"POST /v2/{PROJECT}/fgs/functions HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    with connect(server) as sock:
        sock.sendall(head.encode() + b"\r\n")
        answer, _, body, _ = read_response(sock)
    assert answer == status, body
    assert_fss(body, "APIGW.0301" if status == 401 else "FSS.0403")


def test_a_large_body_of_a_known_caller_is_read_and_verified(
    server: LiveServer, raw: RawApi
) -> None:
    payload = json.dumps({"pad": "x" * 200_000}).encode()  # over the read-before-check size
    response = raw.call("POST", function_path(urn("missing"), "/invocations"), content=payload)
    assert response.status_code == 404, response.text  # authenticated, then the route ran
    forged = raw.build("POST", function_path(urn("missing"), "/invocations"), content=payload)
    forged = raw.http.build_request(
        "POST", forged.url, headers=forged.headers, content=payload[:-1] + b" "
    )
    assert raw.send(forged).status_code == 401  # the signature still covers the body


def test_a_chunked_body_of_a_known_caller_is_cut_at_the_limit(server: LiveServer) -> None:
    token = issue_token(server.url)

    def stream() -> Iterator[bytes]:
        for _ in range(16):
            yield b"x" * (1 << 20)

    response = httpx.post(
        server.url + function_path(urn("missing"), "/invocations"),
        content=stream(),
        headers={"X-Auth-Token": token},
        timeout=60,
    )
    assert response.status_code == 413, response.text
