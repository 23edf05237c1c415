"""The Node.js instance (openfgs/runtime/node/bootstrap.js), driven directly over its pipes.

Each test starts the real ``node`` on the bootstrap the way the service does: request pipe on
fd 3, reply pipe on fd 4, the output pipe on fd 1, 2 and 5. ``NodeInstance`` plays the service:
it writes frames, reads replies, and splits the output at the marker into the segment of each
reply. Statuses are the Python instance's constants: both instances speak one protocol.
"""

from __future__ import annotations

import json
import os
import re
import resource
import select
import shutil
import signal
import struct
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import openfgs
from openfgs.runtime.bootstrap import FUNCTION_ERROR, INITIALIZER_FAILED, OK, RESULT_TOO_LARGE
from openfgs.runtime.families import node_executable
from tests.support import wait_for

BOOTSTRAP = Path(openfgs.__file__).parent / "runtime" / "node" / "bootstrap.js"
NODE = node_executable()
FRAME = struct.Struct(">II")
MARKER = "\0\x1bopenfgs:node-test\0"
SIX_MB = 6 * 1024 * 1024
START_ENV = {"SECRET_TOKEN": "s3cret", "NODE_OPTIONS": "--trace-warnings", "HOME": "/root"}
FUNCTION_ENV = {"RUNTIME_FUNC_NAME": "hello", "LANG": "C.UTF-8", "PATH": "/usr/bin:/bin"}
DEADLINE = 10.0

Header = dict[str, Any]


