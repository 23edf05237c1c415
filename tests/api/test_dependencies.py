"""Dependencies through the official SDK over loopback: every operation, paging, limits, every
error code, hostile zips, other projects, and functions that list dependency versions."""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkfunctiongraph.v2 import (
    CreateDependencyRequestBody,
    CreateDependencyVersionRequest,
    CreateFunctionRequest,
    CreateFunctionRequestBody,
    DeleteDependencyVersionRequest,
    FuncCode,
    ListDependenciesRequest,
    ListDependencyVersionRequest,
    ShowDependencyVersionRequest,
    ShowFunctionCodeRequest,
    ShowFunctionConfigRequest,
    UpdateFunctionCodeRequest,
    UpdateFunctionCodeRequestBody,
    UpdateFunctionConfigRequest,
    UpdateFunctionConfigRequestBody,
)

from openfgs.api import declared_routes
from openfgs.api.guard import Guard
from openfgs.dependencies import DEPENDENCY_ZIP_LIMIT, MAX_PER_FUNCTION
from openfgs.runtime.code import DEPENDENCY_MAX_ENTRIES
from tests import support
from tests.api.conftest import (
    RawApi,
    function_path,
    zip_of,
)
from tests.support import (
    OTHER,
    PROJECT,
    LiveServer,
    b64,
    live_server,
    make_settings,
    sdk_client,
    urn,
)
from tests.zips import zip_cases


@pytest.fixture
def server(shared_server: LiveServer) -> LiveServer:
    """One server for the module: each test starts from empty projects."""
    return shared_server


LIBRARY = {"mylib/__init__.py": "VALUE = 'from the dependency'\n"}


def client_error(call: Callable[[], Any]) -> ClientRequestException:
    with pytest.raises(ClientRequestException) as info:
        call()
    return info.value


def create_dependency(
    sdk: Any,
    name: str = "mylib",
    files: dict[str, str] | None = None,
    *,
    data: bytes | None = None,
    runtime: str = "Python3.9",
    depend_type: str = "zip",
    **fields: Any,
) -> Any:
    if data is None:
        data = zip_of(files if files is not None else LIBRARY)
    body = CreateDependencyRequestBody(
        depend_type=depend_type, depend_file=b64(data), runtime=runtime, name=name, **fields
    )
    return sdk.create_dependency_version(CreateDependencyVersionRequest(body=body))


def create_function(sdk: Any, name: str, depend: list[str] | None) -> Any:
    """A Python function that returns 'ok', listing the dependency versions ``depend``."""
    return support.create_function(
        sdk, name, "def handler(event, context):\n    return 'ok'\n", depend_version_list=depend
    )


def set_dependencies(sdk: Any, name: str, depend: list[str] | None) -> Any:
    body = UpdateFunctionCodeRequestBody(
        code_type="inline",
        func_code=FuncCode(file=b64("def handler(event, context):\n    return 'ok'\n")),
        depend_version_list=depend,
    )
    return sdk.update_function_code(UpdateFunctionCodeRequest(function_urn=urn(name), body=body))


def show(sdk: Any, dep_id: str, version: int | str) -> Any:
    request = ShowDependencyVersionRequest(depend_id=dep_id, version=str(version))
    return sdk.show_dependency_version(request)


def delete(sdk: Any, dep_id: str, version: int | str) -> Any:
    request = DeleteDependencyVersionRequest(depend_id=dep_id, version=str(version))
    return sdk.delete_dependency_version(request)


@pytest.fixture
def other_sdk(server: LiveServer) -> Any:
    return sdk_client(server.url, OTHER)


# -- create -----------------------------------------------------------------------------------


def test_a_new_name_is_version_1_with_every_field(sdk: Any) -> None:
    data = zip_of(LIBRARY)
    before = int(time.time())
    created = create_dependency(sdk, data=data, description="my library")

    assert created.status_code == 200
    assert uuid.UUID(created.id) and uuid.UUID(created.dep_id) and created.id != created.dep_id
    assert created.version == 1
    assert created.owner == PROJECT
    assert created.link == f"openfgs://dependencies/{created.dep_id}/versions/1/mylib.zip"
    assert created.etag == hashlib.md5(data).hexdigest()
    assert created.size == len(data)
    assert (created.name, created.description, created.file_name) == (
        "mylib",
        "my library",
        "mylib.zip",
    )
    assert created.runtime == "Python3.9"
    assert before <= created.last_modified <= int(time.time())


