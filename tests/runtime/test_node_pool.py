"""Node.js instances through the pool: the heap sized for the function's memory, and the node
standbys the template keeps for the memory sizes asked for last (node itself is tested over
real pipes in test_node_bootstrap.py, and end to end in tests/e2e/test_node_functions.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from openfgs.runtime import InstancePool
from openfgs.runtime.bootstrap import node_heap_mb
from openfgs.runtime.families import node_executable
from tests.runtime.runtime_support import children_of, make_function
from tests.support import wait_for_async

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True)
def node() -> None:
    """Skipped without node on a developer's machine; under CI (``CI`` set) it must run."""
    if node_executable() is None:
        if os.environ.get("CI"):
            pytest.fail("node is needed under CI: the Node.js runtime must be tested")
        pytest.skip("node is not installed")


HEAP = """
const v8 = require("v8");
exports.handler = async () => v8.getHeapStatistics().heap_size_limit / 1048576;
"""


@pytest.fixture(params=[True, False], ids=["fork", "spawn"])
def fork(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


@pytest.mark.parametrize("memory", [128, 512, 2048])
async def test_the_heap_is_sized_for_the_memory_of_the_function(
    pool: InstancePool, memory: int
) -> None:
    fn = make_function(HEAP, runtime="Node.js20.15", memory_size=memory, name=f"heap{memory}")
    result = await pool.invoke(fn.spec, b"{}", "r1", fn.load)
    assert result.ok, result
    limit = json.loads(result.result)
    # The old space as asked, plus V8's young generation; far below what V8 takes by default.
    assert node_heap_mb(memory) <= limit <= node_heap_mb(memory) + 64, limit


def node_standbys(template: int) -> dict[int, int]:
    """Heap limit (MB) → how many node processes the template keeps waiting."""
    found: dict[int, int] = {}
    for pid in children_of(template):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        for arg in argv:
            if arg.startswith(b"--max-old-space-size="):
                heap = int(arg.split(b"=")[1])
                found[heap] = found.get(heap, 0) + 1
    return found


@pytest.mark.parametrize("fork", [True], ids=["fork"], indirect=True)
async def test_standbys_wait_for_the_sizes_asked_for_last(pool: InstancePool) -> None:
    """Two for the size asked for last, one for the size before; a size asked for no more
    has its standbys stopped (each costs a node process's memory while it waits)."""
    sizes = (128, 256, 512)
    for memory in sizes:
        fn = make_function(HEAP, runtime="Node.js20.15", memory_size=memory, name=f"s{memory}")
        assert (await pool.invoke(fn.spec, b"{}", f"r{memory}", fn.load)).ok
    template = pool.template_pid
    assert template is not None
    # The template's children: the three warm instances, one of each size, and the standbys.
    wanted = {node_heap_mb(128): 1, node_heap_mb(256): 1 + 1, node_heap_mb(512): 1 + 2}
    await wait_for_async(
        lambda: node_standbys(template) == wanted, 10, 0.05, f"node standbys {wanted}"
    )
