"""Function tags through the official SDK: CreateTags, DeleteTags, ListFunctionTags,
ShowProjectTagsList, and ``tags`` on CreateFunction."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkfunctiongraph.v2 import (
    CreateTagsRequest,
    DeleteFunctionRequest,
    DeleteTagsRequest,
    KvItem,
    ListFunctionTagsRequest,
    ShowProjectTagsListRequest,
    UpdateFunctionTagsRequestBody,
)

from tests.api.conftest import (
    RawApi,
)
from tests.support import (
    OTHER,
    PROJECT,
    LiveServer,
    create_function,
    sdk_client,
    urn,
)


@pytest.fixture
def server(shared_server: LiveServer) -> LiveServer:
    """One server for the module: each test starts from empty projects."""
    return shared_server


SYS_TAGS = [{"key": "_sys_enterprise_project_id", "value": "0"}]


def add_tags(sdk: Any, function_urn: str, tags: dict[str, str], action: str = "create") -> Any:
    body = UpdateFunctionTagsRequestBody(
        action=action, tags=[KvItem(key=k, value=v) for k, v in tags.items()]
    )
    request = CreateTagsRequest(resource_type="functions", resource_id=function_urn, body=body)
    return sdk.create_tags(request)


def remove_tags(sdk: Any, function_urn: str, keys: list[str]) -> Any:
    body = UpdateFunctionTagsRequestBody(action="delete", tags=[KvItem(key=k) for k in keys])
    request = DeleteTagsRequest(resource_type="functions", resource_id=function_urn, body=body)
    return sdk.delete_tags(request)


def tags_of(sdk: Any, function_urn: str) -> dict[str, str]:
    request = ListFunctionTagsRequest(resource_type="functions", resource_id=function_urn)
    response = sdk.list_function_tags(request)
    assert [item.to_dict() for item in response.sys_tags] == SYS_TAGS
    return {item.key: item.value for item in response.tags}


def project_tags(sdk: Any) -> dict[str, list[str]]:
    response = sdk.show_project_tags_list(ShowProjectTagsListRequest(resource_type="functions"))
    assert [item.to_dict() for item in response.sys_tags] == [
        {"key": "_sys_enterprise_project_id", "values": ["0"]}
    ]
    return {item.key: item.values for item in response.tags}


def refused(call: Any, status: int = 400) -> tuple[str, str]:
    with pytest.raises(ClientRequestException) as info:
        call()
    assert info.value.status_code == status, info.value.error_msg
    return info.value.error_code, info.value.error_msg


def tags_path(function_urn: str, suffix: str = "") -> str:
    return f"/v2/{PROJECT}/functions/{quote(function_urn, safe='')}/tags{suffix}"


def test_tags_are_added_replaced_listed_and_deleted(any_server: LiveServer) -> None:
    sdk = sdk_client(any_server.url)
    create_function(sdk, "tagged")
    function_urn = urn("tagged", qualifier=None)

    assert add_tags(sdk, function_urn, {"env": "prod", "team": "a"}).status_code == 204
    assert tags_of(sdk, function_urn) == {"env": "prod", "team": "a"}
    add_tags(sdk, urn("tagged"), {"team": "b", "empty": ""})  # :latest names the function
    assert tags_of(sdk, urn("tagged")) == {"empty": "", "env": "prod", "team": "b"}

    assert remove_tags(sdk, function_urn, ["team", "absent"]).status_code == 204
    assert tags_of(sdk, function_urn) == {"empty": "", "env": "prod"}


def test_project_tags_gather_every_functions_values(any_server: LiveServer) -> None:
    sdk = sdk_client(any_server.url)
    assert project_tags(sdk) == {}
    for name, env in (("one", "prod"), ("two", "dev"), ("three", "prod")):
        create_function(sdk, name)
        add_tags(sdk, urn(name), {"env": env, f"only-{name}": "x"})

    assert project_tags(sdk) == {
        "env": ["dev", "prod"],
        "only-one": ["x"],
        "only-three": ["x"],
        "only-two": ["x"],
    }
    assert project_tags(sdk_client(any_server.url, OTHER)) == {}


def test_tags_go_with_their_function(any_server: LiveServer) -> None:
    sdk = sdk_client(any_server.url)
    create_function(sdk, "brief")
    add_tags(sdk, urn("brief"), {"k": "v"})
    sdk.delete_function(DeleteFunctionRequest(function_urn=urn("brief", qualifier=None)))

    assert project_tags(sdk) == {}
    create_function(sdk, "brief")
    assert tags_of(sdk, urn("brief")) == {}


def test_at_most_twenty_tags_and_a_refused_request_changes_nothing(sdk: Any) -> None:
    create_function(sdk, "full")
    function_urn = urn("full")
    add_tags(sdk, function_urn, {f"k{i:02}": "v" for i in range(15)})

    code, message = refused(lambda: add_tags(sdk, function_urn, {f"n{i}": "v" for i in range(6)}))
    assert code == "FSS.0400" and "at most 20 tags" in message
    assert len(tags_of(sdk, function_urn)) == 15
    assert refused(lambda: add_tags(sdk, function_urn, {f"n{i}": "" for i in range(21)}))[0] == (
        "FSS.0400"
    )

    # Keys the function has already are replaced, not counted twice.
    add_tags(sdk, function_urn, {**{f"k{i:02}": "w" for i in range(15)}, **{"a": "", "b": ""}})
    add_tags(sdk, function_urn, {"c": "", "d": "", "e": ""})
    assert len(tags_of(sdk, function_urn)) == 20
    refused(lambda: add_tags(sdk, function_urn, {"f": ""}))


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("", "v"),
        ("_sys_enterprise_project_id", "1"),
        (" lead", "v"),
        ("trail ", "v"),
        ("new\nline", "v"),
        ("slash/", "v"),
        ("k" * 129, "v"),
        ("k", "v" * 256),
        ("k", "nul\x00"),
        ("k", "tab\t"),
        ("k", "<script>"),
    ],
)
def test_keys_and_values_outside_the_rules_are_refused(sdk: Any, key: str, value: str) -> None:
    create_function(sdk, "strict")
    code, message = refused(lambda: add_tags(sdk, urn("strict"), {key: value}))
    assert code == "FSS.0400" and message.startswith("Invalid tags"), message
    assert tags_of(sdk, urn("strict")) == {}


@pytest.mark.parametrize(
    ("key", "value"),
    [("k" * 128, "v" * 255), ("名前 1", "値.:/=+-@_"), ("a.b:c=d+e-f@g_h", "")],
)
def test_keys_and_values_within_the_rules_are_kept(sdk: Any, key: str, value: str) -> None:
    create_function(sdk, "lenient")
    add_tags(sdk, urn("lenient"), {key: value})
    assert tags_of(sdk, urn("lenient")) == {key: value}


def test_another_projects_function_is_not_found(server: LiveServer, sdk: Any) -> None:
    create_function(sdk, "private")
    other = sdk_client(server.url, OTHER)
    other_urn = urn("private", project=OTHER.project_id)

    for function_urn in (urn("private"), other_urn):
        error = refused(lambda u=function_urn: add_tags(other, u, {"k": "v"}), 404)
        assert error[0] == "FSS.0404"
    assert refused(lambda: tags_of(other, other_urn), 404)[0] == "FSS.0404"
    assert refused(lambda: add_tags(sdk, urn("nobody"), {"k": "v"}), 404)[0] == "FSS.0404"
    assert tags_of(sdk, urn("private")) == {}


def test_bad_requests_answer_in_functiongraphs_shape(raw: RawApi, sdk: Any) -> None:
    create_function(sdk, "shapes")
    create = tags_path(urn("shapes"), "/create")
    cases = [
        ("POST", create, b"{not json", 400),
        ("POST", create, b'{"tags": "k=v"}', 400),
        ("POST", create, b'{"tags": [{"value": "no key"}]}', 400),
        ("POST", create, b'{"tags": [{"key": 1, "value": "v"}]}', 400),
        ("POST", create, b'{"action": "delete", "tags": []}', 400),
        ("DELETE", tags_path(urn("shapes"), "/delete"), b'{"action": "create"}', 400),
        ("POST", create, json.dumps({"tags": [{"key": "k"}] * 101}).encode(), 400),
        ("POST", create, json.dumps({"tags": [{"key": "k"}] * 5000}).encode(), 413),
        ("POST", create, b'{"tags": [{"key": "a"}, {"key": "a"}]}', 400),
        ("GET", f"/v2/{PROJECT}/buckets/{quote(urn('shapes'), safe='')}/tags", b"", 404),
        ("GET", tags_path("not-a-urn"), b"", 400),
    ]
    for method, path, body, status in cases:
        response = raw.call(method, path, content=body)
        assert response.status_code == status, (method, path, body[:80], response.text)
        assert set(response.json()) == {"error_code", "error_msg"}, response.text
        assert response.json()["error_code"].startswith("FSS."), response.text
    assert raw.call("POST", create, content=b"{}").status_code == 204
    assert tags_of(sdk, urn("shapes")) == {}


@pytest.mark.parametrize(
    "text",
    [
        '{"env": "prod", "team": "a"}',
        '[{"key": "env", "value": "prod"}, {"key": "team", "value": "a"}]',
    ],
)
def test_create_function_takes_tags(sdk: Any, text: str) -> None:
    create_function(sdk, "born-tagged", tags=text)
    assert tags_of(sdk, urn("born-tagged")) == {"env": "prod", "team": "a"}


@pytest.mark.parametrize(
    "text",
    [
        "env=prod",
        '["env"]',
        '{"env": 1}',
        '{"_sys_x": "v"}',
        json.dumps({f"k{i}": "v" for i in range(21)}),
        "[" * 5000,
    ],
)
def test_create_function_with_bad_tags_creates_nothing(sdk: Any, text: str) -> None:
    code, _ = refused(lambda: create_function(sdk, "not-born", tags=text))
    assert code == "FSS.0400"
    assert refused(lambda: tags_of(sdk, urn("not-born")), 404)[0] == "FSS.0404"


def test_create_function_with_empty_tags_has_none(sdk: Any) -> None:
    create_function(sdk, "plain", tags="")
    assert tags_of(sdk, urn("plain")) == {}