class NodeInstance:
    """One bootstrap process, and the service's ends of its pipes."""

    def __init__(
        self,
        options: Header | None = None,
        node_args: tuple[str, ...] = (),
        bootstrap: Path = BOOTSTRAP,
    ) -> None:
        request_read, self.request_fd = os.pipe()
        self.reply_fd, reply_write = os.pipe()
        self.output_fd, output_write = os.pipe()
        devnull = os.open(os.devnull, os.O_RDONLY)
        placed = [(devnull, 0), (output_write, 1), (output_write, 2)]
        placed += [(request_read, 3), (reply_write, 4), (output_write, 5)]
        assert NODE is not None
        argv = [NODE, *node_args, str(bootstrap), json.dumps(options or {})]
        self.pid = os.posix_spawn(
            NODE,
            argv,
            START_ENV,
            file_actions=[(os.POSIX_SPAWN_DUP2, fd, target) for fd, target in placed],
        )
        for fd in (request_read, reply_write, output_write, devnull):
            os.close(fd)
        self.pipe_inodes = {os.fstat(fd).st_ino for fd in (self.request_fd, self.reply_fd)}
        self.output_inode = os.fstat(self.output_fd).st_ino
        self.returncode: int | None = None
        self.last_log = ""
        self._output = bytearray()
        self._output_ended = False
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read_output, daemon=True)
        self._reader.start()

    def _read_output(self) -> None:
        while chunk := os.read(self.output_fd, 1 << 16):
            with self._changed:
                self._output += chunk
                self._changed.notify_all()
        with self._changed:
            self._output_ended = True
            self._changed.notify_all()

    def send(self, header: Header, body: bytes = b"") -> None:
        encoded = json.dumps(header).encode()
        data = memoryview(FRAME.pack(len(encoded), len(body)) + encoded + body)
        while data:
            data = data[os.write(self.request_fd, data) :]

    def receive(self) -> tuple[Header, bytes]:
        """The next frame (EOFError when the instance closed its end); the output written
        before it is ``last_log``."""
        header_size, body_size = FRAME.unpack(self._read_exactly(FRAME.size))
        header = json.loads(self._read_exactly(header_size))
        body = self._read_exactly(body_size)
        self.last_log = self._segment()
        return header, body

    def _read_exactly(self, size: int) -> bytes:
        data = bytearray()
        deadline = time.monotonic() + DEADLINE
        while len(data) < size:
            ready, _, _ = select.select([self.reply_fd], [], [], deadline - time.monotonic())
            assert ready, "no reply frame within the deadline"
            chunk = os.read(self.reply_fd, size - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return bytes(data)

    def _segment(self) -> str:
        """The output up to the next marker, which is written before every reply frame."""
        marker = MARKER.encode()
        with self._changed:
            found = self._changed.wait_for(
                lambda: marker in self._output or self._output_ended, DEADLINE
            )
            assert found and marker in self._output, f"no marker in {bytes(self._output)!r}"
            text, _, rest = bytes(self._output).partition(marker)
            self._output[:] = rest
        return text.decode()

    def wait_for_output(self, text: str) -> None:
        """Until ``text`` is in the output not yet taken as a segment."""
        with self._changed:
            found = self._changed.wait_for(lambda: text.encode() in self._output, DEADLINE)
            assert found, f"{text!r} not in {bytes(self._output)!r}"

    def rest_of_output(self) -> str:
        """Everything written after the last marker, once the process has closed the pipe."""
        with self._changed:
            assert self._changed.wait_for(lambda: self._output_ended, DEADLINE)
            return bytes(self._output).decode()

    def configure(self, code_dir: Path, **overrides: Any) -> Header:
        """Send the config frame; the load frame."""
        self.send(config(code_dir, **overrides))
        return self.receive()[0]

    def invoke(self, event: Any = None, **header: Any) -> tuple[Header, bytes, str]:
        """One invocation: reply header, body, and the output it wrote."""
        self.send(
            {"request_id": "req-1", "max_result_bytes": SIX_MB, **header},
            json.dumps(event).encode(),
        )
        reply, body = self.receive()
        return reply, body, self.last_log

    def wait_exit(self) -> int:
        """The exit status (negative: killed by that signal), failing at the deadline."""

        def exited() -> bool:
            if self.returncode is None:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
                if pid:
                    self.returncode = os.waitstatus_to_exitcode(status)
            return self.returncode is not None

        wait_for(exited, DEADLINE, what="the node instance to exit")
        assert self.returncode is not None
        return self.returncode

    def close(self) -> None:
        if self.returncode is None:
            os.kill(self.pid, signal.SIGKILL)
            self.wait_exit()
        self._reader.join(DEADLINE)
        for fd in (self.request_fd, self.reply_fd, self.output_fd):
            try:
                os.close(fd)
            except OSError:  # closed by the test
                pass


def config(code_dir: Path, **overrides: Any) -> Header:
    """A config frame as the service sends it."""
    values: Header = {
        "handler": "index.handler",
        "initializer": None,
        "initializer_timeout": 5,
        "timeout": 7,
        "memory_size": 256,
        "cpu": 200,
        "function_name": "hello",
        "version": "v2",
        "package": "shop",
        "project_id": "proj1",
        "user_data": {"colour": "blue", "size": "9"},
        "marker": MARKER,
        "code_dir": str(code_dir),
        "env": FUNCTION_ENV,
        "user": None,
        "cgroup_limits": {},
        "alias": "",
    }
    values.update(overrides)
    return values


def write_code(code_dir: Path, files: dict[str, str]) -> Path:
    code_dir.mkdir()
    for name, text in files.items():
        path = code_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return code_dir


Starter = Callable[..., NodeInstance]


@pytest.fixture(autouse=True)
def node_installed() -> None:
    """Node.js functions need node: without it these tests are skipped on a developer's
    machine, and fail under CI (``CI`` set), where they must run."""
    if NODE is None:
        if os.environ.get("CI"):
            pytest.fail("node is needed under CI: the Node.js runtime must be tested")
        pytest.skip("node is not installed")


@pytest.fixture
def start_node() -> Iterator[Starter]:
    """Start bootstrap processes (``NodeInstance`` arguments); all killed at teardown."""
    instances: list[NodeInstance] = []

    def start(
        options: Header | None = None, node_args: tuple[str, ...] = (), bootstrap: Path = BOOTSTRAP
    ) -> NodeInstance:
        instances.append(NodeInstance(options, node_args, bootstrap))
        return instances[-1]

    yield start
    for instance in instances:
        instance.close()


@pytest.fixture
def run_code(tmp_path: Path, start_node: Starter) -> Callable[..., NodeInstance]:
    """An instance serving ``index.js`` = ``source`` (config ``overrides``), loaded."""

    def run(source: str, **overrides: Any) -> NodeInstance:
        code_dir = write_code(
            tmp_path / f"code{len(list(tmp_path.iterdir()))}", {"index.js": source}
        )
        instance = start_node()
        assert instance.configure(code_dir, **overrides) == {"status": OK, "message": ""}
        return instance

    return run


def error_of(body: bytes) -> Header:
    error: Header = json.loads(body)
    assert set(error) == {"errorMessage", "errorType", "stackTrace"}
    return error


# Loading


def test_an_async_handler_answers_and_keeps_its_module_state(
    run_code: Callable[..., NodeInstance],
) -> None:
    instance = run_code(
        """
        let calls = 0;
        exports.handler = async (event, context) => ({ event, calls: ++calls });
        """
    )
    for calls in (1, 2):
        reply, body, _ = instance.invoke({"n": [1, "two"]})
        assert reply["status"] == OK
        assert reply["message"] == ""
        assert isinstance(reply["duration_ms"], float | int) and reply["duration_ms"] >= 0
        assert isinstance(reply["maxrss_kb"], int) and reply["maxrss_kb"] > 1000
        assert json.loads(body) == {"event": {"n": [1, "two"]}, "calls": calls}


def test_the_event_is_the_parsed_json_of_any_kind(run_code: Callable[..., NodeInstance]) -> None:
    instance = run_code("exports.handler = async (event) => [typeof event, event];")
    for event, kind in [("text", "string"), (1.5, "number"), (None, "object"), ([1], "object")]:
        assert json.loads(instance.invoke(event)[1]) == [kind, event]


def test_a_callback_handler_answers_through_the_callback(
    run_code: Callable[..., NodeInstance],
) -> None:
    instance = run_code(
        """
        exports.handler = function (event, context, callback) {
          setTimeout(() => callback(null, { doubled: event * 2 }), 5);
        };
        """
    )
    reply, body, _ = instance.invoke(21)
    assert reply["status"] == OK
    assert json.loads(body) == {"doubled": 42}


def test_handlers_in_subdirectories_and_es_modules_load(
    tmp_path: Path, start_node: Starter
) -> None:
    cases = {
        "src/app.main": {"src/app.js": "exports.main = async () => 'cjs';"},
        "index.handler": {"index.mjs": "export const handler = async () => 'mjs';"},
        "lib/mod.handler": {
            "lib/package.json": '{"type": "module"}',
            "lib/mod.js": "export async function handler() { return 'esm js'; }",
        },
    }
    for number, (handler, files) in enumerate(cases.items()):
        code_dir = write_code(tmp_path / f"code{number}", files)
        instance = start_node()
        assert instance.configure(code_dir, handler=handler)["status"] == OK
        reply, body, _ = instance.invoke()
        assert reply["status"] == OK, reply
        assert body.decode() in {"cjs", "mjs", "esm js"}


@pytest.mark.parametrize(
    ("files", "handler", "expected"),
    [
        ({}, "index.handler", "cannot load module 'index': no index.js in the code directory"),
        (
            {"index.js": "exports.handler = async () => {\n  return 1;\n}}\n"},
            "index.handler",
            "cannot load module 'index': SyntaxError: Unexpected token '}' (index.js:3)",
        ),
        (
            {"index.js": "require('left-pad');\nexports.handler = () => 1;\n"},
            "index.handler",
            "cannot load module 'index': Error: Cannot find module 'left-pad'",
        ),
        (
            {"index.js": "throw new RangeError('bad start');\n"},
            "index.handler",
            "cannot load module 'index': RangeError: bad start",
        ),
        (
            {"index.js": "exports.other = () => 1;\n"},
            "index.handler",
            "handler 'index.handler' not found",
        ),
        (
            {"index.js": "exports.handler = 5;\n"},
            "index.handler",
            "handler 'index.handler' is not a function (number)",
        ),
        ({"index.js": ""}, "index", "invalid handler 'index': expected 'file.function'"),
    ],
    ids=[
        "missing-file",
        "syntax-error",
        "missing-dependency",
        "throws",
        "missing-export",
        "not-a-function",
        "no-export-name",
    ],
)
def test_a_module_that_does_not_load_is_a_function_error_and_the_instance_exits(
    tmp_path: Path, start_node: Starter, files: dict[str, str], handler: str, expected: str
) -> None:
    code_dir = write_code(tmp_path / "code", files)
    instance = start_node()
    load = instance.configure(code_dir, handler=handler)
    assert load == {"status": FUNCTION_ERROR, "message": expected}
    assert instance.wait_exit() == 0
    with pytest.raises(EOFError):
        instance.receive()


def test_a_load_error_leaves_its_stack_in_the_log(tmp_path: Path, start_node: Starter) -> None:
    code_dir = write_code(tmp_path / "code", {"index.js": "null.x;\n"})
    instance = start_node()
    assert instance.configure(code_dir)["status"] == FUNCTION_ERROR
    log = instance.last_log
    assert "TypeError: Cannot read properties of null" in log
    assert f"{code_dir}/index.js:1" in log


# Errors


def test_a_thrown_error_has_functiongraphs_shape(run_code: Callable[..., NodeInstance]) -> None:
    instance = run_code(
        """
        function deep() {
          throw new TypeError("wrong kind of thing");
        }
        exports.handler = async () => deep();
        """
    )
    reply, body, log = instance.invoke()
    assert reply["status"] == FUNCTION_ERROR
    assert reply["message"] == "TypeError: wrong kind of thing"
    error = error_of(body)
    assert error["errorType"] == "TypeError"
    assert error["errorMessage"] == "wrong kind of thing"
    assert error["stackTrace"][0].startswith("at deep (")
    assert error["stackTrace"][0].endswith("/code0/index.js:3:9)")
    assert not [line for line in error["stackTrace"] if "runtime/node" in line]
    assert "TypeError: wrong kind of thing\n    at deep" in log
    assert instance.invoke()[0]["status"] == FUNCTION_ERROR  # and the instance goes on


@pytest.mark.parametrize(
    ("call", "error_type", "message"),
    [
        ("callback(new RangeError('too far'))", "RangeError", "too far"),
        ("callback('plain words')", "Error", "plain words"),
        ("callback({ message: 'an object' })", "Error", "an object"),
        ("callback(0)", "Error", "0"),
        ("throw 'thrown text'", "Error", "thrown text"),
        ("return Promise.reject(new SyntaxError('rejected'))", "SyntaxError", "rejected"),
        (
            "throw { get name() { throw 1; }, get message() { throw 2; } }",
            "Error",
            "[object Object]",
        ),
    ],
    ids=["error", "string", "object", "zero", "throw-string", "rejection", "hostile"],
)
def test_errors_passed_or_thrown_in_any_form_become_function_errors(
    run_code: Callable[..., NodeInstance], call: str, error_type: str, message: str
) -> None:
    instance = run_code(f"exports.handler = function (event, context, callback) {{ {call}; }};")
    reply, body, _ = instance.invoke()
    assert reply["status"] == FUNCTION_ERROR
    assert reply["message"] == f"{error_type}: {message}"
    error = error_of(body)
    assert (error["errorType"], error["errorMessage"]) == (error_type, message)


def test_an_error_takes_no_more_of_the_reply_than_the_service_accepts(
    run_code: Callable[..., NodeInstance],
) -> None:
    instance = run_code(
        """
        Error.stackTraceLimit = Infinity;
        const dive = (depth) => { if (depth) dive(depth - 1); else throw new Error("y".repeat(2e6)); };
        exports.handler = async (depth) => dive(depth);
        """
    )
    reply, body, _ = instance.invoke(5000)
    assert reply["message"] == f"Error: {'y' * 16384}... (2000000 characters)"
    assert len(json.dumps(reply)) < 20_000  # the service refuses headers over 1 MiB
    error = error_of(body)
    assert error["errorMessage"] == reply["message"][len("Error: ") :]
    assert len(error["stackTrace"]) == 100
    # The body is a result for the service: it must fit the caller's limit.
    reply, body, _ = instance.invoke(5000, max_result_bytes=17_000)
    assert json.loads(body).keys() == {"errorMessage", "errorType"}
    reply, body, _ = instance.invoke(0, max_result_bytes=1000)
    assert (reply["status"], body) == (FUNCTION_ERROR, b"")


def test_the_first_answer_wins(run_code: Callable[..., NodeInstance]) -> None:
    instance = run_code(
        """
        exports.handler = async (event, context, callback) => {
          if (event === "callback first") {
            callback(null, "from the callback");
            return "from the promise";
          }
          setTimeout(() => callback(new Error("too late")), 1);
          return "from the promise";
        };
        """
    )
    assert instance.invoke("callback first")[1] == b"from the callback"
    assert instance.invoke("promise first")[1] == b"from the promise"
    assert instance.invoke("callback first")[1] == b"from the callback"  # the late one is lost


def test_a_handler_without_a_callback_parameter_answers_with_what_it_returns(
    run_code: Callable[..., NodeInstance],
) -> None:
    instance = run_code("exports.handler = (event) => ({ got: event });")
    assert json.loads(instance.invoke("x")[1]) == {"got": "x"}


def test_any_thenable_is_awaited_and_a_hostile_one_fails_the_invocation(
    run_code: Callable[..., NodeInstance],
) -> None:
    instance = run_code(
        """
        exports.handler = (event) => event === "plain"
          ? { then(resolve) { setTimeout(() => resolve("from a thenable"), 1); } }
          : { get then() { throw new ReferenceError("no then for you"); } };
        """
    )
    assert instance.invoke("plain")[1] == b"from a thenable"
    assert instance.invoke("hostile")[0]["message"] == "ReferenceError: no then for you"


def test_an_uncaught_exception_fails_the_running_invocation(
    run_code: Callable[..., NodeInstance],
) -> None:
    instance = run_code(
        """
        exports.handler = (event, context, callback) => {
          if (event === "timer") {
            setTimeout(() => { throw new EvalError("from a timer"); }, 1);
          } else {
            Promise.reject(new URIError("nobody waits for me"));
          }
          // and never answers
        };
        """
    )
    reply, body, log = instance.invoke("timer")
    assert reply["message"] == "EvalError: from a timer"
    assert error_of(body)["errorType"] == "EvalError"
    assert "EvalError: from a timer" in log
    reply, body, _ = instance.invoke("rejection")
    assert reply["message"] == "URIError: nobody waits for me"


def test_an_uncaught_exception_between_invocations_is_logged_and_the_instance_goes_on(
    run_code: Callable[..., NodeInstance],
) -> None:
    instance = run_code(
        """
        exports.handler = (event, context, callback) => {
          if (event === "same tick") {
            setTimeout(() => { callback(null, "answered"); throw new Error("just after"); }, 1);
          } else {
            callback(null, "answered");
            setImmediate(() => { throw new Error("after the answer"); });
          }
        };
        """
    )
    assert instance.invoke()[1] == b"answered"
    reply, body, log = instance.invoke()
    assert (reply["status"], body) == (OK, b"answered")
    assert "Error: after the answer" in log
    # Thrown before the answer has gone out, but after it was given: the answer stands.
    reply, body, log = instance.invoke("same tick")
    assert (reply["status"], body) == (OK, b"answered")
    assert "Error: just after" in log


def test_running_out_of_heap_ends_the_process(start_node: Starter, tmp_path: Path) -> None:
    code_dir = write_code(
        tmp_path / "code",
        {"index.js": "exports.handler = async () => { const a = []; for (;;) a.push({ a }); };"},
    )
    instance = start_node(node_args=("--max-old-space-size=16",))
    resource.prlimit(instance.pid, resource.RLIMIT_CORE, (0, 0))
    assert instance.configure(code_dir)["status"] == OK
    instance.send({"request_id": "r", "max_result_bytes": SIX_MB}, b"null")
    with pytest.raises(EOFError):  # no reply: the service sees the process die
        instance.receive()
    assert instance.wait_exit() != 0
    assert "heap out of memory" in instance.rest_of_output()


# Results


RESULTS = """
const circular = { name: "loop" };
circular.self = circular;
const values = {
  undefined: undefined,
  null: null,
  string: "h\\u00e9llo",
  buffer: Buffer.from([0, 255, 10]),
  object: { a: [1, 2], b: null },
  number: 42.5,
  boolean: false,
  bigint: 10n,
  circular,
  function: () => 1,
  toJSON: { toJSON() { throw new Error("refused"); } },
};
exports.handler = async (event) => values[event];
"""


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("undefined", b""),
        ("null", b""),
        ("string", "héllo".encode()),
        ("buffer", b"\x00\xff\n"),
        ("object", b'{"a":[1,2],"b":null}'),
        ("number", b"42.5"),
        ("boolean", b"false"),
    ],
)
def test_results_are_serialised_as_functiongraph_does(
    run_code: Callable[..., NodeInstance], name: str, expected: bytes
) -> None:
    reply, body, _ = run_code(RESULTS).invoke(name)
    assert (reply["status"], body) == (OK, expected)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("bigint", "TypeError: function result is not JSON serializable: Do not know how to "),
        ("circular", "TypeError: function result is not JSON serializable: Converting circular "),
        ("function", "TypeError: function result is not JSON serializable: a function has no"),
        ("toJSON", "Error: function result is not JSON serializable: refused"),
    ],
)
def test_results_json_cannot_hold_are_function_errors(
    run_code: Callable[..., NodeInstance], name: str, message: str
) -> None:
    instance = run_code(RESULTS)
    reply, body, _ = instance.invoke(name)
    assert reply["status"] == FUNCTION_ERROR
    assert reply["message"].startswith(message)
    assert reply["message"] == f"{error_of(body)['errorType']}: {error_of(body)['errorMessage']}"
    assert instance.invoke("number")[1] == b"42.5"


