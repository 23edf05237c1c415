"""Versions and aliases through the official SDK: publish, list, qualified invocations and
records, weighted aliases, limits and every error code."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkfunctiongraph.v2 import (
    AsyncInvokeFunctionRequest,
    CancelAsyncInvocationRequest,
    CancelAsyncInvocationRequestBody,
    CreateFunctionVersionRequest,
    CreateFunctionVersionRequestBody,
    CreateVersionAliasRequest,
    CreateVersionAliasRequestBody,
    DeleteFunctionRequest,
    DeleteVersionAliasRequest,
    FuncCode,
    InvokeFunctionRequest,
    ListAsyncInvocationsRequest,
    ListFunctionAsyncInvokeConfigRequest,
    ListFunctionVersionsRequest,
    ListVersionAliasesRequest,
    ShowFunctionConfigRequest,
    ShowVersionAliasRequest,
    UpdateFunctionAsyncInvokeConfigRequest,
    UpdateFunctionAsyncInvokeConfigRequestBody,
    UpdateFunctionCodeRequest,
    UpdateFunctionCodeRequestBody,
    UpdateFunctionConfigRequest,
    UpdateFunctionConfigRequestBody,
    UpdateVersionAliasRequest,
    UpdateVersionAliasRequestBody,
)

from tests.api.conftest import (
    RawApi,
    function_path,
)
from tests.support import (
    OTHER,
    PROJECT,
    LiveServer,
    b64,
    create_function,
    sdk_client,
    urn,
    wait_for,
    wait_for_terminal_record,
)


@pytest.fixture
def server(shared_server: LiveServer) -> LiveServer:
    """One server for the module: each test starts from empty projects."""
    return shared_server


def code_returning(value: Any, *, fail: bool = False) -> str:
    body = f"raise RuntimeError({json.dumps(value)!r})" if fail else f"return {value!r}"
    return f"def handler(event, context):\n    {body}\n"


def set_code(sdk: Any, name: str, value: Any) -> None:
    body = UpdateFunctionCodeRequestBody(
        code_type="inline", func_code=FuncCode(file=b64(code_returning(value)))
    )
    sdk.update_function_code(UpdateFunctionCodeRequest(function_urn=urn(name), body=body))


def publish(sdk: Any, name: str, version: str | None = None, description: str = "") -> Any:
    body = CreateFunctionVersionRequestBody(version=version, description=description or None)
    return sdk.create_function_version(
        CreateFunctionVersionRequest(function_urn=urn(name, qualifier=None), body=body)
    )


def new_alias(
    sdk: Any, name: str, alias: str, version: str, weights: dict[str, int] | None = None
) -> Any:
    body = CreateVersionAliasRequestBody(
        name=alias, version=version, additional_version_weights=weights
    )
    return sdk.create_version_alias(
        CreateVersionAliasRequest(function_urn=urn(name, qualifier=None), body=body)
    )


def invoke(sdk: Any, function_urn: str) -> Any:
    request = InvokeFunctionRequest(function_urn=function_urn, x_cff_request_version="v1", body={})
    return json.loads(sdk.invoke_function(request).result)


def invoke_async(sdk: Any, function_urn: str) -> str:
    request = AsyncInvokeFunctionRequest(function_urn=function_urn, body={})
    request_id: str = sdk.async_invoke_function(request).request_id
    return request_id


def fss_error(call: Any) -> tuple[int, str]:
    with pytest.raises(ClientRequestException) as caught:
        call()
    return caught.value.status_code, caught.value.error_code


def listed_ids(sdk: Any, function_urn: str) -> set[str]:
    request = ListAsyncInvocationsRequest(function_urn=function_urn, limit="500")
    return {record.request_id for record in sdk.list_async_invocations(request).invocations}


def two_versions(sdk: Any, name: str) -> None:
    """``name`` with v1 returning 1, v2 returning 2 and latest returning 3."""
    create_function(sdk, name, code_returning(1))
    publish(sdk, name, "v1")
    set_code(sdk, name, 2)
    publish(sdk, name, "v2")
    set_code(sdk, name, 3)


# -- versions -------------------------------------------------------------------------------


def test_a_published_version_is_a_snapshot_of_code_config_and_async_config(sdk: Any) -> None:
    create_function(sdk, "snap", code_returning("one"))
    config = UpdateFunctionAsyncInvokeConfigRequestBody(
        max_async_event_age_in_seconds=120, max_async_retry_attempts=2
    )
    sdk.update_function_async_invoke_config(
        UpdateFunctionAsyncInvokeConfigRequest(function_urn=urn("snap"), body=config)
    )
    created = publish(sdk, "snap", "v1", "first release")
    assert created.func_urn == urn("snap", qualifier="v1")
    assert created.version == "v1"
    assert created.version_description == "first release"
    assert created.function_async_config.max_async_retry_attempts == 2
    assert created.function_async_config.max_async_event_age_in_seconds == 120

    set_code(sdk, "snap", "two")
    update = UpdateFunctionConfigRequestBody(
        func_name="snap", runtime="Python3.9", timeout=7, handler="index.handler", memory_size=256
    )
    sdk.update_function_config(UpdateFunctionConfigRequest(function_urn=urn("snap"), body=update))

    assert invoke(sdk, urn("snap", qualifier="v1")) == "one"
    assert invoke(sdk, urn("snap")) == "two"
    assert invoke(sdk, urn("snap", qualifier=None)) == "two"
    shown = sdk.show_function_config(
        ShowFunctionConfigRequest(function_urn=urn("snap", qualifier="v1"))
    )
    assert (shown.version, shown.timeout, shown.memory_size) == ("v1", 30, 128)
    assert shown.func_urn == urn("snap", qualifier="v1")


def test_a_version_name_is_generated_when_none_is_given(sdk: Any) -> None:
    create_function(sdk, "auto", code_returning(1))
    created = publish(sdk, "auto")
    assert re.fullmatch(r"v\d{8}-\d{6}", created.version), created.version


def test_publishing_without_a_change_is_refused(sdk: Any) -> None:
    create_function(sdk, "same", code_returning(1))
    publish(sdk, "same", "v1")
    assert fss_error(lambda: publish(sdk, "same", "v2")) == (400, "FSS.1016")
    set_code(sdk, "same", 2)
    assert publish(sdk, "same", "v2").version == "v2"


@pytest.mark.parametrize("version", ["latest", "LATEST", "-v1", "v 1", "x" * 43, "v1!"])
def test_an_invalid_version_name_is_refused(sdk: Any, version: str) -> None:
    create_function(sdk, "badver", code_returning(1))
    assert fss_error(lambda: publish(sdk, "badver", version)) == (400, "FSS.1015")


def test_a_version_name_is_used_once(sdk: Any) -> None:
    create_function(sdk, "twice", code_returning(1))
    publish(sdk, "twice", "v1")
    set_code(sdk, "twice", 2)
    assert fss_error(lambda: publish(sdk, "twice", "v1")) == (409, "FSS.1062")


def test_twenty_versions_at_most_and_every_one_listed_page_by_page(sdk: Any) -> None:
    create_function(sdk, "many", code_returning(0))
    for n in range(1, 25):
        set_code(sdk, "many", n)
        if n < 20:
            publish(sdk, "many", f"v{n}")
        else:
            assert fss_error(lambda n=n: publish(sdk, "many", f"v{n}")) == (400, "FSS.1015")
    seen: list[str] = []
    marker = 0
    while True:
        page = sdk.list_function_versions(
            ListFunctionVersionsRequest(
                function_urn=urn("many", qualifier=None), marker=str(marker), maxitems="7"
            )
        )
        assert page.count == 20
        if not page.versions:
            break
        seen += [version.version for version in page.versions]
        assert page.next_marker == marker + len(page.versions)
        marker = page.next_marker
    assert seen == ["latest"] + [f"v{n}" for n in range(1, 20)]
    assert invoke(sdk, urn("many", qualifier="v7")) == 7


def test_a_published_version_cannot_change(sdk: Any) -> None:
    create_function(sdk, "frozen", code_returning(1))
    publish(sdk, "frozen", "v1")
    body = UpdateFunctionCodeRequestBody(
        code_type="inline", func_code=FuncCode(file=b64(code_returning(2)))
    )
    request = UpdateFunctionCodeRequest(function_urn=urn("frozen", qualifier="v1"), body=body)
    assert fss_error(lambda: sdk.update_function_code(request)) == (400, "FSS.1015")
    assert invoke(sdk, urn("frozen", qualifier="v1")) == 1


def test_unknown_versions_and_aliases_are_404_with_their_codes(sdk: Any) -> None:
    create_function(sdk, "known", code_returning(1))
    assert fss_error(lambda: invoke(sdk, urn("known", qualifier="v9"))) == (404, "FSS.1052")
    assert fss_error(lambda: invoke(sdk, urn("known", qualifier="!prod"))) == (404, "FSS.1053")
    assert fss_error(lambda: invoke_async(sdk, urn("known", qualifier="v9"))) == (
        404,
        "FSS.1052",
    )
    assert fss_error(lambda: invoke(sdk, urn("unknown", qualifier="v1")))[0] == 404


def test_another_project_sees_no_version(server: LiveServer, sdk: Any) -> None:
    create_function(sdk, "mine", code_returning(1))
    publish(sdk, "mine", "v1")
    other = sdk_client(server.url, OTHER)
    status, _ = fss_error(lambda: invoke(other, urn("mine", qualifier="v1")))
    assert status in (403, 404)
    request = ListFunctionVersionsRequest(function_urn=urn("mine", qualifier=None))
    assert fss_error(lambda: other.list_function_versions(request))[0] in (403, 404)


# -- records per qualifier ------------------------------------------------------------------


def test_records_are_listed_per_qualifier_and_all_on_the_unqualified_urn(sdk: Any) -> None:
    two_versions(sdk, "recs")
    new_alias(sdk, "recs", "prod", "v1")
    on_latest = invoke_async(sdk, urn("recs"))
    on_v1 = invoke_async(sdk, urn("recs", qualifier="v1"))
    on_v2 = invoke_async(sdk, urn("recs", qualifier="v2"))
    on_prod = invoke_async(sdk, urn("recs", qualifier="!prod"))
    for request_id, qualifier in [
        (on_latest, "latest"),
        (on_v1, "v1"),
        (on_v2, "v2"),
        (on_prod, "!prod"),
    ]:
        record = wait_for_terminal_record(sdk, urn("recs", qualifier=qualifier), request_id)
        assert record.status == "SUCCESS", record
    assert listed_ids(sdk, urn("recs")) == {on_latest}
    assert listed_ids(sdk, urn("recs", qualifier="v1")) == {on_v1}
    assert listed_ids(sdk, urn("recs", qualifier="!prod")) == {on_prod}
    everything = sdk.list_async_invocations(
        ListAsyncInvocationsRequest(function_urn=urn("recs", qualifier=None), limit="2")
    )
    assert everything.count == 4
    pages = [everything]
    while pages[-1].invocations:
        marker = str(pages[-1].next_marker)
        pages.append(
            sdk.list_async_invocations(
                ListAsyncInvocationsRequest(
                    function_urn=urn("recs", qualifier=None), limit="2", marker=marker
                )
            )
        )
    merged = [record for page in pages for record in page.invocations]
    assert {r.request_id for r in merged} == {on_latest, on_v1, on_v2, on_prod}
    times = [r.start_time for r in merged]  # newest first (the wire shows whole seconds)
    assert times == sorted(times, reverse=True)
    assert len(merged) == 4


def test_an_alias_record_says_which_version_ran(sdk: Any, raw: RawApi) -> None:
    two_versions(sdk, "which")
    new_alias(sdk, "which", "prod", "v1", {"v2": 100})
    request_id = invoke_async(sdk, urn("which", qualifier="!prod"))
    wait_for_terminal_record(sdk, urn("which", qualifier="!prod"), request_id)
    detail = raw.call("GET", f"/v2/{PROJECT}/openfgs/async-invocations/{request_id}")
    assert detail.status_code == 200, detail.text
    assert detail.json()["func_urn"] == urn("which", qualifier="v2")


def test_a_record_of_a_version_is_canceled_through_the_unqualified_urn(sdk: Any) -> None:
    create_function(sdk, "slowv", "import time\ndef handler(event, context):\n    time.sleep(30)\n")
    publish(sdk, "slowv", "v1")
    request_id = invoke_async(sdk, urn("slowv", qualifier="v1"))
    body = CancelAsyncInvocationRequestBody(request_id=request_id)
    sdk.cancel_async_invocation(
        CancelAsyncInvocationRequest(function_urn=urn("slowv", qualifier=None), body=body)
    )
    record = wait_for_terminal_record(sdk, urn("slowv", qualifier="v1"), request_id)
    assert record.status in ("DISCARD", "FAIL")
    assert record.error_code == 4208


def test_async_configs_are_kept_per_qualifier(sdk: Any) -> None:
    create_function(sdk, "cfg", code_returning(1))
    publish(sdk, "cfg", "v1")
    for qualifier, retries in [("latest", 1), ("v1", 2)]:
        body = UpdateFunctionAsyncInvokeConfigRequestBody(max_async_retry_attempts=retries)
        sdk.update_function_async_invoke_config(
            UpdateFunctionAsyncInvokeConfigRequest(
                function_urn=urn("cfg", qualifier=qualifier), body=body
            )
        )
    listed = sdk.list_function_async_invoke_config(
        ListFunctionAsyncInvokeConfigRequest(function_urn=urn("cfg", qualifier=None))
    )
    found = {c.func_urn: c.max_async_retry_attempts for c in listed.async_invoke_configs}
    assert found == {urn("cfg"): 1, urn("cfg", qualifier="v1"): 2}


# -- aliases --------------------------------------------------------------------------------


def test_alias_create_list_show_update_delete(sdk: Any) -> None:
    two_versions(sdk, "al")
    created = new_alias(sdk, "al", "prod", "v1")
    assert created.alias_urn == urn("al", qualifier="!prod")
    assert (created.name, created.version) == ("prod", "v1")
    assert invoke(sdk, created.alias_urn) == 1
    new_alias(sdk, "al", "beta", "latest")
    listed = sdk.list_version_aliases(
        ListVersionAliasesRequest(function_urn=urn("al", qualifier=None))
    )
    assert [a.name for a in listed.body] == ["prod", "beta"]
    shown = sdk.show_version_alias(
        ShowVersionAliasRequest(function_urn=urn("al", qualifier=None), alias_name="prod")
    )
    assert shown.version == "v1"

    update = UpdateVersionAliasRequestBody(version="v2", description="moved")
    updated = sdk.update_version_alias(
        UpdateVersionAliasRequest(
            function_urn=urn("al", qualifier=None), alias_name="prod", body=update
        )
    )
    assert (updated.version, updated.description) == ("v2", "moved")
    assert invoke(sdk, urn("al", qualifier="!prod")) == 2
    assert invoke(sdk, urn("al", qualifier="!beta")) == 3

    sdk.delete_version_alias(
        DeleteVersionAliasRequest(function_urn=urn("al", qualifier=None), alias_name="prod")
    )
    assert fss_error(lambda: invoke(sdk, urn("al", qualifier="!prod"))) == (404, "FSS.1053")
    request = ShowVersionAliasRequest(function_urn=urn("al", qualifier=None), alias_name="prod")
    assert fss_error(lambda: sdk.show_version_alias(request)) == (404, "FSS.1053")


def test_alias_errors(sdk: Any) -> None:
    two_versions(sdk, "alerr")
    new_alias(sdk, "alerr", "prod", "v1")
    assert fss_error(lambda: new_alias(sdk, "alerr", "prod", "v2")) == (409, "FSS.1063")
    assert fss_error(lambda: new_alias(sdk, "alerr", "9bad", "v1")) == (400, "FSS.1014")
    assert fss_error(lambda: new_alias(sdk, "alerr", "x" * 64, "v1")) == (400, "FSS.1014")
    assert fss_error(lambda: new_alias(sdk, "alerr", "nov", "v9")) == (404, "FSS.1052")
    assert fss_error(lambda: new_alias(sdk, "alerr", "w1", "v1", {"v1": 10})) == (
        400,
        "FSS.1014",
    )
    assert fss_error(lambda: new_alias(sdk, "alerr", "w2", "v1", {"v2": 101})) == (
        400,
        "FSS.1014",
    )
    assert fss_error(lambda: new_alias(sdk, "alerr", "w3", "v1", {"v2": 1, "latest": 1})) == (
        400,
        "FSS.1014",
    )
    assert fss_error(lambda: new_alias(sdk, "alerr", "w4", "v1", {"v9": 10})) == (
        404,
        "FSS.1052",
    )


def test_ten_aliases_at_most(sdk: Any) -> None:
    create_function(sdk, "tenal", code_returning(1))
    for n in range(10):
        new_alias(sdk, "tenal", f"a{n}", "latest")
    assert fss_error(lambda: new_alias(sdk, "tenal", "a10", "latest")) == (400, "FSS.1014")


def test_weighted_alias_routes_by_weight_and_says_which_version_ran(sdk: Any, raw: RawApi) -> None:
    two_versions(sdk, "split")
    new_alias(sdk, "split", "all2", "v1", {"v2": 100})
    new_alias(sdk, "split", "none2", "v1", {"v2": 0})
    new_alias(sdk, "split", "half", "v1", {"v2": 50})
    assert {invoke(sdk, urn("split", qualifier="!all2")) for _ in range(5)} == {2}
    assert {invoke(sdk, urn("split", qualifier="!none2")) for _ in range(5)} == {1}
    # Two outcomes at 50 %: both are seen in 60 calls unless the dice fail (2 ** -59).
    seen = {invoke(sdk, urn("split", qualifier="!half")) for _ in range(60)}
    assert seen == {1, 2}
    for alias, version in [("!all2", "v2"), ("!none2", "v1")]:
        path = function_path(urn("split", qualifier=alias), "/invocations")
        response = raw.call("POST", path, content=b"{}")
        assert response.status_code == 200, response.text
        assert response.headers["X-Cff-Function-Version"] == version


# -- deleting -------------------------------------------------------------------------------


def test_a_version_an_alias_uses_cannot_be_deleted(sdk: Any) -> None:
    two_versions(sdk, "del")
    new_alias(sdk, "del", "prod", "v1", {"v2": 10})
    for version in ("v1", "v2"):
        request = DeleteFunctionRequest(function_urn=urn("del", qualifier=version))
        assert fss_error(lambda r=request: sdk.delete_function(r)) == (409, "FSS.1066")
    sdk.delete_version_alias(
        DeleteVersionAliasRequest(function_urn=urn("del", qualifier=None), alias_name="prod")
    )
    request_id = invoke_async(sdk, urn("del", qualifier="v1"))
    wait_for_terminal_record(sdk, urn("del", qualifier="v1"), request_id)
    sdk.delete_function(DeleteFunctionRequest(function_urn=urn("del", qualifier="v1")))
    assert fss_error(lambda: invoke(sdk, urn("del", qualifier="v1"))) == (404, "FSS.1052")
    assert invoke(sdk, urn("del", qualifier="v2")) == 2
    assert request_id not in listed_ids(sdk, urn("del", qualifier=None))


def test_latest_cannot_be_deleted_alone_and_the_function_takes_its_versions(sdk: Any) -> None:
    two_versions(sdk, "whole")
    new_alias(sdk, "whole", "prod", "v1")
    request = DeleteFunctionRequest(function_urn=urn("whole"))
    assert fss_error(lambda: sdk.delete_function(request)) == (400, "FSS.1015")
    sdk.delete_function(DeleteFunctionRequest(function_urn=urn("whole", qualifier=None)))
    for qualifier in ("latest", "v1", "!prod"):
        status, _ = fss_error(lambda q=qualifier: invoke(sdk, urn("whole", qualifier=q)))
        assert status == 404
    create_function(sdk, "whole", code_returning("again"))
    assert fss_error(lambda: invoke(sdk, urn("whole", qualifier="v1"))) == (404, "FSS.1052")
    assert wait_for(lambda: invoke(sdk, urn("whole")) == "again")


def test_versions_aliases_and_their_records_on_every_backend(any_server: LiveServer) -> None:
    sdk = sdk_client(any_server.url)
    two_versions(sdk, "both")
    new_alias(sdk, "both", "prod", "v1", {"v2": 100})
    ids = {q: invoke_async(sdk, urn("both", qualifier=q)) for q in ("latest", "v1", "!prod")}
    for qualifier, request_id in ids.items():
        record = wait_for_terminal_record(sdk, urn("both", qualifier=qualifier), request_id)
        assert record.status == "SUCCESS", record
    assert listed_ids(sdk, urn("both", qualifier="!prod")) == {ids["!prod"]}
    assert listed_ids(sdk, urn("both", qualifier=None)) == set(ids.values())
    assert invoke(sdk, urn("both", qualifier="!prod")) == 2
    sdk.delete_version_alias(
        DeleteVersionAliasRequest(function_urn=urn("both", qualifier=None), alias_name="prod")
    )
    sdk.delete_function(DeleteFunctionRequest(function_urn=urn("both", qualifier="v1")))
    assert listed_ids(sdk, urn("both", qualifier=None)) == {ids["latest"]}


def test_a_recreated_function_never_inherits_a_deleted_ones_async_config(sdk: Any) -> None:
    """Ids are not given again (SQLite AUTOINCREMENT, PostgreSQL's sequence): a config cached
    by id for the deleted function cannot become the new one's."""
    create_function(sdk, "reborn", code_returning(1))
    body = UpdateFunctionAsyncInvokeConfigRequestBody(max_async_retry_attempts=3)
    sdk.update_function_async_invoke_config(
        UpdateFunctionAsyncInvokeConfigRequest(function_urn=urn("reborn"), body=body)
    )
    listed = sdk.list_function_async_invoke_config(
        ListFunctionAsyncInvokeConfigRequest(function_urn=urn("reborn"))
    )
    assert listed.async_invoke_configs[0].max_async_retry_attempts == 3
    sdk.delete_function(DeleteFunctionRequest(function_urn=urn("reborn", qualifier=None)))
    create_function(sdk, "reborn", code_returning(2))
    listed = sdk.list_function_async_invoke_config(
        ListFunctionAsyncInvokeConfigRequest(function_urn=urn("reborn"))
    )
    assert not listed.async_invoke_configs


def test_a_version_is_found_right_after_it_was_looked_for_and_published(sdk: Any) -> None:
    """A lookup that missed (the version did not exist yet) is not remembered past the
    publication, nor is the list of the function's rows an unqualified URN covers."""
    create_function(sdk, "eager", code_returning(1))
    assert fss_error(lambda: invoke(sdk, urn("eager", qualifier="v1"))) == (404, "FSS.1052")
    first = invoke_async(sdk, urn("eager"))
    assert listed_ids(sdk, urn("eager", qualifier=None)) == {first}
    publish(sdk, "eager", "v1")
    assert invoke(sdk, urn("eager", qualifier="v1")) == 1
    second = invoke_async(sdk, urn("eager", qualifier="v1"))
    assert listed_ids(sdk, urn("eager", qualifier=None)) == {first, second}
    new_alias(sdk, "eager", "prod", "v1")
    assert invoke(sdk, urn("eager", qualifier="!prod")) == 1


def test_an_alias_cannot_be_renamed(sdk: Any, raw: RawApi) -> None:
    two_versions(sdk, "rename")
    new_alias(sdk, "rename", "prod", "v1")
    path = function_path(urn("rename", qualifier=None), "/aliases/prod")
    body = json.dumps({"name": "live", "version": "v2"}).encode()
    answer = raw.call("PUT", path, content=body)
    assert answer.status_code == 400 and answer.json()["error_code"] == "FSS.1014", answer.text
    assert invoke(sdk, urn("rename", qualifier="!prod")) == 1
