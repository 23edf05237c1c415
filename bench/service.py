"""An ``openfgs serve`` under test: started on a free loopback port, with the bench functions.

Each service gets a backend of its own — a fresh temporary data directory (SQLite) or a fresh
PostgreSQL schema — and the credential through ``OPENFGS_PROJECT_ID/ACCESS_KEY/SECRET_KEY``.
The functions are deployed through the API, as a user would.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bench.procs import Process, Resources, free_port, schema_url, wait_until
from openfgs.auth.service import new_credential
from openfgs.client import FunctionGraphClient
from openfgs.models import Credential

BACKENDS = ("sqlite", "postgres")
REGION = "cn-north-4"
STARTUP_SECONDS = 60.0

# The benchmark's function code: a no-op, a probe that reports when it started, and a sleeper.
HANDLERS = '''\
"""Handlers of the openfgs benchmark."""

import socket
import time

_udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)


def noop(event, context):
    return None


def probe(event, context):
    started = time.time_ns()
    port = int(context.getUserData("BENCH_UDP_PORT"))
    _udp.sendto(f"{context.getRequestID()} {started}".encode(), ("127.0.0.1", port))
    return None


def sleep(event, context):
    time.sleep(float(event.get("seconds", 1.0)))
    return None
'''


@dataclass
class Service:
    """A running ``openfgs serve`` and how to reach it."""

    backend: str
    port: int
    process: Process
    credential: Credential
    database_url: str
    data_dir: Path | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def urn(self, name: str) -> str:
        return f"urn:fss:{REGION}:{self.credential.project_id}:function:default:{name}:latest"

    def path(self, name: str, suffix: str) -> str:
        """``/v2/{project}/fgs/functions/{urn}/{suffix}`` of function ``name``."""
        return f"/v2/{self.credential.project_id}/fgs/functions/{self.urn(name)}/{suffix}"

    def stats_path(self, name: str) -> str:
        return f"/v2/{self.credential.project_id}/openfgs/functions/{self.urn(name)}/stats"

    def deploy(self, name: str, handler: str, user_data: Mapping[str, str] | None = None) -> None:
        """Create a function running ``index.<handler>`` of :data:`HANDLERS`."""
        client = FunctionGraphClient(self.endpoint, self.credential, timeout=60)
        try:
            body: dict[str, object] = {
                "func_name": name,
                "package": "default",
                "runtime": "Python3.9",
                "timeout": 30,
                "handler": f"index.{handler}",
                "memory_size": 128,
                "code_type": "inline",
                "func_code": {"file": base64.b64encode(HANDLERS.encode()).decode()},
            }
            if user_data:
                body["user_data"] = json.dumps(dict(user_data))
            client.json("POST", "/functions", body=body)
        finally:
            client.close()


def service_env(credential: Credential, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a started service: ours without OPENFGS_*, plus what it is told."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENFGS_")}
    env.update(
        {
            "OPENFGS_PROJECT_ID": credential.project_id,
            "OPENFGS_ACCESS_KEY": credential.access_key,
            "OPENFGS_SECRET_KEY": credential.secret_key,
            "OPENFGS_LOG_LEVEL": "warning",
        }
    )
    env.update(extra or {})
    for item in os.environ.get("BENCH_SERVICE_ENV", "").split():  # KEY=VALUE … for A/B runs
        key, _, value = item.partition("=")
        env[key] = value
    return env


def _healthy(service: Service) -> bool:
    if not service.process.alive():
        raise RuntimeError(f"openfgs serve ({service.backend}) exited:\n{service.process.tail()}")
    try:
        with urllib.request.urlopen(f"{service.endpoint}/healthz", timeout=1) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def start_service(
    res: Resources,
    backend: str,
    *,
    worker: bool = True,
    env: Mapping[str, str] | None = None,
    database_url: str | None = None,
    credential: Credential | None = None,
    tag: str = "svc",
    processes: int = 1,
) -> Service:
    """Start ``openfgs serve`` on ``backend`` and wait until ``/healthz`` answers 200 (from
    each of ``processes`` processes)."""
    credential = credential or new_credential()
    data_dir = res.path(f"{tag}-{backend}-data")
    if database_url is None:
        database_url = schema_url(res.new_schema(tag)) if backend == "postgres" else ""
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "openfgs.cli",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
    ]
    if database_url:
        argv += ["--database-url", database_url]
    if not worker:
        argv.append("--no-worker")
    if processes != 1:
        argv += ["--processes", str(processes)]
    process = res.start(f"serve-{tag}-{backend}", argv, env=service_env(credential, env))
    service = Service(backend, port, process, credential, database_url, data_dir)
    wait_until(lambda: _healthy(service), STARTUP_SECONDS, f"openfgs serve ({backend})")
    if processes > 1:
        wait_until(
            lambda: len(_answering(service, 8 * processes)) >= processes,
            STARTUP_SECONDS,
            f"the {processes} processes of openfgs serve ({backend})",
        )
    return service


def _answering(service: Service, tries: int) -> set[str]:
    """The processes (``x-openfgs-process``) that answered ``tries`` new connections."""
    seen = set()
    for _ in range(tries):
        request = urllib.request.Request(
            f"{service.endpoint}/healthz", headers={"Connection": "close"}
        )
        try:
            with urllib.request.urlopen(request, timeout=1) as answer:
                seen.add(answer.headers.get("x-openfgs-process", "0"))
        except OSError:
            pass
    return seen


# -- CPU time ---------------------------------------------------------------------------------

TICKS = os.sysconf("SC_CLK_TCK")
POSTGRES_PORT = 5432


def stat_fields(path: Path) -> list[str] | None:
    """The fields of a ``/proc/<pid>/stat`` (or ``…/task/<tid>/stat``) after the command name
    — its third field first — or None when the process is gone."""
    try:
        stat = path.read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2 :].split()


def cpu_ticks(pid: int, *, reaped: bool = False) -> int | None:
    """User + system clock ticks of ``pid`` — with ``reaped``, those of the children it has
    waited for too — or None when it is gone."""
    fields = stat_fields(Path(f"/proc/{pid}/stat"))
    if fields is None:
        return None
    return sum(int(value) for value in fields[11 : 15 if reaped else 13])


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """User + system CPU seconds of each process still there."""
    ticks = {pid: cpu_ticks(pid) for pid in pids}
    return {pid: used / TICKS for pid, used in ticks.items() if used is not None}


def service_pids(service: Service) -> list[int]:
    """The service's processes: the primary and everything below it (its fronts)."""
    return [service.process.pid] + [pid for pid, _ in descendants(service.process.pid)]


def postgres_backends(pids: list[int], port: int = POSTGRES_PORT) -> list[int]:
    """The PostgreSQL backend processes serving connections the processes ``pids`` hold.

    A connection is matched by its client port: the TCP sockets of ``pids`` connected to
    ``port`` (``/proc/net/tcp``), and the backend whose title names that client port.
    """
    inodes = set()
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    client_ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            local, remote, inode = parts[1], parts[2], parts[9]
            if inode in inodes and int(remote.rsplit(":", 1)[1], 16) == port:
                client_ports.add(int(local.rsplit(":", 1)[1], 16))
    backends = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if title.startswith("postgres:") and any(f"({p})" in title for p in client_ports):
            backends.append(int(entry.name))
    return backends


def rss_kb(pid: int) -> int:
    """Resident set size of one process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def pss_kb(pid: int) -> int:
    """Proportional set size (shared pages divided among their users), in KiB."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def descendants(pid: int) -> list[tuple[int, int]]:
    """Every process below ``pid`` as ``(pid, parent)``: instances may be a template's."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = stat_fields(entry / "stat")
        if fields is not None:
            parents.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        for child in parents.get(parent, []):
            found.append((child, parent))
            todo.append(child)
    return found