def test_a_result_over_the_limit_is_refused_and_the_instance_goes_on(
    run_code: Callable[..., NodeInstance],
) -> None:
    instance = run_code("exports.handler = async (size) => 'é'.repeat(size);")
    reply, body, _ = instance.invoke(6, max_result_bytes=11)
    assert reply["status"] == RESULT_TOO_LARGE
    assert reply["message"] == "function result is 12 bytes, more than the limit of 11"
    assert body == b""
    reply, body, _ = instance.invoke(5, max_result_bytes=11)
    assert (reply["status"], body) == (OK, "é".encode() * 5)


def test_six_megabytes_in_and_out(run_code: Callable[..., NodeInstance]) -> None:
    instance = run_code(
        "exports.handler = async (event) => event.size ? 'x'.repeat(event.size) : event;"
    )
    big_event = {"data": "y" * (SIX_MB - 100)}
    reply, body, _ = instance.invoke(big_event)
    assert reply["status"] == OK
    assert json.loads(body) == big_event
    reply, body, _ = instance.invoke({"size": SIX_MB})
    assert reply["status"] == OK and len(body) == SIX_MB
    reply, _, _ = instance.invoke({"size": SIX_MB + 1})
    assert reply["status"] == RESULT_TOO_LARGE
    assert (
        reply["message"]
        == f"function result is {SIX_MB + 1} bytes, more than the limit of {SIX_MB}"
    )


