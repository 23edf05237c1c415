"""Code packages through the API: hostile zips, the per-call memory header, unpacked code on
disk removed with the last function using it, and the per-project code quota."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkfunctiongraph.v2 import (
    CreateFunctionRequest,
    CreateFunctionRequestBody,
    DeleteFunctionRequest,
    FuncCode,
    InvokeFunctionRequest,
    ShowFunctionCodeRequest,
    UpdateFunctionCodeRequest,
    UpdateFunctionCodeRequestBody,
)

from openfgs.errors import PayloadTooLarge
from openfgs.functions import ZIP_LIMIT, decode_code
from openfgs.schemas import FuncCode as BodyFuncCode
from openfgs.services import Services
from tests.support import OTHER, LiveServer, ServerFactory, b64, make_settings, sdk_client, urn
from tests.zips import HANDLER, entry_info, zip_cases, zip_with

pytestmark = pytest.mark.anyio


@pytest.fixture
def server(shared_server: LiveServer) -> LiveServer:
    """One server for the module's tests that need no settings of their own: each starts from
    empty projects."""
    return shared_server


def create_zip(sdk: Any, name: str, package: bytes, memory_size: int = 128) -> Any:
    body = CreateFunctionRequestBody(
        func_name=name,
        package="default",
        runtime="Python3.9",
        timeout=30,
        handler="index.handler",
        memory_size=memory_size,
        code_type="zip",
        func_code=FuncCode(file=b64(package)),
    )
    return sdk.create_function(CreateFunctionRequest(body=body))


def update_zip(sdk: Any, name: str, package: bytes) -> Any:
    body = UpdateFunctionCodeRequestBody(code_type="zip", func_code=FuncCode(file=b64(package)))
    return sdk.update_function_code(UpdateFunctionCodeRequest(function_urn=urn(name), body=body))


def delete(sdk: Any, name: str) -> None:
    sdk.delete_function(DeleteFunctionRequest(function_urn=urn(name, qualifier=None)))


def invoke(sdk: Any, name: str, memory: str | None = None) -> Any:
    request = InvokeFunctionRequest(
        function_urn=urn(name), x_cff_request_version="v1", x_cff_instance_memory=memory, body={}
    )
    return sdk.invoke_function(request)


def client_error(call: Any) -> ClientRequestException:
    with pytest.raises(ClientRequestException) as info:
        call()
    return info.value


# -- hostile packages ---------------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(zip_cases()))
def test_a_package_is_refused_at_create_or_it_runs(sdk: Any, case: str) -> None:
    package = zip_cases()[case]
    try:
        create_zip(sdk, "fn", package.data)
    except ClientRequestException as error:
        assert package.refused, f"refused: {error.error_msg}"
        assert (error.status_code, error.error_code) == (400, "FSS.1011"), error.error_msg
        return
    assert not package.refused, "accepted"
    result = invoke(sdk, "fn")
    assert (result.status, json.loads(result.result)) == (200, "ok")


def test_a_hostile_package_is_refused_at_code_update_too(sdk: Any) -> None:
    created = create_zip(sdk, "fn", zip_with())
    for case, package in sorted(zip_cases().items()):
        if package.refused:
            error = client_error(lambda p=package: update_zip(sdk, "fn", p.data))
            assert (error.status_code, error.error_code) == (400, "FSS.1011"), case
    shown = sdk.show_function_code(ShowFunctionCodeRequest(function_urn=urn("fn")))
    assert shown.digest == created.digest
    assert json.loads(invoke(sdk, "fn").result) == "ok"


def test_a_zip_over_50_mb_is_too_large_before_it_is_decoded() -> None:
    text = "A" * (ZIP_LIMIT * 4 // 3 + 8)
    with pytest.raises(PayloadTooLarge) as info:
        decode_code("zip", BodyFuncCode(file=text), "Python3.9")
    assert (info.value.status, info.value.error_code) == (413, "FSS.1071")


# -- X-Cff-Instance-Memory ----------------------------------------------------------------

MEMORY_PACKAGE = zip_with(
    index="def handler(event, context):\n    return context.getMemorySize()\n"
)


@pytest.mark.parametrize("header", ["10240", "1024", "512"])
def test_the_memory_header_cannot_raise_the_functions_memory(sdk: Any, header: str) -> None:
    create_zip(sdk, "fn", MEMORY_PACKAGE, memory_size=256)

    error = client_error(lambda: invoke(sdk, "fn", header))

    assert (error.status_code, error.error_code) == (400, "FSS.1007")
    assert f"{header} MB is more than the function's memory_size of 256 MB" in error.error_msg


@pytest.mark.parametrize(("header", "memory"), [("128", 128), ("256", 256), (None, 256)])
def test_the_memory_header_may_lower_it(sdk: Any, header: str | None, memory: int) -> None:
    create_zip(sdk, "fn", MEMORY_PACKAGE, memory_size=256)

    result = invoke(sdk, "fn", header)

    assert json.loads(result.result) == memory


# -- unpacked code on disk ----------------------------------------------------------------


@pytest.fixture
def reachable_server(passable_dir: Path, make_server: ServerFactory) -> LiveServer:
    """A server whose data directory instances can reach, so code is unpacked inside it.

    (Under pytest's private ``tmp_path`` a root service unpacks into a stand-in directory.)
    """
    data = passable_dir / "data"
    data.mkdir()
    data.chmod(0o711)
    return make_server(data_dir=data)


def unpacked(server: LiveServer) -> set[str]:
    code = server.settings.data_dir / "instances" / "code"
    return {p.name for p in code.iterdir()} if code.is_dir() else set()


def test_code_is_removed_with_the_last_function_using_it(reachable_server: LiveServer) -> None:
    sdk = sdk_client(reachable_server.url)
    shared = zip_with(("data.txt", "shared"))
    first = create_zip(sdk, "first", shared)
    create_zip(sdk, "second", shared)
    own = create_zip(sdk, "own", zip_with(("data.txt", "own")))
    for name in ("first", "second", "own"):
        assert json.loads(invoke(sdk, name).result) == "ok"
    assert unpacked(reachable_server) == {first.digest, own.digest}

    delete(sdk, "first")
    assert unpacked(reachable_server) == {first.digest, own.digest}  # "second" still uses it
    assert json.loads(invoke(sdk, "second").result) == "ok"

    delete(sdk, "second")
    assert unpacked(reachable_server) == {own.digest}

    replaced = update_zip(sdk, "own", zip_with(("data.txt", "own, v2")))
    assert unpacked(reachable_server) == set()
    assert json.loads(invoke(sdk, "own").result) == "ok"
    assert unpacked(reachable_server) == {replaced.digest}


async def test_start_removes_code_no_function_uses(passable_dir: Path) -> None:
    settings = make_settings(passable_dir / "data")
    code = settings.data_dir / "instances" / "code"
    orphan = code / ("ab" * 64)  # left by a function deleted while this node was down
    orphan.mkdir(parents=True)
    (orphan / "index.py").write_text(HANDLER)
    services = Services.build(settings)
    await services.start()
    try:
        assert not orphan.exists()
        assert [p.name for p in code.iterdir()] == []
    finally:
        await services.stop()


# -- quota --------------------------------------------------------------------------------


@pytest.fixture
def small_quota_server(make_server: ServerFactory) -> LiveServer:
    return make_server(max_code_bytes_per_project=3000)


def test_the_project_code_quota_is_enforced(small_quota_server: LiveServer) -> None:
    sdk = sdk_client(small_quota_server.url)
    one_k = zip_with((entry_info("pad.bin", 0o100644, zipfile.ZIP_STORED), b"x" * 1000))
    size = len(one_k)
    assert 2 * size <= 3000 < 3 * size
    create_zip(sdk, "a", one_k)
    create_zip(sdk, "b", one_k)  # the same package counts again for each function

    error = client_error(lambda: create_zip(sdk, "c", one_k))
    assert (error.status_code, error.error_code) == (403, "FSS.1042")
    bigger = zip_with((entry_info("pad.bin", 0o100644, zipfile.ZIP_STORED), b"y" * 1800))
    assert size + len(bigger) > 3000
    error = client_error(lambda: update_zip(sdk, "b", bigger))
    assert (error.status_code, error.error_code) == (403, "FSS.1042")

    # Another project has a quota of its own; deleting makes room.
    sdk_client(small_quota_server.url, OTHER).create_function(
        CreateFunctionRequest(
            body=CreateFunctionRequestBody(
                func_name="c",
                package="default",
                runtime="Python3.9",
                timeout=30,
                handler="index.handler",
                memory_size=128,
                code_type="zip",
                func_code=FuncCode(file=b64(one_k)),
            )
        )
    )
    delete(sdk, "b")
    create_zip(sdk, "c", one_k)
    assert json.loads(invoke(sdk, "c").result) == "ok"
