"""The handler contract: what user code receives and how each outcome is reported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from openfgs.models import ErrorCode
from openfgs.runtime import InstancePool
from tests.runtime.runtime_support import make_function

pytestmark = pytest.mark.anyio


async def test_result_is_the_json_of_the_return_value(pool: InstancePool) -> None:
    fn = make_function(
        """
        def handler(event, context):
            return {"got": event, "n": 1.5, "list": [None, True]}
        """
    )
    result = await pool.invoke(fn.spec, b'{"a": [1, "x"]}', "r1", fn.load)
    assert result.ok, result
    assert result.error_code == ErrorCode.OK
    assert json.loads(result.result) == {"got": {"a": [1, "x"]}, "n": 1.5, "list": [None, True]}
    assert result.duration_ms >= 0
    assert result.memory_used_mb > 0


@pytest.mark.parametrize("event", [b"null", b"[1, 2]", b'"text"', b"42"])
async def test_any_json_value_is_an_event(pool: InstancePool, event: bytes) -> None:
    fn = make_function("def handler(event, context):\n    return event\n")
    result = await pool.invoke(fn.spec, event, "r1", fn.load)
    assert json.loads(result.result) == json.loads(event)


async def test_large_event_and_result(pool: InstancePool) -> None:
    fn = make_function("def handler(event, context):\n    return event * 2\n")
    text = "x" * (2 * 1024 * 1024)
    result = await pool.invoke(fn.spec, json.dumps(text).encode(), "r1", fn.load)
    assert result.ok
    assert json.loads(result.result) == text * 2


async def test_every_context_method(pool: InstancePool) -> None:
    fn = make_function(
        """
        def handler(event, context):
            names = [
                "getRequestID", "getAccessKey", "getSecretKey", "getSecurityAccessKey",
                "getSecuritySecretKey", "getSecurityToken", "getToken", "getFunctionName",
                "getRunningTimeInSeconds", "getVersion", "getMemorySize", "getCPUNumber",
                "getPackage", "getProjectID", "getAlias",
            ]
            values = {name: getattr(context, name)() for name in names}
            values["remaining"] = context.getRemainingTimeInMilliSeconds()
            values["color"] = context.getUserData("color")
            values["missing"] = context.getUserData("missing")
            values["fallback"] = context.getUserData("missing", "dflt")
            logger = context.getLogger()
            for level in ("debug", "info", "warn", "warning", "error"):
                getattr(logger, level)("via %s", level)
            return values
        """,
        name="ctx",
        version="v2",
        memory_size=256,
        timeout=7,
        user_data={"color": "blue"},
    )
    result = await pool.invoke(fn.spec, b"{}", "req-42", fn.load)
    values = json.loads(result.result)
    remaining = values.pop("remaining")
    assert 0 < remaining <= 7000
    assert values == {
        "getRequestID": "req-42",
        "getAccessKey": "",
        "getSecretKey": "",
        "getSecurityAccessKey": "",
        "getSecuritySecretKey": "",
        "getSecurityToken": "",
        "getToken": "",
        "getFunctionName": "ctx",
        "getRunningTimeInSeconds": 7,
        "getVersion": "v2",
        "getMemorySize": 256,
        "getCPUNumber": 200,
        "getPackage": "default",
        "getProjectID": "proj1",
        "getAlias": "",
        "color": "blue",
        "missing": None,
        "fallback": "dflt",
    }
    shown = {"debug": "DEBUG", "info": "INFO", "warn": "WARN", "warning": "WARN", "error": "ERROR"}
    for level, label in shown.items():
        assert f"req-42 {label} via {level}\n" in result.log

    through_alias = await pool.invoke(fn.spec, b"{}", "req-43", fn.load, alias="live")
    assert json.loads(through_alias.result)["getAlias"] == "live"  # the same warm instance


async def test_print_stderr_fd_output_and_logger_land_in_the_log(pool: InstancePool) -> None:
    fn = make_function(
        """
        import os, subprocess, sys
        print("at import")

        def handler(event, context):
            print("from print")
            sys.stderr.write("from stderr\\n")
            os.write(1, b"from fd 1\\n")
            os.write(2, b"from fd 2\\n")
            subprocess.run(["sh", "-c", "echo from a subprocess"], check=True)
            context.getLogger().info("from the logger")
            return None
        """
    )
    first = await pool.invoke(fn.spec, b"{}", "r1", fn.load)
    lines = first.log.splitlines()
    assert lines[:6] == [
        "at import",
        "from print",
        "from stderr",
        "from fd 1",
        "from fd 2",
        "from a subprocess",
    ]
    assert lines[6].endswith(" r1 INFO from the logger")
    assert len(lines) == 7
    # The next invocation's log has only its own output.
    second = await pool.invoke(fn.spec, b"{}", "r2", fn.load)
    assert second.log.splitlines()[0] == "from print"
    assert "at import" not in second.log


async def test_log_keeps_the_tail_of_a_flood(work_dir: Path) -> None:
    pool = InstancePool(work_dir, max_log_bytes=4096)
    fn = make_function(
        """
        import sys
        def handler(event, context):
            for i in range(20_000):
                print("line", i)
            sys.stdout.write("THE END\\n")
            return "done"
        """
    )
    try:
        result = await pool.invoke(fn.spec, b"{}", "r1", fn.load)
    finally:
        await pool.close()
    assert result.ok
    assert result.log.endswith("line 19999\nTHE END\n")
    assert "earlier bytes of output dropped" in result.log
    assert len(result.log) < 4096 + 100


async def test_exception_is_function_error_with_traceback_in_log(pool: InstancePool) -> None:
    fn = make_function(
        """
        def handler(event, context):
            raise ValueError("boom")
        """
    )
    result = await pool.invoke(fn.spec, b"{}", "r1", fn.load)
    assert not result.ok
    assert result.error_code == ErrorCode.FUNCTION_ERROR
    assert result.error_message == "ValueError: boom"
    assert "Traceback (most recent call last)" in result.log
    assert 'raise ValueError("boom")' in result.log


async def test_import_error(pool: InstancePool) -> None:
    fn = make_function("import no_such_module_here\n")
    result = await pool.invoke(fn.spec, b"{}", "r1", fn.load)
    assert result.error_code == ErrorCode.FUNCTION_ERROR
    assert result.error_message == (
        "cannot import module 'index': ModuleNotFoundError: No module named 'no_such_module_here'"
    )
    assert "Traceback" in result.log
    assert pool.instance_pids() == []


async def test_syntax_error_is_an_import_error(pool: InstancePool) -> None:
    fn = make_function("def handler(event, context)\n    return 1\n")
    result = await pool.invoke(fn.spec, b"{}", "r1", fn.load)
    assert result.error_code == ErrorCode.FUNCTION_ERROR
    assert result.error_message.startswith("cannot import module 'index': SyntaxError")


@pytest.mark.parametrize(
    ("handler", "message"),
    [
        ("index.nothere", "handler 'index.nothere' not found"),
        ("index.VALUE", "handler 'index.VALUE' not found"),
        ("handler", "invalid handler 'handler': expected 'module.function'"),
    ],
)
async def test_missing_handler(pool: InstancePool, handler: str, message: str) -> None:
    fn = make_function("VALUE = 1\ndef handler(event, context):\n    return 1\n", handler=handler)
    result = await pool.invoke(fn.spec, b"{}", "r1", fn.load)
    assert result.error_code == ErrorCode.FUNCTION_ERROR
    assert result.error_message == message


@pytest.mark.parametrize("value", ["object()", "{1, 2}", "float('nan')"])
async def test_result_not_json_serialisable(pool: InstancePool, value: str) -> None:
    fn = make_function(f"def handler(event, context):\n    return {value}\n")
    result = await pool.invoke(fn.spec, b"{}", "r1", fn.load)
    assert result.error_code == ErrorCode.FUNCTION_ERROR
    assert result.error_message.startswith("function result is not JSON serializable: ")
    # The instance is still fine.
    assert len(pool.instance_pids()) == 1


async def test_result_too_large(pool: InstancePool) -> None:
    fn = make_function("def handler(event, context):\n    return 'x' * event\n")
    small = await pool.invoke(fn.spec, b"98", "r1", fn.load, max_result_bytes=100)
    assert small.ok and len(small.result) == 100
    large = await pool.invoke(fn.spec, b"99", "r2", fn.load, max_result_bytes=100)
    assert large.error_code == ErrorCode.RESULT_TOO_LARGE
    assert large.error_message == "function result is 101 bytes, more than the limit of 100"


async def test_memory_error_is_out_of_memory(pool: InstancePool) -> None:
    fn = make_function(
        """
        import os
        def handler(event, context):
            if event:
                bytearray(2 * 1024 * 1024 * 1024)
            return os.getpid()
        """
    )
    result = await pool.invoke(fn.spec, b"true", "r1", fn.load)
    assert result.error_code == ErrorCode.OUT_OF_MEMORY
    assert result.error_message == "function ran out of memory (memory_size 128 MB)"
    assert "MemoryError" in result.log
    # An instance that ran out of memory is not trusted with another invocation.
    ok = await pool.invoke(fn.spec, b"false", "r2", fn.load)
    assert ok.ok
    assert len(pool.instance_pids()) == 1


async def test_initializer_runs_once_per_instance(pool: InstancePool) -> None:
    fn = make_function(
        """
        import os
        calls = []

        def init(context):
            print("initializing", context.getFunctionName())
            calls.append(0 < context.getRemainingTimeInMilliSeconds() <= 5000)

        def handler(event, context):
            return {"calls": calls, "pid": os.getpid()}
        """,
        initializer_handler="index.init",
        initializer_timeout=5,
    )
    first = await pool.invoke(fn.spec, b"{}", "r1", fn.load)
    second = await pool.invoke(fn.spec, b"{}", "r2", fn.load)
    assert json.loads(first.result) == json.loads(second.result)
    assert json.loads(first.result)["calls"] == [True]
    assert "initializing fn" in first.log
    assert "initializing" not in second.log


async def test_initializer_failure(pool: InstancePool) -> None:
    fn = make_function(
        """
        def init(context):
            raise RuntimeError("no database")

        def handler(event, context):
            return 1
        """,
        initializer_handler="index.init",
        initializer_timeout=5,
    )
    result = await pool.invoke(fn.spec, b"{}", "r1", fn.load)
    assert result.error_code == ErrorCode.INITIALIZER_FAILED
    assert result.error_message == "initializer failed: RuntimeError: no database"
    assert "Traceback" in result.log
    assert pool.instance_pids() == []


ATTEMPTS_INIT = """
    import os, uuid
    MARK = uuid.uuid4().hex  # pids are all 1, each in its namespace

    def init(context):
        with open(os.path.join(os.environ["SCRATCH"], "attempts"), "a") as attempts:
            attempts.write(f"{MARK}\\n")
        print("attempt")
        if sum(1 for _ in open(os.path.join(os.environ["SCRATCH"], "attempts"))) <= FAILURES:
            raise RuntimeError("not yet")

    def handler(event, context):
        return "ready"
    """


@pytest.mark.parametrize(("failures", "attempts"), [(5, 3), (2, 3), (1, 2)])
async def test_a_failed_initializer_gets_new_instances_three_times_in_all(
    pool: InstancePool, scratch: Path, failures: int, attempts: int
) -> None:
    """FunctionGraph discards an instance whose initializer failed and tries another, three
    attempts in all; the caller sees the last failure, or the result of the one that worked."""
    fn = make_function(
        ATTEMPTS_INIT.replace("FAILURES", str(failures)),
        initializer_handler="index.init",
        initializer_timeout=5,
        user_data={"SCRATCH": str(scratch)},
    )
    result = await pool.invoke(fn.spec, b"{}", "r1", fn.load)
    tried = (scratch / "attempts").read_text().split()
    assert len(tried) == attempts and len(set(tried)) == attempts  # a new instance each time
    if failures >= 3:
        assert result.error_code == ErrorCode.INITIALIZER_FAILED
        assert result.error_message == "initializer failed: RuntimeError: not yet"
        assert pool.instance_pids() == []
    else:
        assert result.ok and json.loads(result.result) == "ready"
        assert len(pool.instance_pids()) == 1
    assert result.log.count("attempt\n") == attempts  # every attempt's output is kept


async def test_missing_initializer(pool: InstancePool) -> None:
    fn = make_function(
        "def handler(event, context):\n    return 1\n",
        initializer_handler="index.init",
        initializer_timeout=5,
    )
    result = await pool.invoke(fn.spec, b"{}", "r1", fn.load)
    assert result.error_code == ErrorCode.INITIALIZER_FAILED
    assert result.error_message == "initializer 'index.init' not found"


async def test_initializer_timeout(pool: InstancePool) -> None:
    fn = make_function(
        """
        def init(context):
            while True:
                pass

        def handler(event, context):
            return 1
        """,
        initializer_handler="index.init",
        initializer_timeout=1,
    )
    result = await pool.invoke(fn.spec, b"{}", "r1", fn.load)
    assert result.error_code == ErrorCode.INITIALIZER_FAILED
    assert result.error_message == "initializer timed out after 1s"
    assert pool.instance_pids() == []