def test_frames_arriving_together_are_answered_in_order(
    run_code: Callable[..., NodeInstance],
) -> None:
    instance = run_code(
        "exports.handler = (event, context, cb) => setTimeout(() => cb(null, event), 3 - event);"
    )
    frames = b""
    for number in range(3):
        encoded = json.dumps({"request_id": f"r{number}", "max_result_bytes": 100}).encode()
        frames += FRAME.pack(len(encoded), 1) + encoded + str(number).encode()
    os.write(instance.request_fd, frames)
    assert [instance.receive()[1] for _ in range(3)] == [b"0", b"1", b"2"]


def test_a_frame_written_in_pieces_is_read_whole(run_code: Callable[..., NodeInstance]) -> None:
    instance = run_code("exports.handler = async (event) => event;")
    encoded = json.dumps({"request_id": "r", "max_result_bytes": 100}).encode()
    frame = FRAME.pack(len(encoded), 5) + encoded + b'"abc"'
    for at in range(len(frame)):  # one byte at a time, each read by the instance on its own
        os.write(instance.request_fd, frame[at : at + 1])
    assert instance.receive()[1] == b"abc"


def test_a_frame_that_is_not_ours_ends_the_instance(run_code: Callable[..., NodeInstance]) -> None:
    instance = run_code("exports.handler = async () => 1;")
    os.write(instance.request_fd, FRAME.pack(9, 0) + b"not json!")
    assert instance.wait_exit() == 1
    assert "SyntaxError" in instance.rest_of_output()


