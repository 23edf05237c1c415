"""The network of its own an HTTP function's instance gets: only a loopback, up, where port
8000 is free whatever the host has on it; entered as root (the strict sandbox) and as an
unprivileged user (a user namespace comes with it)."""

from __future__ import annotations

import ctypes
import os
import socket

import pytest

from openfgs.runtime import bootstrap

PR_SET_DUMPABLE = 4


def in_child(drop_to: int | None) -> tuple[int, str]:
    """Fork; in the child drop to ``drop_to`` (uid = gid), enter a network of its own, bind
    127.0.0.1:8000 and list the interfaces; the child's exit status and what it reported."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        os.close(read)
        code = 1
        try:
            if drop_to is not None:  # as a service that never was root
                os.setgroups([])
                os.setgid(drop_to)
                os.setuid(drop_to)
                # Dropping from root made this process non-dumpable (its /proc files root's);
                # one started unprivileged is dumpable, and may write its own uid_map.
                ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 1)
            bootstrap.enter_own_network()
            with socket.socket() as server:
                server.bind(("127.0.0.1", 8000))
                server.listen()
                with socket.create_connection(("127.0.0.1", 8000), timeout=2):
                    pass
            names = sorted(name for _, name in socket.if_nameindex())
            os.write(write, ",".join(names).encode())
            code = 0
        except BaseException as exc:
            os.write(write, repr(exc).encode())
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        report = pipe.read().decode()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), report


@pytest.fixture
def port_8000_taken_here() -> object:
    """The host's 127.0.0.1:8000 in use (as openfgs itself uses it by default)."""
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            taken.bind(("127.0.0.1", 8000))
        except OSError:
            yield None  # something else has it already: as good
            return
        taken.listen()
        yield taken


@pytest.mark.skipif(os.geteuid() != 0, reason="entering as root needs root")
@pytest.mark.parametrize("drop_to", [None, 65534], ids=["root", "unprivileged"])
def test_an_own_network_has_only_a_loopback_with_port_8000_free(
    port_8000_taken_here: object, drop_to: int | None
) -> None:
    status, report = in_child(drop_to)
    assert status == 0, report
    assert report == "lo", report
