"""Control groups: each instance in a group of its own, the unit of accounting and of killing.

A pool gets one parent group per hierarchy, ``openfgs-<tag>`` under the service's own group
(``tag`` names the pool's work directory, so a restarted service finds what an earlier run of
the same pool left). Instance groups are made under it — by the template for the instances it
forks ahead of need, by the pool for spawned ones — and the instance writes its limits into
its group while it is still privileged; the files stay root's, so it cannot raise them:

- memory: the function's ``memory_size``, children included (swap too, where accounted);
- processes: ``max_processes`` (threads count);
- CPU: a share proportional to memory (FunctionGraph's millicores), as a weight: under
  contention instances get CPU in proportion to it (and all of a pool's instances together no
  more than the service's own group gets), while an idle machine lets any of them run at full
  speed. Not a quota: a hard cap would make a 128 MB function three times slower on an idle
  machine and stop it for up to 70 ms of every 100 at arbitrary points.

cgroup v2 is used where the service's group offers these controllers to its children; else the
v1 hierarchies ``memory``, ``pids``, ``cpu`` and ``freezer`` (and ``cpuacct`` when mounted).
Killing a group: ``cgroup.kill`` on v2; on v1 the freezer stops every process, each gets
SIGKILL, and the group is thawed, so nothing forks its way out in between.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

V1_REQUIRED = ("memory", "pids", "cpu", "freezer")
V1_OPTIONAL = ("cpuacct",)
V2_CONTROLLERS = ("memory", "pids", "cpu")
UNIFIED = "unified"  # the hierarchy key of cgroup v2
# How long killing or removing a group may take before it is left for the next sweep.
SETTLE_SECONDS = 5.0
_POLL_SECONDS = 0.002


@dataclass(frozen=True)
class Limits:
    """What one instance may use."""

    memory_mb: int
    millicores: int
    max_processes: int


@dataclass(frozen=True)
class Group:
    """One instance's control group: a directory in each hierarchy."""

    version: int
    dirs: dict[str, Path]

    def pids(self) -> list[int]:
        """The processes in the group (every hierarchy holds the same ones)."""
        for directory in self.dirs.values():
            with contextlib.suppress(OSError):
                return [int(line) for line in (directory / "cgroup.procs").read_text().split()]
        return []

    def oom_killed(self) -> bool:
        """Whether the kernel killed a process of the group for going over its memory."""
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        key = UNIFIED if self.version == 2 else "memory"
        try:
            text = (self.dirs[key] / name).read_text()
        except (OSError, KeyError):
            return False
        counts = dict(line.split() for line in text.splitlines() if len(line.split()) == 2)
        return int(counts.get("oom_kill", "0")) > 0

    def kill(self) -> None:
        """SIGKILL every process in the group, with no chance to fork away meanwhile."""
        if self.version == 2:
            with contextlib.suppress(OSError):
                _write(self.dirs[UNIFIED] / "cgroup.kill", "1")
                return
        freezer = self.dirs.get("freezer")
        frozen = freezer is not None and _freeze(freezer)
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if freezer is not None and frozen:
            with contextlib.suppress(OSError):
                _write(freezer / "freezer.state", "THAWED")

    def remove(self) -> bool:
        """Kill what is left and remove the group; False when it did not empty in time."""
        deadline = time.monotonic() + SETTLE_SECONDS
        while self.pids():
            self.kill()
            if time.monotonic() > deadline:
                return False
            time.sleep(_POLL_SECONDS)  # the kernel reaps killed processes asynchronously
        removed = True
        for directory in self.dirs.values():
            try:
                _rmdir(directory, deadline)
            except FileNotFoundError:
                pass
            except OSError:
                removed = False
        return removed