# The context


CONTEXT = """
exports.handler = async (event, context) => {
  const names = Object.getOwnPropertyNames(Object.getPrototypeOf(context))
    .filter((name) => name.startsWith("get") && name !== "getLogger" && name !== "getUserData");
  const values = Object.fromEntries(names.map((name) => [name, context[name]()]));
  const userData = ["colour", "size", "missing", "toString", "__proto__", "hasOwnProperty"]
    .map((key) => [key, context.getUserData(key) === undefined ? "undefined" : context.getUserData(key)]);
  return { values, userData: Object.fromEntries(userData), logger: typeof context.getLogger().info };
};
"""


def test_every_context_method_answers_from_the_config(
    run_code: Callable[..., NodeInstance],
) -> None:
    instance = run_code(CONTEXT, alias="config-alias")
    reply, body, _ = instance.invoke(None, request_id="req-42", alias="prod")
    assert reply["status"] == OK
    answer = json.loads(body)
    remaining = answer["values"].pop("getRemainingTimeInMilliSeconds")
    assert isinstance(remaining, int) and 0 < remaining <= 7000
    assert answer["values"] == {
        "getRequestID": "req-42",
        "getAccessKey": "",
        "getSecretKey": "",
        "getSecurityAccessKey": "",
        "getSecuritySecretKey": "",
        "getSecurityToken": "",
        "getToken": "",
        "getFunctionName": "hello",
        "getRunningTimeInSeconds": 7,
        "getVersion": "v2",
        "getMemorySize": 256,
        "getCPUNumber": 200,
        "getPackage": "shop",
        "getProjectID": "proj1",
        "getAlias": "prod",
    }
    assert answer["userData"] == {
        "colour": "blue",
        "size": "9",
        "missing": "undefined",
        "toString": "undefined",
        "__proto__": "undefined",
        "hasOwnProperty": "undefined",
    }
    assert answer["logger"] == "function"
    # Without an alias in the invocation, the config's; without either, "".
    assert json.loads(instance.invoke(None)[1])["values"]["getAlias"] == "config-alias"
    instance = run_code(CONTEXT)
    assert json.loads(instance.invoke(None)[1])["values"]["getAlias"] == ""


