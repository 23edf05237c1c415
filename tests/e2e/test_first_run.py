"""What a new user types, exactly as README.md shows it: from fresh folders, with no flags.

The commands are read from README.md itself, so these tests fail when the README changes and
they do not. Each command runs from a fresh folder of its own (mode 0755, like a home folder),
with an environment holding no ``OPENFGS_*`` variable but those the README tells the user to set.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from huaweicloudsdkfunctiongraph.v2 import AsyncInvokeFunctionRequest

from tests.support import CREDENTIAL, database_url, free_port, sdk_client, urn, wait_for

from .conftest import Serve, ServeProcess, clean_env
from .test_serve import async_status, function_names, greet_demo

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
# The console script pip put beside this interpreter: what `.venv/bin/openfgs` is for a user.
OPENFGS = Path(sys.executable).parent / "openfgs"
README_OPENFGS = ".venv/bin/openfgs"
STARTUP_SECONDS = 60.0  # generous: two cores shared with other test runs
COMMAND_SECONDS = 60.0

Command = list[str]


# -- the README's shell blocks ------------------------------------------------------------------


def _split(lines: list[str]) -> list[Command]:
    """Shell lines as commands: comments dropped, ``a && b`` split in two."""
    commands: list[Command] = []
    for line in lines:
        words = shlex.split(line, comments=True)
        while "&&" in words:
            cut = words.index("&&")
            commands.append(words[:cut])
            words = words[cut + 1 :]
        if words:
            commands.append(words)
    return commands


def readme_blocks() -> list[tuple[str, list[Command]]]:
    """Every ```sh block of README.md in order, with the ``## section`` it sits in."""
    blocks: list[tuple[str, list[Command]]] = []
    section, lines, inside = "", list[str](), False
    for line in README.read_text().splitlines():
        if inside and line.startswith("```"):
            blocks.append((section, _split(lines)))
            inside = False
        elif inside:
            lines.append(line)
        elif line.startswith("```sh"):
            inside, lines = True, []
        elif line.startswith("## "):
            section = line[3:].strip()
    return blocks


def readme_block(section: str) -> list[Command]:
    return next(commands for name, commands in readme_blocks() if name == section)


def readme_command(block: list[Command], *start: str) -> Command:
    """The one command of ``block`` that begins with the words ``start``."""
    (found,) = [c for c in block if tuple(c[: len(start)]) == start]
    return found


def typed(command: Command, openfgs: Path = OPENFGS, /, **names: str) -> Command:
    """A README ``.venv/bin/openfgs …`` command run with ``openfgs``; words renamed by ``names``."""
    assert command[0] == README_OPENFGS, command
    return [str(openfgs), *(names.get(word, word) for word in command[1:])]


CLI_BLOCK = readme_block("Use it from the command line")
INVOKE = readme_command(CLI_BLOCK, README_OPENFGS, "fn", "invoke", "my-function", "--data")
INVOKE_ASYNC = readme_command(CLI_BLOCK, README_OPENFGS, "fn", "invoke", "my-function", "--async")
LIST_SUCCESS = readme_command(CLI_BLOCK, README_OPENFGS, "invocations", "list", "my-function")
DEPLOY = readme_command(CLI_BLOCK, README_OPENFGS, "fn", "deploy")
NODE_BLOCK = readme_block("Node.js, custom runtimes, HTTP functions")
NODE_DEPLOY = readme_command(NODE_BLOCK, README_OPENFGS, "fn", "deploy")
NODE_INVOKE = readme_command(NODE_BLOCK, README_OPENFGS, "fn", "invoke")
# The first block: make a venv, install into it, start the service.
(MAKE_VENV, INSTALL, START) = readme_blocks()[0][1]


# -- fresh folders and the processes started in them -----------------------------------------


