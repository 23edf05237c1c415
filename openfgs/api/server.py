"""The HTTP server under the API: uvicorn with httptools, bounded against slow and big clients.

uvicorn reads a request's headers for as long as a client cares to send them, keeps them
whole in memory however large, and takes every connection offered. :class:`BoundedProtocol`
adds what a server on the internet needs below the application:

- a cap on the request line and headers together (``max_header_bytes``): 431, connection closed;
- a deadline for them (``header_read_timeout_seconds``, from the connection, or from a
  request's first bytes when they do not bring its whole head): 408, connection closed — a
  client trickling headers holds nothing for long. An idle keep-alive connection is closed by
  uvicorn's own keep-alive timeout. No timer is set for a head that arrives whole;
- deadlines for a body: each chunk within ``body_read_timeout_seconds`` of the one before,
  the whole within ``request_read_timeout_seconds`` of the headers: 408, connection closed.
  No timer is set for a body that arrives with its headers, as nearly all do;
- a cap on open connections (``max_connections``): one more is answered 503 and closed;
- a request the parser refuses answered 400 in FunctionGraph's error shape, like every other.

Bodies are bounded one layer up, per route, by :mod:`openfgs.api.guard`.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import orjson
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from openfgs.models import new_request_id
from openfgs.settings import Settings


def _error(status: int, reason: str, message: str) -> bytes:
    """A whole HTTP response in FunctionGraph's error shape, closing the connection."""
    body = orjson.dumps({"error_code": f"FSS.0{status}", "error_msg": message})
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        f"x-request-id: {new_request_id()}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode() + body


class BoundedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with header size, header time and connection bounds.

    Bytes count as header bytes while no request body is being read: between requests and
    in a request's line and headers.
    """

    max_header_bytes = 32 * 1024
    header_timeout = 10.0
    body_idle_timeout = 30.0
    body_timeout = 120.0
    max_connections = 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._reading_body = False
        self._header_bytes = 0
        self._header_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._body_deadline = 0.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            self._refuse(503, "Service Unavailable", "Too many connections; try again later")
            return
        self._start_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        self._cancel_body_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        counted = not self._reading_body
        if counted:
            self._header_bytes += len(data)
        super().data_received(data)
        if counted and not self._reading_body and self._header_bytes > self.max_header_bytes:
            limit = self.max_header_bytes // 1024
            self._refuse(
                431,
                "Request Header Fields Too Large",
                f"The request line and headers are larger than {limit} KB",
            )
        elif self._reading_body:  # the body goes on past this chunk: the next one is due
            self._start_body_deadline()
        elif counted and self._header_timer is None and self._header_bytes:
            self._start_header_deadline()  # a head that did not arrive whole

    def on_headers_complete(self) -> None:
        self._reading_body = True
        self._body_deadline = self.loop.time() + self.body_timeout
        self._cancel_header_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._reading_body = False
        self._header_bytes = 0
        self._cancel_body_timer()
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        """A request the parser cannot read (control characters, bad framing): 400 in
        FunctionGraph's shape instead of uvicorn's plain text."""
        self._refuse(400, "Bad Request", "Invalid HTTP request: it cannot be parsed")

    def _start_header_deadline(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_late)

    def _headers_late(self) -> None:
        self._header_timer = None
        idle = self.cycle is None or self.cycle.response_complete
        if self._reading_body or not idle or self.transport.is_closing():
            return
        if self._header_bytes == 0:  # an idle keep-alive connection: just close it
            self.transport.close()
            return
        self._refuse(408, "Request Timeout", "The request headers did not arrive in time")

    def _start_body_deadline(self) -> None:
        self._cancel_body_timer()
        when = min(self.loop.time() + self.body_idle_timeout, self._body_deadline)
        self._body_timer = self.loop.call_at(when, self._body_late)

    def _body_late(self) -> None:
        self._body_timer = None
        if not self._reading_body or self.transport.is_closing():
            return
        if self.cycle is not None and self.cycle.response_started:
            self.transport.close()  # answered already (e.g. 413): nothing more to say
            return
        self._refuse(408, "Request Timeout", "The request body did not arrive in time")

    def _cancel_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _refuse(self, status: int, reason: str, message: str) -> None:
        self._cancel_header_timer()
        self._cancel_body_timer()
        if not self.transport.is_closing():
            self.transport.write(_error(status, reason, message))
            self.transport.close()


def protocol_for(settings: Settings) -> type[BoundedProtocol]:
    """:class:`BoundedProtocol` with the limits of ``settings``."""
    return type(
        "BoundedProtocol",
        (BoundedProtocol,),
        {
            "max_header_bytes": settings.max_header_bytes,
            "header_timeout": settings.header_read_timeout_seconds,
            "body_idle_timeout": settings.body_read_timeout_seconds,
            "body_timeout": settings.request_read_timeout_seconds,
            "max_connections": settings.max_connections,
        },
    )


def server_config(app: Any, settings: Settings, **overrides: Any) -> uvicorn.Config:
    """The uvicorn configuration every openfgs server runs with (the CLI's and the tests')."""
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        "access_log": False,
        "proxy_headers": False,  # nothing reads the client's address: skip the middleware
        "loop": "auto",
        "http": protocol_for(settings),
        "lifespan": "on",
        "timeout_keep_alive": settings.keep_alive_seconds,
        **overrides,
    }
    return uvicorn.Config(app, **options)


def shared_socket(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """A listening socket on ``host:port`` that other processes of this user may bind too
    (``SO_REUSEPORT``: the kernel spreads new connections over every such socket, and joins
    only sockets of the same user).
    """
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock


def first_shared_socket(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """The primary's :func:`shared_socket`, refused when anything listens there already.

    ``SO_REUSEPORT`` would let the primary join another service of the same user that listens
    with it too, and share its connections; binding without it first fails on any listener.
    """
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(address)  # OSError (address in use) when another process listens there
        if port == 0:
            port = probe.getsockname()[1]
    return shared_socket(host, port, backlog)