def test_remaining_time_counts_down_from_the_timeout(
    run_code: Callable[..., NodeInstance],
) -> None:
    instance = run_code(
        """
        exports.handler = (event, context, callback) => {
          const first = context.getRemainingTimeInMilliSeconds();
          const until = Date.now() + 30;
          while (Date.now() < until);
          callback(null, [first, context.getRemainingTimeInMilliSeconds()]);
        };
        """,
        timeout=3,
    )
    first, second = json.loads(instance.invoke()[1])
    assert 2900 < first <= 3000
    assert second < first - 20


LOGGER_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z req-7 (DEBUG|INFO|WARN|ERROR) ")


def test_the_logger_writes_timestamped_lines_at_its_level(
    run_code: Callable[..., NodeInstance],
) -> None:
    instance = run_code(
        """
        exports.handler = async (event, context) => {
          const log = context.getLogger();
          for (const level of event) {
            if (level) log.setLevel(level);
            log.debug("debug %s", level);
            log.info("info %d %j", 42, { a: 1 });
            log.warn("warn", { b: [2] });
            log.error("error");
          }
        };
        """
    )
    _, _, log = instance.invoke([None, "ERROR", "WARN", "DEBUG", "LOUD"], request_id="req-7")
    lines = log.splitlines()
    assert all(LOGGER_LINE.match(line) for line in lines), lines
    messages = [LOGGER_LINE.sub(r"\1 ", line) for line in lines]
    assert messages == [
        'INFO info 42 {"a":1}',  # INFO by default
        "WARN warn { b: [ 2 ] }",
        "ERROR error",
        "ERROR error",  # ERROR
        "WARN warn { b: [ 2 ] }",  # WARN
        "ERROR error",
        "DEBUG debug DEBUG",  # DEBUG
        'INFO info 42 {"a":1}',
        "WARN warn { b: [ 2 ] }",
        "ERROR error",
        "DEBUG debug LOUD",  # an unknown level changes nothing
        'INFO info 42 {"a":1}',
        "WARN warn { b: [ 2 ] }",
        "ERROR error",
    ]


def test_the_logger_splits_long_messages_into_90_kb_lines(
    run_code: Callable[..., NodeInstance],
) -> None:
    instance = run_code(
        "exports.handler = async (e, context) => context.getLogger().info('a'.repeat(200000));"
    )
    _, _, log = instance.invoke(None, request_id="req-7")
    lines = log.splitlines()
    assert [len(LOGGER_LINE.sub("", line)) for line in lines] == [92160, 92160, 15680]
    assert all(line.startswith(lines[0][:35]) for line in lines)


def test_console_output_lands_in_the_segment_of_its_invocation(
    run_code: Callable[..., NodeInstance],
) -> None:
    instance = run_code(
        """
        console.log("loading");
        exports.handler = async (event, context) => {
          console.log("log", event);
          console.error("error", event);
          process.stdout.write("x".repeat(event === 2 ? 1 << 20 : 3) + "\\n");
          process.stderr.write(`stderr ${event}\\n`);
          return event;
        };
        """
    )
    assert instance.last_log == "loading\n"
    for event in (1, 2, 3):
        _, body, log = instance.invoke(event)
        size = 1 << 20 if event == 2 else 3
        assert body == str(event).encode()
        assert log == f"log {event}\nerror {event}\n{'x' * size}\nstderr {event}\n"


def test_the_log_and_the_protocol_survive_a_handler_closing_its_stdout(
    run_code: Callable[..., NodeInstance],
) -> None:
    instance = run_code(
        """
        const fs = require("fs");
        exports.handler = async (event, context) => {
          fs.closeSync(1);
          fs.closeSync(2);
          context.getLogger().info("still logging");
          throw new Error("and failing");
        };
        """
    )
    reply, _, log = instance.invoke(None, request_id="req-7")
    assert reply["message"] == "Error: and failing"
    assert LOGGER_LINE.sub("", log.splitlines()[0]) == "still logging"
    assert "Error: and failing\n    at " in log


# The initializer