def test_the_same_name_adds_the_next_version(sdk: Any) -> None:
    first = create_dependency(sdk)
    second = create_dependency(sdk, files={"mylib/__init__.py": "VALUE = 2\n"})
    third = create_dependency(sdk, runtime="Python3.10")

    assert (second.dep_id, second.version) == (first.dep_id, 2)
    assert (third.dep_id, third.version) == (first.dep_id, 3)
    assert len({first.id, second.id, third.id}) == 3


def test_the_same_zip_and_runtime_as_the_latest_version_is_a_conflict(sdk: Any) -> None:
    data = zip_of(LIBRARY)  # made once: an entry's time is part of a zip's bytes
    create_dependency(sdk, data=data)

    error = client_error(lambda: create_dependency(sdk, data=data, description="another"))

    assert (error.status_code, error.error_code) == (409, "FSS.1065")


def test_obs_links_are_refused_with_a_clear_message(sdk: Any) -> None:
    body = CreateDependencyRequestBody(
        depend_type="obs",
        depend_link="https://bucket.obs.example.com/lib.zip",
        runtime="Python3.9",
        name="lib",
    )
    error = client_error(
        lambda: sdk.create_dependency_version(CreateDependencyVersionRequest(body=body))
    )

    assert (error.status_code, error.error_code) == (400, "FSS.1024")
    assert "OBS" in error.error_msg and "not supported by openfgs" in error.error_msg


def test_an_unknown_depend_type_is_fss_1032(sdk: Any) -> None:
    error = client_error(lambda: create_dependency(sdk, depend_type="tar"))

    assert (error.status_code, error.error_code) == (400, "FSS.1032")


@pytest.mark.parametrize(
    "name", ["", "1lib", "_lib", "lib-", "lib.", "my lib", "lib/x", "é", "a" * 97]
)
def test_invalid_names_are_refused(sdk: Any, name: str) -> None:
    error = client_error(lambda: create_dependency(sdk, name))

    assert (error.status_code, error.error_code) == (400, "FSS.1024")


@pytest.mark.parametrize("name", ["a", "A9", "my_lib.v2-x", "a" * 96])
def test_valid_names_are_accepted(sdk: Any, name: str) -> None:
    assert create_dependency(sdk, name).name == name


@pytest.mark.parametrize("runtime", ["Custom", "Python2.7", "Java11", "python3.9", ""])
def test_a_runtime_openfgs_does_not_run_is_refused(sdk: Any, runtime: str) -> None:
    error = client_error(lambda: create_dependency(sdk, runtime=runtime))

    assert (error.status_code, error.error_code) == (400, "FSS.1024")


def test_a_long_description_is_refused(sdk: Any) -> None:
    assert create_dependency(sdk, description="d" * 512).description == "d" * 512
    error = client_error(lambda: create_dependency(sdk, "other", description="d" * 513))

    assert (error.status_code, error.error_code) == (400, "FSS.1024")


def test_a_missing_or_undecodable_file_is_refused(sdk: Any) -> None:
    for text in (None, "", "not base64 at all!"):
        body = CreateDependencyRequestBody(
            depend_type="zip", depend_file=text, runtime="Python3.9", name="lib"
        )
        request = CreateDependencyVersionRequest(body=body)
        error = client_error(partial(sdk.create_dependency_version, request))
        assert (error.status_code, error.error_code) == (400, "FSS.1024"), text


REFUSED = [
    name for name, case in zip_cases().items() if case.refused and name != "too many entries"
]


@pytest.mark.parametrize("case", REFUSED)
def test_hostile_zips_are_refused(sdk: Any, case: str) -> None:
    error = client_error(lambda: create_dependency(sdk, data=zip_cases()[case].data))

    assert (error.status_code, error.error_code) == (400, "FSS.1024")
    assert "Invalid dependency zip" in error.error_msg


@pytest.mark.slow  # about 8 s of CPU on a quiet 2-core machine: twice that on a busy one
def test_a_zip_bomb_is_refused(sdk: Any) -> None:
    chunk = bytes(64 << 20)  # zeros: 64 MiB deflate to about 64 KB
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as out:
        for n in range(17):  # 1088 MiB unpacked, past the 1 GiB bound, from about 1 MB
            out.writestr(f"zeros/{n}", chunk)
    assert len(buffer.getvalue()) < 2 << 20

    error = client_error(lambda: create_dependency(sdk, data=buffer.getvalue()))

    assert (error.status_code, error.error_code) == (400, "FSS.1024")
    assert "unpacks to more than" in error.error_msg


