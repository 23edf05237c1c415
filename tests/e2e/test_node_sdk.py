"""The official FunctionGraph Node.js SDK against a real ``openfgs serve``.

``tests/node`` pins the SDK (package.json and package-lock.json); ``.ci/run`` installs it with
``npm ci``, and so does this test when ``node_modules`` is missing. Without Node.js the test is
skipped on a developer's machine and fails under CI (``CI`` set), where it must run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import (
    Serve,
)
from tests.support import (
    CREDENTIAL,
    PROJECT,
    urn,
)

pytestmark = pytest.mark.slow

NODE_DIR = Path(__file__).parents[1] / "node"
SCRIPT = NODE_DIR / "sdk_check.js"


def node() -> str:
    """The ``node`` executable, with the pinned SDK installed beside the script."""
    found = shutil.which("node")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("Node.js is needed under CI: the Node.js SDK check must run")
        pytest.skip("Node.js is not installed")
    if not (NODE_DIR / "node_modules").is_dir():
        npm = shutil.which("npm")
        assert npm is not None, "npm is needed to install tests/node"
        subprocess.run(
            [npm, "ci", "--prefix", str(NODE_DIR), "--no-audit", "--no-fund"],
            check=True,
            capture_output=True,
            timeout=300,
        )
    return found


def test_node_sdk_invokes_lists_cancels_and_invokes_sync(serve: Serve, tmp_path: Path) -> None:
    executable = node()
    started = serve.start(tmp_path / "data")
    run = subprocess.run(
        [
            executable,
            str(SCRIPT),
            started.url,
            PROJECT,
            CREDENTIAL.access_key,
            CREDENTIAL.secret_key,
        ],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr}\n{started.stderr()}"
    seen = json.loads(run.stdout.strip().splitlines()[-1])

    assert seen["func_urn"] == urn("node-sdk")
    assert seen["quick"]["status"] == "SUCCESS" and seen["quick"]["count"] == 1
    slow = seen["canceled"]["request_id"]
    assert [request_id for request_id, _ in seen["active"]] == [slow]
    assert all(status in ("WAIT", "RUNNING") for _, status in seen["active"])
    assert seen["cancel_status"] == 200
    assert seen["canceled"]["status"] in ("DISCARD", "FAIL")
    assert seen["canceled"]["error_code"] == 4208
    assert seen["sync"]["status"] == 200
    assert json.loads(seen["sync"]["result"]) == {"echo": {"hello": "sync"}}