@pytest.mark.parametrize(
    "initializer",
    [
        "exports.init = async (context) => { state = context.getRequestID() + '|' + context.getRunningTimeInSeconds(); };",
        "exports.init = (context, callback) => setTimeout(() => { state = '|' + context.getRunningTimeInSeconds(); callback(null, 'ignored'); }, 5);",
    ],
    ids=["async", "callback"],
)
def test_the_initializer_runs_once_before_the_first_invocation(
    run_code: Callable[..., NodeInstance], initializer: str
) -> None:
    instance = run_code(
        f"let state = 'unset'; let runs = 0;\n{initializer}\n"
        "exports.handler = async () => state + '|' + runs++;",
        initializer="index.init",
        initializer_timeout=4,
    )
    assert instance.receive()[0] == {"status": OK, "message": ""}
    assert instance.invoke()[1] == b"|7|0"  # request id "", the timeout; then the handler
    assert instance.invoke()[1] == b"|7|1"


@pytest.mark.parametrize(
    ("initializer", "message"),
    [
        (
            "exports.init = async () => { throw new Error('no database'); };",
            "initializer failed: Error: no database",
        ),
        (
            "exports.init = (context, callback) => callback('no cache');",
            "initializer failed: Error: no cache",
        ),
        ("", "initializer 'index.init' not found"),
    ],
    ids=["throws", "callback-error", "missing"],
)
def test_a_failed_initializer_ends_the_instance(
    run_code: Callable[..., NodeInstance], initializer: str, message: str
) -> None:
    instance = run_code(
        f"{initializer}\nexports.handler = async () => 1;", initializer="index.init"
    )
    assert instance.receive()[0] == {"status": INITIALIZER_FAILED, "message": message}
    assert instance.wait_exit() == 0


def test_an_initializer_in_another_file_gets_the_initializer_timeout(
    tmp_path: Path, start_node: Starter
) -> None:
    code_dir = write_code(
        tmp_path / "code",
        {
            "index.js": "exports.handler = async () => global.ready;",
            "setup/init.js": "exports.run = async (c) => { global.ready = c.getRemainingTimeInMilliSeconds(); };",
        },
    )
    instance = start_node()
    load = instance.configure(code_dir, initializer="setup/init.run", initializer_timeout=2)
    assert load["status"] == OK
    assert instance.receive()[0]["status"] == OK
    assert 1000 < int(instance.invoke()[1]) <= 2000


# The sandbox and the process


def test_nothing_of_the_start_up_environment_reaches_the_handler(
    tmp_path: Path, start_node: Starter
) -> None:
    code_dir = write_code(
        tmp_path / "code",
        {
            "data.txt": "beside the code",
            "index.js": """
                const { execFileSync } = require("child_process");
                const fs = require("fs");
                exports.handler = async () => ({
                  env: { ...process.env },
                  child: execFileSync("/usr/bin/env").toString(),
                  cwd: process.cwd(),
                  data: fs.readFileSync("data.txt", "utf8"),
                  argv: process.argv.slice(2),
                });
            """,
        },
    )
    instance = start_node({"group": {"memory": "/secret/service/path"}})
    assert instance.configure(code_dir, env={"ONLY": "this"})["status"] == OK
    reply, body, _ = instance.invoke()
    assert reply["status"] == OK, reply
    assert json.loads(body) == {
        "env": {"ONLY": "this"},
        "child": "ONLY=this\n",
        "cwd": str(code_dir),
        "data": "beside the code",
        "argv": [],
    }


def test_subprocesses_do_not_inherit_the_protocol_pipes(
    run_code: Callable[..., NodeInstance],
) -> None:
    instance = run_code(
        """
        const { execFileSync } = require("child_process");
        exports.handler = async () =>
          execFileSync("/bin/sh", ["-c", "for f in /proc/$$/fd/*; do readlink $f || true; done"], {
            stdio: ["ignore", "pipe", "inherit"],
          }).toString();
        """
    )
    reply, body, _ = instance.invoke()
    assert reply["status"] == OK, (reply, body)
    links = body.decode().split()
    assert f"pipe:[{instance.output_inode}]" in links  # the log, as its stderr
    assert not {f"pipe:[{inode}]" for inode in instance.pipe_inodes} & set(links)


def polls_fd(pid: int, fd: int) -> bool:
    """Whether ``fd`` of process ``pid`` is registered in one of its epoll instances: the
    event loop is waiting on it."""
    for entry in Path(f"/proc/{pid}/fd").iterdir():
        try:
            if os.readlink(entry) != "anon_inode:[eventpoll]":
                continue
            info = (Path(f"/proc/{pid}/fdinfo") / entry.name).read_text()
        except OSError:  # closed meanwhile
            continue
        if any(line.split()[:2] == ["tfd:", str(fd)] for line in info.splitlines()):
            return True
    return False