def test_a_name_ending_in_a_tilde_is_refused(sdk: Any) -> None:
    error = client_error(lambda: create_dependency(sdk, files={"lib/mod.py~": "x = 1\n"}))

    assert (error.status_code, error.error_code) == (400, "FSS.1024")
    assert "'~'" in error.error_msg


@pytest.mark.slow  # 30,000 entries written and read back: seconds of CPU
def test_up_to_30000_files_are_accepted_and_no_more(sdk: Any) -> None:
    def archive(count: int) -> bytes:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as out:
            for n in range(count):
                out.writestr(f"lib/{n}", "")
        return buffer.getvalue()

    assert create_dependency(sdk, "many", data=archive(DEPENDENCY_MAX_ENTRIES)).version == 1
    error = client_error(lambda: create_dependency(sdk, "more", data=archive(30_001)))

    assert (error.status_code, error.error_code) == (400, "FSS.1024")


def test_a_zip_over_40_mb_is_too_large(sdk: Any) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as out:
        out.writestr("blob.bin", os.urandom(DEPENDENCY_ZIP_LIMIT))
    error = client_error(lambda: create_dependency(sdk, data=buffer.getvalue()))

    assert (error.status_code, error.error_code) == (413, "FSS.0413")


def test_the_create_route_takes_a_40_mb_zip_in_base64(server: LiveServer) -> None:
    guard = Guard(lambda *_: None, server.services, declared_routes())  # type: ignore[arg-type]
    limit = guard.body_limit("POST", f"/v2/{PROJECT}/fgs/dependencies/version")

    assert limit == (DEPENDENCY_ZIP_LIMIT + 2) // 3 * 4 + 64 * 1024
    assert guard.body_limit("GET", f"/v2/{PROJECT}/fgs/dependencies") == 64 * 1024


# -- list and show ----------------------------------------------------------------------------


def test_list_shows_each_dependency_with_its_latest_version(sdk: Any) -> None:
    lib = create_dependency(sdk, "lib")
    latest = create_dependency(sdk, "lib", {"lib/x.py": "x = 2\n"}, runtime="Python3.10")
    tools = create_dependency(sdk, "tools", {"tools.py": "x = 1\n"})

    listed = sdk.list_dependencies(ListDependenciesRequest())

    assert listed.count == 2 and listed.next_marker == 2
    first, second = listed.dependencies
    assert (first.id, first.name, first.version, first.runtime) == (
        lib.dep_id,
        "lib",
        2,
        "Python3.10",
    )
    assert (first.etag, first.size, first.link) == (latest.etag, latest.size, latest.link)
    assert (first.owner, first.file_name) == (PROJECT, "lib.zip")
    assert (second.id, second.version) == (tools.dep_id, 1)


def test_list_filters_and_pages(sdk: Any) -> None:
    for n in range(5):
        create_dependency(sdk, f"lib{n}", {f"m{n}.py": "x = 1\n"})
    create_dependency(sdk, "tools", {"t.py": "x = 1\n"}, runtime="Python3.10")

    page = sdk.list_dependencies(ListDependenciesRequest(maxitems="2", marker="2"))
    assert [d.name for d in page.dependencies] == ["lib2", "lib3"]
    assert (page.count, page.next_marker) == (6, 4)
    page = sdk.list_dependencies(ListDependenciesRequest(limit="4"))
    assert (len(page.dependencies), page.next_marker) == (4, 4)
    page = sdk.list_dependencies(ListDependenciesRequest(marker="10"))
    assert (page.dependencies, page.count, page.next_marker) == ([], 6, 10)

    names = sdk.list_dependencies(ListDependenciesRequest(name="ool"))
    assert [d.name for d in names.dependencies] == ["tools"]
    runtime = sdk.list_dependencies(ListDependenciesRequest(runtime="Python3.9"))
    assert runtime.count == 5
    for kind, count in (("all", 6), ("private", 6), ("public", 0)):
        listed = sdk.list_dependencies(ListDependenciesRequest(dependency_type=kind))
        assert listed.count == count, kind


@pytest.mark.parametrize(
    "query",
    [
        {"marker": "-1"},
        {"marker": "x"},
        {"maxitems": "1e3"},
        {"limit": "²"},
        {"dependency_type": "shared"},
    ],
)
def test_list_refuses_invalid_query_parameters(sdk: Any, query: dict[str, str]) -> None:
    error = client_error(lambda: sdk.list_dependencies(ListDependenciesRequest(**query)))

    assert (error.status_code, error.error_code) == (400, "FSS.1024")


