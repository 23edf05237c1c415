"""Who instances run as, and which of the pool's files they can reach.

When the service runs as root, each function runs under a user and group of its own
(``FunctionIds``: ids from ``function_ids``, a range that must mean nothing else on the host,
handed out per function version and never to two at once), or, when the operator names one,
under a single shared user (``run_as``). The pool lays out its work directory so that an
instance reaches only what it must::

    work_dir/              root        0711  pass through, not list
      code/                root        0711
        <digest>/          root:G      0750  one group G per code digest, files read-only
      home/                root        0711
        home-<random>/     uid:gid     0700  one per instance: HOME and TMPDIR

An instance gets its code's group G as a supplementary group, so it can read its own code and
not another function's, and it cannot write to any code. Groups come from ``code_groups`` (ids
that must mean nothing else on the host) and are handed out afresh by every process, so
directories left by an earlier run are locked (root 0700) until their digest is used again;
HOMEs left by an earlier run are removed.

Every directory above ``work_dir`` must let the instance users pass (``o+x``). When one does
not, the pool keeps instance files in a private directory under the system's temporary
directory instead (code is unpacked again there) and says so in the log.

When the service does not run as root, none of this applies: instances run as the service's
own user and only their environment is scrubbed.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import secrets
import shutil
import stat
import tempfile
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from openfgs.runtime.code import CodeStore
from openfgs.runtime.types import CodeLoader, FunctionSpec

log = logging.getLogger("openfgs.runtime")

# High ids, far from those distributions hand out to users and groups.
CODE_GROUPS = range(0x70000000, 0x70000000 + (1 << 20))
FUNCTION_IDS = range(0x70100000, 0x70100000 + (1 << 20))


@dataclass(frozen=True)
class User:
    """The ids an instance switches to before it imports user code."""

    uid: int
    gid: int
    groups: tuple[int, ...]

    def as_config(self) -> dict[str, Any]:
        """The form the bootstrap reads from its config frame."""
        return {"uid": self.uid, "gid": self.gid, "groups": list(self.groups)}


class FunctionIds:
    """A user and group id per function version, equal to each other, from ``ids``.

    Ids are handed out fresh while the range lasts; one given back (its function has no
    instance left) is reused only after that, so a process of the old holder that is still
    dying does not share it with the new one.
    """

    def __init__(self, ids: range) -> None:
        if not ids:
            raise ValueError("function_ids is empty")
        self.ids = ids
        self._given: dict[str, int] = {}
        self._returned: list[int] = []
        self._next = 0

    def of(self, key: str) -> int:
        """The id of function ``key``; the same one for as long as it holds it."""
        if key not in self._given:
            if self._next < len(self.ids):
                self._given[key] = self.ids[self._next]
                self._next += 1
            elif self._returned:
                self._given[key] = self._returned.pop(0)
            else:
                raise RuntimeError(f"all {len(self.ids)} function ids are in use")
        return self._given[key]

    def release(self, key: str) -> None:
        """Function ``key`` has no instance left: its id may go to another, eventually."""
        taken = self._given.pop(key, None)
        if taken is not None:
            self._returned.append(taken)


class Workspace:
    """The directories of one pool: unpacked code per digest and one HOME per instance."""

    def __init__(
        self,
        work_dir: Path,
        run_as: tuple[int, int] | None,
        code_groups: range = CODE_GROUPS,
        function_ids: range | None = None,
    ) -> None:
        """``function_ids``: a user per function from this range; ``run_as`` is then ignored."""
        if function_ids is not None:
            run_as = (function_ids[0], function_ids[0])  # stands for them all in mode checks
        if run_as is not None and os.geteuid() != 0:
            raise ValueError("running instances as another user needs a service running as root")
        if not code_groups:
            raise ValueError("code_groups is empty")
        self.run_as = run_as
        self.function_ids = FunctionIds(function_ids) if function_ids is not None else None
        self._work_dir = work_dir
        self._code_groups = code_groups
        self._root = work_dir
        self._temporary = False
        self._prepared = False
        self.exclusive = False  # set by prepare(): no other live pool uses work_dir
        self._lock_file: IO[str] | None = None
        self._code = CodeStore(work_dir / "code")
        self._granted: dict[str, int] = {}  # code digest → its group, in this process
        self._next_group = 0

    @property
    def root(self) -> Path:
        """Where instance files are: ``work_dir``, or the temporary stand-in."""
        return self._root

    def prepare(self) -> None:
        """Create the layout; once, before the first instance. Synchronous and quick."""
        if self._prepared:
            return
        self._prepared = True
        self._work_dir.mkdir(parents=True, exist_ok=True)
        self.exclusive = self._lock()
        if self.run_as is None:
            return
        self._work_dir.chmod(0o711)
        if not reachable(self._work_dir, *self.run_as):
            self._root = stand_in(self._work_dir)
            self._temporary = True
            self._code = CodeStore(self._root / "code")
            log.warning(
                "uid %d cannot reach %s (a directory above it lacks o+x); instance files are "
                "kept in %s instead",
                self.run_as[0],
                self._work_dir,
                self._root,
            )
        for directory in (self._root / "code", self._root / "home"):
            directory.mkdir(exist_ok=True)
            directory.chmod(0o711)
        for home in (self._root / "home").iterdir() if self.exclusive else ():
            shutil.rmtree(home, ignore_errors=True)  # an earlier run's: its id may be reused
        for entry in (self._root / "code").iterdir():
            if not entry.name.startswith(".") and entry.is_dir():
                os.chown(entry, 0, 0)  # its group is no longer its digest's
                entry.chmod(0o700)

    async def code_dir(self, spec: FunctionSpec, load_code: CodeLoader) -> Path:
        """The directory of ``spec``'s code, unpacked and open to its instances."""
        target = await self._code.ensure(spec, load_code)
        if self.run_as is not None and spec.code_digest not in self._granted:
            group = self._code_groups[self._next_group % len(self._code_groups)]
            self._next_group += 1
            os.chown(target, 0, group)
            target.chmod(0o750)
            self._granted[spec.code_digest] = group
        return target

    def detach_code(self, keep: Collection[str]) -> list[str]:
        """Take away unpacked code whose digest is not in ``keep`` (see ``CodeStore.detach``)."""
        removed = self._code.detach(keep)
        for digest in removed:
            self._granted.pop(digest, None)  # unpacked again, it needs its group again
        return removed

    async def purge_code(self) -> None:
        """Delete the files of code taken away by :meth:`detach_code`."""
        await self._code.purge()

    def user(self, spec: FunctionSpec) -> User | None:
        """Who an instance of ``spec`` runs as (after ``code_dir()``); None: the service's user."""
        if self.run_as is None:
            return None
        uid, gid = self.run_as
        if self.function_ids is not None:
            uid = gid = self.function_ids.of(spec.urn)
        return User(uid, gid, (self._granted[spec.code_digest],))

    def release(self, urn: str) -> None:
        """Function version ``urn`` has no instance left in this pool."""
        if self.function_ids is not None:
            self.function_ids.release(urn)

    def make_home(self, user: User | None) -> Path:
        """A new, empty HOME for one instance, writable by its user only."""
        homes = self._root / "home"
        homes.mkdir(parents=True, exist_ok=True)
        home = homes / f"home-{secrets.token_hex(16)}"  # unguessable: homes/ cannot be listed
        home.mkdir(mode=0o700)
        if user is not None:
            os.chown(home, user.uid, user.gid)
        return home

    def close(self) -> None:
        """Remove the temporary stand-in for ``work_dir``, if one was made."""
        if self._temporary:
            shutil.rmtree(self._root, ignore_errors=True)
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def _lock(self) -> bool:
        """Whether this is the only live pool using ``work_dir``; only then is what is there
        an earlier run's, to be cleaned away (two processes should not share one)."""
        self._lock_file = open(self._work_dir / ".pool.lock", "a")  # noqa: SIM115
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.warning(
                "another process uses %s: what an earlier run left there is not cleaned",
                self._work_dir,
            )
            return False
        return True


def stand_in(work_dir: Path) -> Path:
    """A private directory under the system's temporary directory to use for ``work_dir``.

    Named after ``work_dir``, so a service killed before it could remove it leaves one behind
    per work directory, not one per run. Anything else already under that name (made by
    someone else, or a link) is not trusted, and a fresh random name is used.
    """
    digest = hashlib.sha256(str(work_dir.resolve()).encode()).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"openfgs-instances-{digest}"
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
        path = Path(tempfile.mkdtemp(prefix="openfgs-instances-"))
    path.chmod(0o711)
    return path


def reachable(path: Path, uid: int, gid: int) -> bool:
    """Whether ``uid``/``gid`` may pass through every directory down to ``path`` (mode bits)."""
    path = path.resolve()
    for directory in (path, *path.parents):
        info = directory.stat()
        if info.st_uid == uid:
            allowed = info.st_mode & stat.S_IXUSR
        elif info.st_gid == gid:
            allowed = info.st_mode & stat.S_IXGRP
        else:
            allowed = info.st_mode & stat.S_IXOTH
        if not allowed:
            return False
    return True