@pytest.fixture
def workspace(serve: Serve) -> Iterator[Path]:
    """A temporary folder for a user's fresh folders; removed after every process is killed."""
    root = Path(tempfile.mkdtemp(prefix="openfgs-first-run-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        serve.close()
        shutil.rmtree(root, ignore_errors=True)


def fresh_folder(workspace: Path, name: str) -> Path:
    folder = workspace / name
    folder.mkdir()
    folder.chmod(0o755)  # as a folder in a home directory: the umask must not decide
    return folder


def launch(
    serve: Serve, command: Command, *, cwd: Path, env: dict[str, str], port: int = 0
) -> ServeProcess:
    """Start ``command`` in ``cwd``; the ``serve`` fixture kills it at teardown if still running."""
    number = len(serve.processes)
    out = serve.tmp_path / f"process-{number}.out"
    err = serve.tmp_path / f"process-{number}.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=stdout, stderr=stderr, start_new_session=True
        )
    started = ServeProcess(process, f"http://127.0.0.1:{port}", cwd / ".openfgs", out, err)
    serve.processes.append(started)
    return started


def run(
    command: Command, *, cwd: Path, env: dict[str, str], timeout: float = COMMAND_SECONDS
) -> str:
    """Run a command to completion as a user would; its stdout, or fail the test."""
    result = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, (command, result.stdout, result.stderr)
    return result.stdout


def start_readme_serve(
    serve: Serve, openfgs: Path, folder: Path, *, env: dict[str, str]
) -> ServeProcess:
    """The README's first command, ``.venv/bin/openfgs serve``, run in ``folder``."""
    assert START == [README_OPENFGS, "serve"], START
    # Tests run beside other servers on this machine: the default port (8000) may be taken.
    # Everything else is left to the defaults.
    port = free_port()
    started = launch(
        serve, [*typed(START, openfgs), "--port", str(port)], cwd=folder, env=env, port=port
    )
    started.wait_healthy(STARTUP_SECONDS)
    wait_for(lambda: "deployed the demo function" in started.stdout(), STARTUP_SECONDS)
    return started


def wait_listed_as_success(
    request_id: str,
    *,
    openfgs: Path,
    function: str,
    cwd: Path,
    env: dict[str, str],
    runner: ServeProcess,
) -> str:
    """Wait until the README's ``invocations list … --status SUCCESS`` shows ``request_id``.

    ``runner`` is the process meant to run it: its output says why, if it never does.
    """
    command = typed(LIST_SUCCESS, openfgs, **{"my-function": function})
    tables = [""]

    def listed() -> bool:
        tables.append(run(command, cwd=cwd, env=env))
        return request_id in tables[-1]

    try:
        wait_for(listed, STARTUP_SECONDS, interval=0.2)
    except AssertionError as exc:
        raise AssertionError(
            f"{request_id} not listed as SUCCESS:\n{tables[-1]}\n{runner.stderr()}"
        ) from exc
    table = tables[-1]
    (row,) = [line.split() for line in table.splitlines() if line.startswith(request_id)]
    assert row[1] == "SUCCESS", table
    return table


def invoke_demo_from_the_cli(
    openfgs: Path, cwd: Path, env: dict[str, str], runner: ServeProcess
) -> str:
    """The README's synchronous and asynchronous ``fn invoke``, on the demo; the async id."""
    reply = json.loads(run(typed(INVOKE, openfgs, **{"my-function": "hello"}), cwd=cwd, env=env))
    assert json.loads(reply["body"])["message"] == "hello, world", reply  # {"k": "v"}: no name
    request_id = run(typed(INVOKE_ASYNC, openfgs, **{"my-function": "hello"}), cwd=cwd, env=env)
    wait_listed_as_success(
        request_id.strip(), openfgs=openfgs, function="hello", cwd=cwd, env=env, runner=runner
    )
    return request_id.strip()


# -- 1. the README's first command, from a fresh folder ----------------------------------------


def test_readme_serve_from_a_fresh_folder_runs_the_demo_and_keeps_its_data_there(
    serve: Serve, workspace: Path
) -> None:
    first = fresh_folder(workspace, "first")
    started = start_readme_serve(serve, OPENFGS, first, env=clean_env())

    exports = started.exports()
    assert set(exports) == {
        "OPENFGS_PROJECT_ID",
        "OPENFGS_ACCESS_KEY",
        "OPENFGS_SECRET_KEY",
        "OPENFGS_ENDPOINT",
    }, started.stdout()
    assert exports["OPENFGS_ENDPOINT"] == started.url
    user_env = clean_env() | exports  # what the user has after pasting the printed lines
    credential = started.printed_credential()
    assert credential is not None

    client = sdk_client(started.url, credential)
    assert greet_demo(client, credential.project_id) == "hello, you"
    demo = urn("hello", credential.project_id)
    accepted = client.async_invoke_function(
        AsyncInvokeFunctionRequest(function_urn=demo, body={"name": "you"})
    )
    wait_for(lambda: async_status(client, demo, accepted.request_id) == "SUCCESS", 60)
    from_cli = invoke_demo_from_the_cli(OPENFGS, first, user_env, started)

    assert sorted(os.listdir(first)) == [".openfgs"]
    data_dir = first / ".openfgs"
    assert (data_dir / "openfgs.db").is_file()
    assert any((data_dir / "instances").iterdir()), "the demo's code is not unpacked here"

    # Another folder, the first one's data dir given relatively: refused, the first serves it.
    second = fresh_folder(workspace, "second")
    port = free_port()
    refused = launch(
        serve,
        [str(OPENFGS), "serve", "--data-dir", "../first/.openfgs", "--port", str(port)],
        cwd=second,
        env=clean_env(),
        port=port,
    )
    assert refused.wait_exit() != 0
    named = re.search(r"another openfgs process serves (\S+)", refused.stderr())
    assert named, refused.stderr()
    assert Path(named.group(1)).resolve() == (first / ".openfgs").resolve(), named.group(1)
    assert os.listdir(second) == []
    assert started.healthy()

    started.stop()
    port = free_port()  # a new port: the old one may have been taken by another test meanwhile
    again = launch(
        serve, [str(OPENFGS), "serve", "--port", str(port)], cwd=first, env=clean_env(), port=port
    )
    again.wait_healthy(STARTUP_SECONDS)
    assert again.exports() == {}, again.stdout()
    assert "deployed the demo function" not in again.stdout()
    client = sdk_client(again.url, credential)
    assert function_names(client) == ["hello"]
    user_env["OPENFGS_ENDPOINT"] = again.url
    for request_id in (accepted.request_id, from_cli):
        wait_listed_as_success(
            request_id, openfgs=OPENFGS, function="hello", cwd=first, env=user_env, runner=again
        )
    assert greet_demo(client, credential.project_id) == "hello, you"


NODE_FUNCTION = """exports.handler = async (event, context) => ({ event, node: !!process.versions.node });
"""


# -- 2. the README's scale-out commands, each from its own folder ------------------------------

MY_FUNCTION = """
def handler(event, context):
    return {"event": event, "function": context.getFunctionName()}
"""


@pytest.mark.postgres
def test_readme_scale_out_api_node_and_worker_from_their_own_folders(
    serve: Serve, workspace: Path
) -> None:
    block = readme_block("Scale out")
    export = readme_command(block, "export")
    assert export[1].startswith("OPENFGS_DATABASE_URL="), export
    api_command = readme_command(block, README_OPENFGS, "serve")
    assert api_command == [README_OPENFGS, "serve", "--no-worker", "--host", "0.0.0.0"]
    assert readme_command(block, README_OPENFGS, "worker") == [README_OPENFGS, "worker"]

    with database_url("postgres") as url:
        env = clean_env(CREDENTIAL, database_url=url)
        # Loopback only on test machines, and a free port: other servers run beside this one.
        port = free_port()
        api_line = typed(api_command, **{"0.0.0.0": "127.0.0.1"})
        api = launch(
            serve,
            [*api_line, "--port", str(port)],
            cwd=fresh_folder(workspace, "api"),
            env=env,
            port=port,
        )
        api.wait_healthy(STARTUP_SECONDS)
        worker_folder = fresh_folder(workspace, "worker")
        worker = launch(serve, typed([README_OPENFGS, "worker"]), cwd=worker_folder, env=env)

        shell = fresh_folder(workspace, "shell")
        (shell / "my-function").mkdir()
        (shell / "my-function" / "index.py").write_text(MY_FUNCTION)
        user_env = clean_env(CREDENTIAL, endpoint=api.url)
        deployed = run(typed(DEPLOY), cwd=shell, env=user_env)
        assert deployed.startswith(f"created {urn('my-function')} "), deployed
        request_id = run(typed(INVOKE_ASYNC), cwd=shell, env=user_env).strip()
        wait_listed_as_success(
            request_id,
            openfgs=OPENFGS,
            function="my-function",
            cwd=shell,
            env=user_env,
            runner=worker,
        )

        assert worker.process.poll() is None, worker.stderr()
        assert any((worker_folder / ".openfgs" / "instances").iterdir()), worker.stderr()
        assert sorted(os.listdir(shell)) == ["my-function"]
        worker.stop()
        api.stop()


# -- 3. an installed wheel, not an editable install -------------------------------------------


def test_an_installed_wheel_serves_the_demo(serve: Serve, workspace: Path) -> None:
    # Build from a clean copy of the checkout: a stale build/ folder in the checkout would
    # put files in the wheel that the package data no longer names.
    source = workspace / "source"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".openfgs"
        ),
    )
    wheels = workspace / "wheels"
    pip = [sys.executable, "-m", "pip"]
    run(
        [*pip, "wheel", "-q", "--no-deps", "-w", str(wheels), str(source)],
        cwd=workspace,
        env=clean_env(),
        timeout=300,
    )
    (wheel,) = wheels.glob("openfgs-*.whl")

    # The README's own first two commands, with the wheel in place of the editable checkout;
    # pip resolves the pinned dependencies itself.
    user = fresh_folder(workspace, "user")
    env = clean_env()
    env.pop("PYTHONPATH", None)
    assert MAKE_VENV == ["python3", "-m", "venv", ".venv"], MAKE_VENV
    assert INSTALL == [".venv/bin/pip", "install", "-q", "-e", "."], INSTALL
    run(MAKE_VENV, cwd=user, env=env, timeout=120)
    run([*INSTALL[:-2], str(wheel)], cwd=user, env=env, timeout=300)

    (site_packages,) = (user / ".venv" / "lib").glob("python3*/site-packages")
    assert not list(site_packages.glob("__editable__*"))
    assert not any(str(ROOT) in pth.read_text() for pth in site_packages.glob("*.pth"))
    assert list((site_packages / "openfgs/store/sql/migrations/sqlite").glob("*.sql"))
    imported = run(
        [".venv/bin/python", "-c", "import openfgs; print(openfgs.__file__)"], cwd=user, env=env
    )
    assert Path(imported.strip()).is_relative_to(site_packages), imported

    openfgs = user / ".venv" / "bin" / "openfgs"
    started = start_readme_serve(serve, openfgs, user, env=env)
    user_env = env | started.exports()
    invoke_demo_from_the_cli(openfgs, user, user_env, started)
    assert sorted(os.listdir(user)) == [".openfgs", ".venv"]

    # A Node.js function, as the README deploys it: the wheel carries the Node.js bootstrap.
    code = fresh_folder(user, NODE_DEPLOY[3].removeprefix("./"))
    (code / "index.js").write_text(NODE_FUNCTION)
    run(typed(NODE_DEPLOY, openfgs), cwd=user, env=user_env)
    answer = run(typed(NODE_INVOKE, openfgs), cwd=user, env=user_env)
    assert json.loads(answer) == {"event": {"k": "v"}, "node": True}, answer
    started.stop()

    # More processes from the wheel: the fronts start from the installed package too.
    port = free_port()
    command = [*typed(START, openfgs), "--processes", "2", "--port", str(port)]
    two = launch(serve, command, cwd=user, env=env, port=port)
    two.wait_healthy(STARTUP_SECONDS)

    def answering() -> set[str]:
        return {
            httpx.get(f"{two.url}/healthz", headers={"connection": "close"}).headers.get(
                "x-openfgs-process", ""
            )
            for _ in range(20)
        }

    wait_for(lambda: answering() == {"0", "1"}, STARTUP_SECONDS, interval=0.2)
    invoke_demo_from_the_cli(openfgs, user, user_env | {"OPENFGS_ENDPOINT": two.url}, two)
    two.stop()