def test_a_standby_waits_for_its_config_without_using_cpu(
    tmp_path: Path, start_node: Starter
) -> None:
    code_dir = write_code(tmp_path / "code", {"index.js": "exports.handler = async () => 'late';"})
    instance = start_node()

    def cpu_ticks() -> int:
        fields = Path(f"/proc/{instance.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime

    # Start-up ends with the event loop polling the request pipe.
    wait_for(lambda: polls_fd(instance.pid, 3), what="the standby to wait on fd 3")
    before = cpu_ticks()
    time.sleep(1.0)  # not a synchronisation: the standby's wait is what is under test
    assert cpu_ticks() - before <= os.sysconf("SC_CLK_TCK") // 20  # 50 ms in that second
    assert instance.configure(code_dir)["status"] == OK
    assert instance.invoke()[1] == b"late"


def test_sigusr1_does_not_open_the_inspector(run_code: Callable[..., NodeInstance]) -> None:
    instance = run_code(
        """
        const inspector = require("inspector");
        exports.handler = async () => [process.listenerCount("SIGUSR1"), inspector.url() ?? null];
        """
    )
    os.kill(instance.pid, signal.SIGUSR1)  # node's default: listen on 127.0.0.1:9229
    reply, body, log = instance.invoke()
    assert (reply["status"], json.loads(body)) == (OK, [1, None])
    assert "Debugger listening" not in log


@pytest.mark.parametrize("busy", [False, True], ids=["idle", "handler-running"])
def test_the_process_exits_when_the_request_pipe_closes(
    run_code: Callable[..., NodeInstance], busy: bool
) -> None:
    instance = run_code(
        """
        exports.handler = (event, context, callback) => {
          setInterval(() => {}, 1000);
          require("net").createServer().listen(0);
          console.log("running");
          if (!event) callback(null, "left things running");
        };
        """
    )
    if busy:
        instance.send({"request_id": "r", "max_result_bytes": 100}, b"true")
        instance.wait_for_output("running\n")  # and never answering
    else:
        assert instance.invoke(False)[1] == b"left things running"
    os.close(instance.request_fd)
    assert instance.wait_exit() == 0


ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="changing users needs root")


@needs_root
def test_the_instance_drops_to_its_user_after_writing_its_limits(
    passable_dir: Path, start_node: Starter
) -> None:
    uid = 0x70100000 + 7
    code_dir = write_code(
        passable_dir / "code",
        {
            "index.mjs": """
                import fs from "fs";
                export const handler = async (limitFile) => {
                  let write;
                  try { fs.writeFileSync(limitFile, "max"); write = "written"; }
                  catch (error) { write = error.code; }
                  const status = fs.readFileSync("/proc/self/status", "utf8");
                  const groups = /^Groups:(.*)$/m.exec(status)[1].trim();
                  return [process.getuid(), process.getgid(), groups, write];
                };
            """
        },
    )
    for directory in (passable_dir, code_dir):
        directory.chmod(0o755)
    (code_dir / "index.mjs").chmod(0o644)
    # The runtime's own files, where only root can reach them (a package installed under
    # /root): all it needs must be loaded before it drops to the function's user.
    private = passable_dir / "private"
    shutil.copytree(BOOTSTRAP.parent, private / "node")
    private.chmod(0o700)
    memory, pids = passable_dir / "memory", passable_dir / "pids"
    for directory, files in ((memory, ("memory.max", "memory.swap.max")), (pids, ("pids.max",))):
        directory.mkdir(mode=0o755)
        for name in files:
            (directory / name).write_text("")
            (directory / name).chmod(0o644)
    options = {"group": {"memory": str(memory), "pids": str(pids)}}
    instance = start_node(options, bootstrap=private / "node" / BOOTSTRAP.name)
    limits = {
        "memory": {"memory.max": "268435456", "memory.swap.max": "0"},
        "pids": {"pids.max": "64"},
    }
    user = {"uid": uid, "gid": uid, "groups": []}
    assert instance.configure(code_dir, user=user, cgroup_limits=limits)["status"] == OK
    assert (memory / "memory.max").read_text() == "268435456"
    assert (memory / "memory.swap.max").read_text() == "0"
    assert (pids / "pids.max").read_text() == "64"
    reply, body, _ = instance.invoke(str(memory / "memory.max"))
    assert reply["status"] == OK, reply
    assert json.loads(body) == [uid, uid, "", "EACCES"]


@pytest.mark.parametrize(
    ("options", "limits", "user", "message"),
    [
        (
            {},
            {"memory": {"memory.max": "1"}},
            None,
            "function instance could not enter its control group: no group of the memory hierarchy",
        ),
        (
            {"group": {"memory": "GROUP"}},
            {"memory": {"memory.typo": "1"}},
            None,
            "function instance could not enter its control group: ENOENT",
        ),
        (
            {},
            {},
            {"uid": "no-such-user-here", "gid": 0, "groups": []},
            "function instance could not drop privileges to ",
        ),
    ],
    ids=["unknown-hierarchy", "unknown-file", "unknown-user"],
)
def test_a_sandbox_that_cannot_be_entered_is_a_load_failure(
    tmp_path: Path,
    start_node: Starter,
    options: Header,
    limits: Header,
    user: Header | None,
    message: str,
) -> None:
    code_dir = write_code(tmp_path / "code", {"index.js": "exports.handler = () => 1;"})
    group = tmp_path / "group"
    group.mkdir()
    options = json.loads(json.dumps(options).replace("GROUP", str(group)))
    instance = start_node(options)
    load = instance.configure(code_dir, cgroup_limits=limits, user=user)
    assert load["status"] == FUNCTION_ERROR
    assert load["message"].startswith(message)
    assert not (group / "memory.typo").exists()
    assert instance.wait_exit() == 0