def test_versions_are_listed_in_order_and_paged(sdk: Any) -> None:
    dep_id = create_dependency(sdk).dep_id
    for n in range(2, 6):
        create_dependency(sdk, files={"mylib/__init__.py": f"VALUE = {n}\n"})

    def versions(**query: str) -> Any:
        return sdk.list_dependency_version(ListDependencyVersionRequest(depend_id=dep_id, **query))

    every = versions()
    assert [v.version for v in every.dependencies] == [1, 2, 3, 4, 5]
    assert (every.count, every.next_marker) == (5, 5)
    assert all(v.dep_id == dep_id and v.is_shared is False for v in every.dependencies)
    page = versions(marker="3", maxitems="10")
    assert ([v.version for v in page.dependencies], page.next_marker) == ([4, 5], 5)
    assert versions(marker="5").dependencies == []


def test_show_returns_the_version_with_its_download_link(sdk: Any) -> None:
    created = create_dependency(sdk, description="lib")

    shown = show(sdk, created.dep_id, 1)

    assert (shown.id, shown.dep_id, shown.version, shown.etag) == (
        created.id,
        created.dep_id,
        1,
        created.etag,
    )
    assert (shown.is_shared, shown.download_link, shown.description) == (False, "", "lib")
    assert shown.last_modified == created.last_modified


def test_missing_dependencies_and_versions_are_fss_1056(sdk: Any) -> None:
    dep_id = create_dependency(sdk).dep_id
    for call in (
        lambda: show(sdk, dep_id, 2),
        lambda: show(sdk, str(uuid.uuid4()), 1),
        lambda: delete(sdk, dep_id, 0),
        lambda: sdk.list_dependency_version(
            ListDependencyVersionRequest(depend_id=str(uuid.uuid4()))
        ),
    ):
        error = client_error(call)
        assert (error.status_code, error.error_code) == (404, "FSS.1056")


@pytest.mark.parametrize("version", ["latest", "-1", "1.0", "99999999999"])
def test_a_version_that_is_not_a_number_is_invalid(sdk: Any, version: str) -> None:
    dep_id = create_dependency(sdk).dep_id

    error = client_error(lambda: show(sdk, dep_id, version))

    assert (error.status_code, error.error_code) == (400, "FSS.1024")


def test_another_projects_dependencies_are_not_found(sdk: Any, other_sdk: Any) -> None:
    mine = create_dependency(sdk)

    assert other_sdk.list_dependencies(ListDependenciesRequest()).count == 0
    for call in (
        lambda: show(other_sdk, mine.dep_id, 1),
        lambda: delete(other_sdk, mine.dep_id, 1),
        lambda: other_sdk.list_dependency_version(
            ListDependencyVersionRequest(depend_id=mine.dep_id)
        ),
        lambda: create_function(other_sdk, "theirs", [mine.id]),
    ):
        error = client_error(call)
        assert (error.status_code, error.error_code) == (404, "FSS.1056")
    # The same name in another project is a dependency of its own.
    theirs = create_dependency(other_sdk)
    assert theirs.dep_id != mine.dep_id and theirs.version == 1
    assert show(sdk, mine.dep_id, 1).owner == PROJECT


# -- delete -----------------------------------------------------------------------------------


def test_delete_removes_a_version_and_the_last_one_its_dependency(sdk: Any) -> None:
    first = create_dependency(sdk)
    create_dependency(sdk, files={"mylib/__init__.py": "VALUE = 2\n"})

    assert delete(sdk, first.dep_id, 1).status_code == 204
    assert client_error(lambda: show(sdk, first.dep_id, 1)).status_code == 404
    assert sdk.list_dependencies(ListDependenciesRequest()).dependencies[0].version == 2
    delete(sdk, first.dep_id, 2)

    assert sdk.list_dependencies(ListDependenciesRequest()).count == 0
    error = client_error(
        lambda: sdk.list_dependency_version(ListDependencyVersionRequest(depend_id=first.dep_id))
    )
    assert error.error_code == "FSS.1056"
    again = create_dependency(sdk)
    assert again.version == 1 and again.dep_id != first.dep_id