@dataclass(frozen=True)
class Cgroups:
    """One pool's parent groups, and how limits are spelled in this version."""

    version: int
    parents: dict[str, Path]  # hierarchy → this pool's parent group
    swap_accounted: bool = False

    def group(self, name: str) -> Group:
        """The instance group ``name`` (it may not exist yet)."""
        return Group(self.version, {key: parent / name for key, parent in self.parents.items()})

    def create(self, name: str) -> Group:
        """Make the instance group ``name`` in every hierarchy."""
        group = self.group(name)
        for directory in group.dirs.values():
            directory.mkdir(mode=0o755)
        return group

    def limit_files(self, limits: Limits) -> dict[str, dict[str, str]]:
        """What an instance writes into its group: hierarchy → file → value, in order."""
        memory = str(limits.memory_mb << 20)
        if self.version == 2:
            return {
                UNIFIED: {
                    "memory.max": memory,
                    "memory.swap.max": "0",
                    "pids.max": str(limits.max_processes),
                    "cpu.weight": str(max(1, min(10000, limits.millicores // 10))),
                }
            }
        memory_files = {"memory.limit_in_bytes": memory}
        if self.swap_accounted:  # after the memory limit: memsw may not be below it
            memory_files["memory.memsw.limit_in_bytes"] = memory
        return {
            "memory": memory_files,
            "pids": {"pids.max": str(limits.max_processes)},
            "cpu": {"cpu.shares": str(max(2, limits.millicores * 1024 // 1000))},
        }

    def sweep(self) -> int:
        """Kill and remove every instance group under the parents (an earlier run's, or the
        standbys a stopped template left); returns how many groups held processes."""
        names = {
            entry.name
            for parent in self.parents.values()
            if parent.is_dir()
            for entry in parent.iterdir()
            if entry.is_dir()
        }
        occupied = 0
        for name in sorted(names):
            group = self.group(name)
            occupied += bool(group.pids())
            group.remove()
        return occupied


def remove_parents(cgroups: Cgroups) -> None:
    """Remove the pool's parent groups once they are empty (when the pool closes)."""
    for parent in cgroups.parents.values():
        with contextlib.suppress(OSError):
            parent.rmdir()


def group_dir(pid: int, hierarchy: str) -> Path | None:
    """The directory of the group ``pid`` is in, in ``hierarchy`` (a v1 controller, or
    ``UNIFIED``); None when that hierarchy is not mounted or the process is gone."""
    mount = _cgroup_mounts().get(hierarchy)
    try:
        with open(f"/proc/{pid}/cgroup") as groups:
            for line in groups:
                _, controllers, path = line.rstrip("\n").split(":", 2)
                names = controllers.split(",") if controllers else [UNIFIED]
                if mount is not None and hierarchy in names:
                    return mount / path.lstrip("/")
    except OSError:
        pass
    return None


def discover(tag: str) -> Cgroups | str:
    """This pool's parent groups, made if need be; or why control groups cannot be used."""
    mounts = _cgroup_mounts()
    own = _own_groups()
    v2 = _unified(mounts, own, tag)
    if isinstance(v2, Cgroups):
        return v2
    v1 = _legacy(mounts, own, tag)
    if isinstance(v1, Cgroups):
        return v1
    return f"{v2}; {v1}"


def _unified(mounts: dict[str, Path], own: dict[str, str], tag: str) -> Cgroups | str:
    root = mounts.get(UNIFIED)
    if root is None or UNIFIED not in own:
        return "cgroup v2 is not mounted"
    base = root / own[UNIFIED].lstrip("/")
    try:
        offered = (base / "cgroup.controllers").read_text().split()
    except OSError as exc:
        return f"cgroup v2: {exc}"
    missing = [c for c in V2_CONTROLLERS if c not in offered]
    if missing:
        return f"cgroup v2 offers no {', '.join(missing)} controller"
    enable = " ".join(f"+{c}" for c in V2_CONTROLLERS)
    parent = base / f"openfgs-{tag}"
    try:
        _write(base / "cgroup.subtree_control", enable)
        parent.mkdir(exist_ok=True)
        _write(parent / "cgroup.subtree_control", enable)
    except OSError as exc:
        return f"cgroup v2: cannot delegate controllers below {base}: {exc}"
    return Cgroups(2, {UNIFIED: parent})


def _legacy(mounts: dict[str, Path], own: dict[str, str], tag: str) -> Cgroups | str:
    missing = [c for c in V1_REQUIRED if c not in mounts or c not in own]
    if missing:
        return f"cgroup v1 has no {', '.join(missing)} hierarchy mounted"
    parents: dict[str, Path] = {}
    for controller in (*V1_REQUIRED, *(c for c in V1_OPTIONAL if c in mounts and c in own)):
        parent = mounts[controller] / own[controller].lstrip("/") / f"openfgs-{tag}"
        try:
            parent.mkdir(exist_ok=True)
        except OSError as exc:
            return f"cgroup v1: cannot make {parent}: {exc}"
        parents[controller] = parent
    swap = (parents["memory"] / "memory.memsw.limit_in_bytes").exists()
    return Cgroups(1, parents, swap_accounted=swap)


def _cgroup_mounts() -> dict[str, Path]:
    """Mount point per v1 controller, and of the v2 hierarchy under ``UNIFIED``."""
    mounts: dict[str, Path] = {}
    with contextlib.suppress(OSError), open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            before, _, after = line.partition(" - ")
            fields, kinds = before.split(), after.split()
            if len(fields) < 5 or len(kinds) < 3 or fields[3] != "/":
                continue  # only whole hierarchies: a bind of a subtree hides the service's path
            if kinds[0] == "cgroup2":
                mounts.setdefault(UNIFIED, Path(fields[4]))
            elif kinds[0] == "cgroup":
                for option in kinds[2].split(","):
                    mounts.setdefault(option, Path(fields[4]))
    return mounts


def _own_groups() -> dict[str, str]:
    """The service's group per v1 controller, and its v2 group under ``UNIFIED``."""
    own: dict[str, str] = {}
    with contextlib.suppress(OSError), open("/proc/self/cgroup") as groups:
        for line in groups:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            for controller in controllers.split(",") if controllers else [UNIFIED]:
                own[controller] = path
    return own


def _freeze(freezer: Path) -> bool:
    try:
        _write(freezer / "freezer.state", "FROZEN")
    except OSError:
        return False
    deadline = time.monotonic() + SETTLE_SECONDS
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if (freezer / "freezer.state").read_text().strip() == "FROZEN":
                return True
        time.sleep(_POLL_SECONDS)
    return True  # killing a process that is still freezing works as well


def _rmdir(directory: Path, deadline: float) -> None:
    # A group whose last process has just been reaped can still be busy for a moment.
    while True:
        try:
            directory.rmdir()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
        time.sleep(_POLL_SECONDS)


def _write(path: Path, value: str) -> None:
    with open(path, "w") as file:
        file.write(value)
