"""How strongly a pool keeps instances apart: decided once, from the settings and the host.

Strict isolation is all of: a user per function (``isolation.py``), a control group per
instance (``cgroups.py``), and PID and mount namespaces per instance, so an instance sees,
signals and traces only its own processes and has a /proc of its own (``bootstrap.py``). It
needs a service running as root on a host with control groups and namespaces.

``isolation`` says what to do when the host cannot give all of it:

- ``strict``: run no function code; every invocation fails saying why;
- ``relaxed``: run functions with whatever the host offers (and say what is missing);
- ``auto`` (the default): ``strict`` when the service runs as root, ``relaxed`` when it does
  not — a user running the service as themself keeps running their own functions.

The pool says at start what it found (the log) and ``/healthz`` reports it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openfgs.runtime import bootstrap, cgroups
from openfgs.runtime.cgroups import Cgroups

log = logging.getLogger("openfgs.runtime")

ISOLATION_MODES = ("auto", "strict", "relaxed")
NETWORKS = ("host", "loopback")
DEFAULT_MAX_PROCESSES = 512
PROBE_TIMEOUT_SECONDS = 10.0
# All an interpreter gets when it is started as the service's user (template, spawn, probe):
# nothing of the service's environment and nothing of a function's.
START_ENV = {"LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}


@dataclass(frozen=True)
class SandboxPolicy:
    """What the operator asked for.

    ``network``: ``host`` (instances share the host's network) or ``loopback`` (a network
    namespace of their own with only a loopback interface: no way to the service's ports, nor
    anywhere else). ``max_processes``: processes and threads one instance may have.
    """

    isolation: str = "auto"
    max_processes: int = DEFAULT_MAX_PROCESSES
    network: str = "host"

    def __post_init__(self) -> None:
        if self.isolation not in ISOLATION_MODES:
            raise ValueError(f"isolation must be one of {', '.join(ISOLATION_MODES)}")
        if self.network not in NETWORKS:
            raise ValueError(f"network must be one of {', '.join(NETWORKS)}")
        if self.max_processes < 1:
            raise ValueError("max_processes must be at least 1")


@dataclass(frozen=True)
class Sandbox:
    """What instances of one pool get on this host.

    ``level``: ``strict`` (everything holds), ``relaxed`` (what the host offers; ``problems``
    says what is missing) or ``refused`` (strict was asked for and cannot be had: no function
    code runs).
    """

    level: str
    problems: tuple[str, ...] = ()
    cgroups: Cgroups | None = None
    namespaces: bool = False
    network: str = "host"
    max_processes: int = DEFAULT_MAX_PROCESSES
    refusal: str = field(default="", repr=False)

    @property
    def options(self) -> dict[str, Any]:
        """What the bootstrap is told (template and spawned instances alike)."""
        parents = self.cgroups.parents if self.cgroups is not None else {}
        return {
            "namespaces": self.namespaces,
            "network": self.network if self.namespaces else "host",
            "cgroups": {key: str(path) for key, path in parents.items()},
        }

    def describe(self) -> str:
        """One line for the log."""
        if not self.problems:
            return f"isolation {self.level}"
        return f"isolation {self.level}: " + "; ".join(self.problems)


def resolve(policy: SandboxPolicy, tag: str, per_function_users: bool) -> Sandbox:
    """Find out what this host offers and decide the pool's isolation level; ``tag`` names
    the pool's control groups (``pool_tag``)."""
    root = os.geteuid() == 0
    problems: list[str] = []
    found: Cgroups | None = None
    namespaces = False
    if not root:
        problems.append("the service does not run as root: instances run as its own user")
    else:
        if not per_function_users:
            problems.append("instance_user makes every function run as the same user")
        discovered = cgroups.discover(tag)
        if isinstance(discovered, str):
            problems.append(f"no control groups ({discovered})")
        else:
            found = discovered
        why = probe_namespaces(policy.network)
        if why:
            problems.append(f"no namespaces ({why})")
        namespaces = not why
    mode = policy.isolation
    if mode == "auto":
        mode = "strict" if root else "relaxed"
    level = "refused" if mode == "strict" and problems else mode
    refusal = ""
    if level == "refused":
        refusal = (
            "refusing to run function code: strict isolation is not available here ("
            + "; ".join(problems)
            + "); set OPENFGS_ISOLATION=relaxed to accept weaker isolation"
        )
    return Sandbox(
        level,
        tuple(problems),
        found,
        namespaces,
        policy.network,
        policy.max_processes,
        refusal,
    )


def pool_tag(work_dir: Path, exclusive: bool) -> str:
    """Names the pool's control groups: the same work directory gets the same groups after a
    restart, so what an earlier run left is found and removed. A pool sharing its work
    directory with another live one (``exclusive`` False) gets groups of its own instead."""
    tag = hashlib.sha256(str(work_dir.resolve()).encode()).hexdigest()[:12]
    return tag if exclusive else f"{tag}-{os.getpid()}"


def probe_namespaces(network: str) -> str:
    """ "" when an instance can get namespaces of its own here, else why not."""
    options = json.dumps({"namespaces": True, "network": network})
    try:
        done = subprocess.run(
            [sys.executable, "-I", "-S", bootstrap.__file__, "probe", options],
            env=START_ENV,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=PROBE_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if done.returncode == 0:
        return ""
    return done.stderr.decode(errors="replace").strip() or f"exit code {done.returncode}"