def test_delete_is_refused_while_a_function_lists_the_version(sdk: Any, server: LiveServer) -> None:
    data = zip_of(LIBRARY)
    digest = hashlib.sha512(data).hexdigest()
    version = create_dependency(sdk, data=data)
    create_function(sdk, "user", [version.id])

    error = client_error(lambda: delete(sdk, version.dep_id, 1))
    assert (error.status_code, error.error_code) == (412, "FSS.1033")
    assert "in use" in error.error_msg
    assert server.run(server.services.store.get_code(digest)) == data

    set_dependencies(sdk, "user", [])
    delete(sdk, version.dep_id, 1)
    assert server.run(server.services.store.get_code(digest)) is None


# -- functions that list dependency versions --------------------------------------------------


def test_functions_list_versions_and_show_them(sdk: Any, raw: RawApi) -> None:
    a = create_dependency(sdk, "a", {"a.py": "x = 1\n"})
    b = create_dependency(sdk, "b", {"b.py": "x = 1\n"})

    created = create_function(sdk, "user", [b.id, a.id])
    assert created.depend_version_list == [b.id, a.id]
    assert [d.id for d in created.dependencies] == [b.id, a.id]

    config = sdk.show_function_config(ShowFunctionConfigRequest(function_urn=urn("user")))
    assert config.depend_version_list == [b.id, a.id]
    assert config.depend_list == [b.dep_id, a.dep_id]
    shown = config.dependencies[0]
    assert (shown.id, shown.dep_id, shown.name, shown.version, shown.owner) == (
        b.id,
        b.dep_id,
        "b",
        1,
        PROJECT,
    )
    assert (shown.etag, shown.size, shown.link, shown.file_name) == (
        b.etag,
        b.size,
        b.link,
        "b.zip",
    )
    assert shown.last_modified == b.last_modified
    code = sdk.show_function_code(ShowFunctionCodeRequest(function_urn=urn("user")))
    assert code.depend_version_list == [b.id, a.id]
    assert [d.id for d in code.dependencies] == [b.id, a.id]
    # ListFunctions items carry them too (the SDK's list model has no such field).
    listed = raw.call("GET", f"/v2/{PROJECT}/fgs/functions").json()["functions"]
    assert [f["depend_version_list"] for f in listed] == [[b.id, a.id]]
    assert [d["id"] for d in listed[0]["dependencies"]] == [b.id, a.id]


def test_update_code_replaces_the_list_and_an_empty_one_detaches(sdk: Any) -> None:
    a = create_dependency(sdk, "a", {"a.py": "x = 1\n"})
    b = create_dependency(sdk, "b", {"b.py": "x = 1\n"})
    create_function(sdk, "user", [a.id])

    assert set_dependencies(sdk, "user", [b.id]).depend_version_list == [b.id]
    # No list: the previous one stays.
    kept = set_dependencies(sdk, "user", None)
    assert [d.id for d in kept.dependencies] == [b.id]
    detached = set_dependencies(sdk, "user", [])
    assert (detached.depend_version_list, detached.dependencies) == ([], [])
    assert create_function(sdk, "plain", None).depend_version_list == []


def test_a_function_lists_at_most_20_versions(sdk: Any) -> None:
    ids = [
        create_dependency(sdk, f"d{n}", {f"d{n}.py": "x = 1\n"}).id
        for n in range(MAX_PER_FUNCTION + 1)
    ]

    assert len(create_function(sdk, "full", ids[:MAX_PER_FUNCTION]).dependencies) == 20
    error = client_error(lambda: create_function(sdk, "over", ids))
    assert (error.status_code, error.error_code) == (403, "FSS.1045")
    error = client_error(lambda: set_dependencies(sdk, "full", ids))
    assert (error.status_code, error.error_code) == (403, "FSS.1045")


def test_unknown_duplicate_and_foreign_runtime_versions_are_refused(sdk: Any) -> None:
    version = create_dependency(sdk)
    newer = create_dependency(sdk, runtime="Python3.10")

    cases = [
        ([str(uuid.uuid4())], 404, "FSS.1056"),
        (["x" * 5000], 404, "FSS.1056"),
        ([version.dep_id], 404, "FSS.1056"),  # a dependency id is not a version id
        ([version.id, version.id], 400, "FSS.1024"),
        ([newer.id], 400, "FSS.1024"),
    ]
    for depend, status, code in cases:
        error = client_error(partial(create_function, sdk, "user", depend))
        assert (error.status_code, error.error_code) == (status, code), depend
    create_function(sdk, "user", [version.id])
    error = client_error(lambda: set_dependencies(sdk, "user", [newer.id]))
    assert (error.status_code, error.error_code) == (400, "FSS.1024")


