"""Runtime families: what differs between Python, Node.js, custom runtimes and HTTP functions.

Everything else about an instance — the pool, its limits, the sandbox (user, control group,
namespaces), log capture, timeouts, result limits, warm reuse — is shared and lives elsewhere.
A family says only which ``runtime`` strings it takes, what its handler looks like, what inline
code is called, and which *program* an instance becomes once it has entered its sandbox:

- ``python``: the bootstrap itself imports the handler and serves (``bootstrap.py``);
- ``node``: the instance is a ``node`` process running ``node/bootstrap.js``, kept started
  ahead of need by the template, which loads the code when its config frame comes;
- ``shim``: the Python bootstrap hands the protocol to ``shim.py``, which runs the function's
  own ``bootstrap`` executable behind FunctionGraph's runtime API (custom runtimes) or in
  front of its HTTP server (HTTP functions).

Adding a runtime is one entry in ``FAMILIES`` and, for a new program, one instance-side file
speaking the protocol of ``bootstrap.py``'s docstring (docs/runtime.md, "Adding a runtime").
"""

from __future__ import annotations

import hashlib
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

NODE_BOOTSTRAP = Path(__file__).parent / "node" / "bootstrap.js"
SHIM = Path(__file__).parent / "shim.py"

# A module path and a function: index.handler, pkg.mod.handler.
_PYTHON_HANDLER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+")
_NODE_SEGMENT = re.compile(r"[A-Za-z0-9_@$-][A-Za-z0-9_@$.-]*")
_NODE_EXPORT = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")
# Custom runtimes and HTTP functions start ./bootstrap whatever the handler says; FunctionGraph's
# samples set "bootstrap", the API asks for a dot: both are taken.
_ANY_HANDLER = re.compile(r"[A-Za-z0-9_./-]{1,128}")


def _python_handler(handler: str) -> bool:
    return bool(_PYTHON_HANDLER.fullmatch(handler))


def _node_handler(handler: str) -> bool:
    """A file path without ".js" (sub-directories allowed) and an export: index.handler,
    src/app.main, lib/my-fn.handler. No "." or ".." segment, no absolute path."""
    path, _, export = handler.rpartition(".")
    segments = path.split("/")
    return bool(_NODE_EXPORT.fullmatch(export)) and all(
        _NODE_SEGMENT.fullmatch(s) and s.strip(".") for s in segments
    )


def _any_handler(handler: str) -> bool:
    return bool(_ANY_HANDLER.fullmatch(handler))


@dataclass(frozen=True)
class RuntimeFamily:
    """One kind of runtime, as the API and the pool see it."""

    name: str
    runtimes: tuple[str, ...]  # FunctionGraph's ``runtime`` strings it runs
    program: str  # "python" | "node" | "shim": what an instance becomes in its sandbox
    inline_file: str  # what inline code (code_type "inline") is written as
    handler_check: Callable[[str], bool]
    handler_hint: str  # for the error message of a handler that does not match
    async_invoke: bool = True  # HTTP functions answer only synchronous requests
    dependencies: bool = True  # custom runtimes take none (FunctionGraph's rule)

    def handler_ok(self, handler: str) -> bool:
        """Whether ``handler`` names an entry point this family can load."""
        return len(handler) <= 128 and self.handler_check(handler)


# Older Node.js strings run on the installed node (see docs/runtime.md): functions written for
# 12 or 14 run on 20 unchanged but for deprecations; the string is what the API keeps.
PYTHON = RuntimeFamily(
    "python",
    ("Python3.9", "Python3.6", "Python3.10", "Python3.12"),
    "python",
    "index.py",
    _python_handler,
    "expected 'module.function'",
)
NODEJS = RuntimeFamily(
    "nodejs",
    (
        "Node.js20.15",
        "Node.js18.15",
        "Node.js16.17",
        "Node.js14.18",
        "Node.js12.13",
        "Node.js10.16",
        "Node.js8.10",
        "Node.js22.18",
    ),
    "node",
    "index.js",
    _node_handler,
    "expected '<file path without .js>.<export>'",
)
CUSTOM = RuntimeFamily(
    "custom",
    ("Custom",),
    "shim",
    "bootstrap",
    _any_handler,
    "expected a handler such as 'bootstrap'",
    dependencies=False,
)
HTTP = RuntimeFamily(
    "http",
    ("http",),
    "shim",
    "bootstrap",
    _any_handler,
    "expected a handler such as 'bootstrap'",
    async_invoke=False,
)
FAMILIES = (PYTHON, NODEJS, CUSTOM, HTTP)
_BY_RUNTIME = {runtime: family for family in FAMILIES for runtime in family.runtimes}
# Python 3 strings beyond the table are taken as the installed Python 3 (as before).
_PYTHON3 = re.compile(r"Python3\.\d{1,2}")


def family_of(runtime: str) -> RuntimeFamily | None:
    """The family that runs ``runtime``; None for a runtime openfgs does not run."""
    family = _BY_RUNTIME.get(runtime)
    if family is None and _PYTHON3.fullmatch(runtime):
        return PYTHON
    return family


def supported_runtimes() -> str:
    """For error messages: what openfgs runs."""
    return "Python3.x, " + ", ".join(r for f in FAMILIES[1:] for r in f.runtimes[:3])


def code_dir_name(code_digest: str, code_type: str, runtime: str) -> str:
    """The name of the directory a package unpacks to. Zips unpack alike whatever runs them;
    inline code is written as the family's file (index.py, index.js, bootstrap), so the same
    bytes under two families need two directories. Python keeps the bare digest."""
    family = family_of(runtime)
    if code_type != "inline" or family is None or family is PYTHON:
        return code_digest
    digest = hashlib.blake2b(f"{family.name}\n{code_digest}".encode(), digest_size=32)
    return f"inline-{family.name}-{digest.hexdigest()}"


def inline_code_dirs(code_digest: str) -> list[str]:
    """Every directory name inline code of ``code_digest`` may unpack to (for the sweep)."""
    return [code_dir_name(code_digest, "inline", f.runtimes[0]) for f in FAMILIES]


def node_executable() -> str | None:
    """The ``node`` that runs Node.js functions (``PATH``, then Debian's)."""
    found = shutil.which("node") or shutil.which("nodejs")
    if found is None and Path("/usr/bin/node").exists():
        found = "/usr/bin/node"
    return found