def test_a_runtime_change_must_fit_the_listed_dependencies(sdk: Any) -> None:
    version = create_dependency(sdk)
    create_function(sdk, "user", [version.id])

    def update(runtime: str) -> Any:
        body = UpdateFunctionConfigRequestBody(
            func_name="user", runtime=runtime, timeout=30, handler="index.handler", memory_size=128
        )
        return sdk.update_function_config(
            UpdateFunctionConfigRequest(function_urn=urn("user"), body=body)
        )

    error = client_error(lambda: update("Python3.10"))
    assert (error.status_code, error.error_code) == (400, "FSS.1024")
    updated = update("Python3.9")
    assert [d.id for d in updated.dependencies] == [version.id]


@pytest.mark.parametrize("value", ["abc", [1], {"a": 1}, [None]])
def test_a_list_that_is_not_a_list_of_strings_is_invalid(
    sdk: Any, raw: RawApi, value: object
) -> None:
    create_function(sdk, "user", None)
    body = {
        "code_type": "inline",
        "func_code": {"file": b64("def handler(e, c):\n    return 1\n")},
        "depend_version_list": value,
    }

    response = raw.call(
        "PUT", function_path(urn("user"), "/code"), content=json.dumps(body).encode()
    )

    assert response.status_code == 400, response.text
    assert response.json()["error_code"] == "FSS.0400"


# -- limits of a project ----------------------------------------------------------------------


@pytest.fixture
def small_server(tmp_path: Path) -> Iterator[LiveServer]:
    settings = make_settings(
        tmp_path / "data", max_dependency_versions_per_project=2, max_code_bytes_per_project=4096
    )
    with live_server(settings) as live:
        yield live


def test_a_project_keeps_a_bounded_number_of_versions(small_server: LiveServer) -> None:
    sdk = sdk_client(small_server.url)
    create_dependency(sdk, "a", {"a.py": "x = 1\n"})
    create_dependency(sdk, "b", {"b.py": "x = 1\n"})

    error = client_error(lambda: create_dependency(sdk, "c", {"c.py": "x = 1\n"}))

    assert (error.status_code, error.error_code) == (403, "FSS.1045")


def test_dependency_zips_count_toward_the_code_quota(small_server: LiveServer) -> None:
    sdk = sdk_client(small_server.url)
    big = create_dependency(sdk, "big", {"big.txt": os.urandom(1200).hex()})
    assert big.size > 2400

    error = client_error(lambda: create_dependency(sdk, "more", {"m.txt": os.urandom(900).hex()}))
    assert (error.status_code, error.error_code) == (403, "FSS.1042")
    # The function code quota counts the dependency zips too.
    body = CreateFunctionRequestBody(
        func_name="f",
        package="default",
        runtime="Python3.9",
        timeout=30,
        handler="index.handler",
        memory_size=128,
        code_type="inline",
        func_code=FuncCode(file=b64("x = '" + "y" * 2000 + "'\n")),
    )
    error = client_error(lambda: sdk.create_function(CreateFunctionRequest(body=body)))
    assert (error.status_code, error.error_code) == (403, "FSS.1042")


# -- text no store keeps ----------------------------------------------------------------------


def test_nul_characters_are_refused_or_not_found_on_every_backend(any_server: LiveServer) -> None:
    sdk = sdk_client(any_server.url)
    raw = RawApi(any_server.url)
    base = f"/v2/{PROJECT}/fgs/dependencies"
    try:
        for params in ({"name": "a\x00b"}, {"runtime": "Python3.9\x00"}):
            response = raw.call("GET", base, params=params)
            assert (response.status_code, response.json()["error_code"]) == (400, "FSS.1024")
        for path in (f"{base}/a%00b/version", f"{base}/a%00b/version/1"):
            for method in ("GET", "DELETE") if path.endswith("/1") else ("GET",):
                response = raw.call(method, path)
                assert (response.status_code, response.json()["error_code"]) == (
                    404,
                    "FSS.1056",
                ), (method, path)
    finally:
        raw.close()
    error = client_error(lambda: create_function(sdk, "user", ["a\x00b"]))
    assert (error.status_code, error.error_code) == (404, "FSS.1056")
    error = client_error(lambda: create_dependency(sdk, description="a\x00b"))
    assert (error.status_code, error.error_code) == (400, "FSS.1024")
