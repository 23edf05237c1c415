"""Test events through the official SDK: create, list, show, update and delete; shared by a
function's versions and aliases, gone with the function; every limit and error code."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkfunctiongraph.v2 import (
    CreateEventRequest,
    CreateEventRequestBody,
    CreateFunctionVersionRequest,
    CreateFunctionVersionRequestBody,
    CreateVersionAliasRequest,
    CreateVersionAliasRequestBody,
    DeleteEventRequest,
    DeleteFunctionRequest,
    InvokeFunctionRequest,
    ListEventsRequest,
    ShowEventRequest,
    UpdateEventRequest,
    UpdateEventRequestBody,
)

from openfgs.test_events import MAX_EVENTS
from tests.api.conftest import (
    RawApi,
    function_path,
)
from tests.support import (
    OTHER,
    OTHER_PROJECT,
    PROJECT,
    LiveServer,
    create_function,
    live_server,
    make_settings,
    urn,
)
from tests.support import (
    sdk_client as make_sdk,
)


@pytest.fixture
def server(shared_server: LiveServer) -> LiveServer:
    """One server for the module: each test starts from empty projects."""
    return shared_server


def content_of(event: Any) -> str:
    """``content`` as the SDK is given it: the base64 of the event's JSON."""
    return base64.b64encode(json.dumps(event).encode()).decode()


def create_event(sdk: Any, function_urn: str, name: str, content: str = "") -> Any:
    body = CreateEventRequestBody(name=name, content=content or content_of({"k": "v"}))
    return sdk.create_event(CreateEventRequest(function_urn=function_urn, body=body))


def list_events(sdk: Any, function_urn: str) -> Any:
    return sdk.list_events(ListEventsRequest(function_urn=function_urn))


def show_event(sdk: Any, function_urn: str, event_id: str) -> Any:
    return sdk.show_event(ShowEventRequest(function_urn=function_urn, event_id=event_id))


def update_event(sdk: Any, function_urn: str, event_id: str, content: str) -> Any:
    body = UpdateEventRequestBody(content=content)
    request = UpdateEventRequest(function_urn=function_urn, event_id=event_id, body=body)
    return sdk.update_event(request)


def delete_event(sdk: Any, function_urn: str, event_id: str) -> Any:
    return sdk.delete_event(DeleteEventRequest(function_urn=function_urn, event_id=event_id))


def fss_error(call: Any) -> tuple[int, str]:
    with pytest.raises(ClientRequestException) as caught:
        call()
    return caught.value.status_code, caught.value.error_code


def event_names(sdk: Any, function_urn: str) -> list[str]:
    return [event.name for event in list_events(sdk, function_urn).events or []]


# -- the operations ----------------------------------------------------------------------------


def test_an_event_is_created_listed_shown_updated_and_deleted(sdk: Any) -> None:
    create_function(sdk, "ev")
    before = int(time.time())
    created = create_event(sdk, urn("ev"), "event-1", content_of({"k": "v"}))
    assert created.status_code == 200 and created.name == "event-1" and created.id

    listed = list_events(sdk, urn("ev"))
    assert (listed.count, listed.next_marker) == (1, 1)
    assert [(e.id, e.name) for e in listed.events] == [(created.id, "event-1")]
    assert before <= listed.events[0].last_modified <= time.time() + 1  # seconds

    shown = show_event(sdk, urn("ev"), created.id)
    assert (shown.id, shown.name) == (created.id, "event-1")
    assert json.loads(base64.b64decode(shown.content)) == {"k": "v"}

    updated = update_event(sdk, urn("ev"), created.id, content_of([1, 2]))
    assert (updated.id, updated.name) == (created.id, "event-1")
    assert json.loads(base64.b64decode(show_event(sdk, urn("ev"), created.id).content)) == [1, 2]

    assert delete_event(sdk, urn("ev"), created.id).status_code == 204
    assert list_events(sdk, urn("ev")).count == 0
    assert fss_error(lambda: show_event(sdk, urn("ev"), created.id)) == (404, "FSS.0404")


def test_every_operation_on_each_backend(any_server: LiveServer) -> None:
    sdk = make_sdk(any_server.url)
    create_function(sdk, "backend")
    first = create_event(sdk, urn("backend"), "first").id
    second = create_event(sdk, urn("backend"), "second").id
    assert fss_error(lambda: create_event(sdk, urn("backend"), "first")) == (409, "FSS.0409")
    update_event(sdk, urn("backend"), second, content_of({"n": 2}))
    assert json.loads(base64.b64decode(show_event(sdk, urn("backend"), second).content)) == {"n": 2}
    delete_event(sdk, urn("backend"), first)
    assert event_names(sdk, urn("backend")) == ["second"]
    sdk.delete_function(DeleteFunctionRequest(function_urn=urn("backend", qualifier=None)))
    create_function(sdk, "backend")
    assert list_events(sdk, urn("backend")).count == 0


def test_events_are_listed_in_the_order_made_and_content_is_kept_as_sent(sdk: Any) -> None:
    create_function(sdk, "order")
    spaced = base64.b64encode(b'{ "a" :  1 }').decode()  # kept byte for byte, not re-encoded
    for name in ("zeta", "alpha", "mid"):
        create_event(sdk, urn("order"), name, spaced)
    assert event_names(sdk, urn("order")) == ["zeta", "alpha", "mid"]
    first = list_events(sdk, urn("order")).events[0]
    assert show_event(sdk, urn("order"), first.id).content == spaced


def test_a_saved_event_invokes_the_function(sdk: Any) -> None:
    create_function(sdk, "runs")
    created = create_event(sdk, urn("runs"), "hello", content_of({"name": "you"}))
    event = json.loads(base64.b64decode(show_event(sdk, urn("runs"), created.id).content))
    request = InvokeFunctionRequest(
        function_urn=urn("runs"), x_cff_request_version="v1", body=event
    )
    assert json.loads(sdk.invoke_function(request).result) == {"echo": {"name": "you"}}


def test_versions_and_aliases_share_the_function_events(sdk: Any) -> None:
    create_function(sdk, "shared")
    sdk.create_function_version(
        CreateFunctionVersionRequest(
            function_urn=urn("shared", qualifier=None),
            body=CreateFunctionVersionRequestBody(version="v1"),
        )
    )
    sdk.create_version_alias(
        CreateVersionAliasRequest(
            function_urn=urn("shared", qualifier=None),
            body=CreateVersionAliasRequestBody(name="prod", version="v1"),
        )
    )
    created = create_event(sdk, urn("shared", qualifier="v1"), "from-v1")
    create_event(sdk, urn("shared", qualifier="!prod"), "from-alias")
    for qualifier in ("latest", None, "v1", "!prod"):
        assert event_names(sdk, urn("shared", qualifier=qualifier)) == ["from-v1", "from-alias"]
    assert show_event(sdk, urn("shared", qualifier=None), created.id).name == "from-v1"
    delete_event(sdk, urn("shared", qualifier="!prod"), created.id)
    assert event_names(sdk, urn("shared")) == ["from-alias"]
    # Deleting a version leaves the function's events.
    sdk.delete_function(DeleteFunctionRequest(function_urn=urn("shared", qualifier="!prod")))
    sdk.delete_function(DeleteFunctionRequest(function_urn=urn("shared", qualifier="v1")))
    assert event_names(sdk, urn("shared")) == ["from-alias"]


def test_deleting_a_function_deletes_its_events(sdk: Any) -> None:
    create_function(sdk, "gone")
    create_event(sdk, urn("gone"), "saved")
    sdk.delete_function(DeleteFunctionRequest(function_urn=urn("gone", qualifier=None)))
    assert fss_error(lambda: list_events(sdk, urn("gone"))) == (404, "FSS.1051")
    create_function(sdk, "gone")
    assert list_events(sdk, urn("gone")).count == 0
    create_event(sdk, urn("gone"), "saved")  # the name is free again


# -- limits and errors -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "A" * 25, "e-1_x", "Z9"])
def test_valid_names(sdk: Any, name: str) -> None:
    create_function(sdk, "names")
    assert create_event(sdk, urn("names"), name).name == name


@pytest.mark.parametrize("name", ["", "1abc", "-a", "_a", "a-", "a_", "a" * 26, "a b", "é", "a.b"])
def test_an_invalid_name_is_refused(sdk: Any, name: str) -> None:
    create_function(sdk, "badname")
    assert fss_error(lambda: create_event(sdk, urn("badname"), name)) == (400, "FSS.0400")
    assert list_events(sdk, urn("badname")).count == 0


@pytest.mark.parametrize(
    "content",
    [
        "not base64!",
        "e30",  # unpadded
        base64.b64encode(b"not json").decode(),
        base64.b64encode(b'{"a": 1').decode(),
        base64.b64encode(b"\xff\xfe").decode(),
        base64.b64encode(b"[" * 2000 + b"]" * 2000).decode(),  # nested past 1024 levels
    ],
)
def test_content_that_is_not_base64_of_json_is_refused(sdk: Any, content: str) -> None:
    create_function(sdk, "badcontent")
    assert fss_error(lambda: create_event(sdk, urn("badcontent"), "e", content)) == (
        400,
        "FSS.0400",
    )
    event_id = create_event(sdk, urn("badcontent"), "good").id
    assert fss_error(lambda: update_event(sdk, urn("badcontent"), event_id, content)) == (
        400,
        "FSS.0400",
    )
    shown = show_event(sdk, urn("badcontent"), event_id)
    assert json.loads(base64.b64decode(shown.content)) == {"k": "v"}


def test_a_name_is_used_once_per_function(sdk: Any) -> None:
    create_function(sdk, "dup")
    create_function(sdk, "dup2")
    create_event(sdk, urn("dup"), "same")
    assert fss_error(lambda: create_event(sdk, urn("dup"), "same")) == (409, "FSS.0409")
    assert create_event(sdk, urn("dup2"), "same").name == "same"  # another function's
    assert create_event(sdk, urn("dup"), "Same").name == "Same"  # names are case-sensitive
    assert event_names(sdk, urn("dup")) == ["same", "Same"]


def test_a_function_has_at_most_ten_events(sdk: Any) -> None:
    create_function(sdk, "ten")
    for n in range(MAX_EVENTS):
        create_event(sdk, urn("ten"), f"e{n}")
    assert fss_error(lambda: create_event(sdk, urn("ten"), "one-more")) == (400, "FSS.0400")
    listed = list_events(sdk, urn("ten"))
    assert listed.count == MAX_EVENTS == 10
    delete_event(sdk, urn("ten"), listed.events[0].id)
    create_event(sdk, urn("ten"), "one-more")


def test_an_unknown_event_is_404(sdk: Any) -> None:
    create_function(sdk, "noevent")
    create_function(sdk, "owner")
    theirs = create_event(sdk, urn("owner"), "theirs").id
    for event_id in ("3b659dc0-12fc-40dc-aa05-a321d9424cb3", theirs, "x" * 300):
        assert fss_error(lambda e=event_id: show_event(sdk, urn("noevent"), e)) == (
            404,
            "FSS.0404",
        )
        assert fss_error(
            lambda e=event_id: update_event(sdk, urn("noevent"), e, content_of({}))
        ) == (404, "FSS.0404")
        assert fss_error(lambda e=event_id: delete_event(sdk, urn("noevent"), e)) == (
            404,
            "FSS.0404",
        )
    assert event_names(sdk, urn("owner")) == ["theirs"]


def test_an_unknown_function_or_qualifier_is_404(sdk: Any) -> None:
    create_function(sdk, "known")
    assert fss_error(lambda: list_events(sdk, urn("unknown"))) == (404, "FSS.1051")
    assert fss_error(lambda: create_event(sdk, urn("unknown"), "e")) == (404, "FSS.1051")
    assert fss_error(lambda: show_event(sdk, urn("unknown"), "e")) == (404, "FSS.1051")
    assert fss_error(lambda: list_events(sdk, urn("known", qualifier="v9"))) == (404, "FSS.1052")
    assert fss_error(lambda: list_events(sdk, urn("known", qualifier="!prod"))) == (
        404,
        "FSS.1053",
    )


def test_another_project_sees_no_event(server: LiveServer, sdk: Any, raw: RawApi) -> None:
    create_function(sdk, "private")
    event_id = create_event(sdk, urn("private"), "mine").id
    other = make_sdk(server.url, OTHER)
    # On its own project's path, a URN of another project names no function of its own.
    assert fss_error(lambda: list_events(other, urn("private"))) == (404, "FSS.1051")
    assert fss_error(lambda: show_event(other, urn("private"), event_id)) == (404, "FSS.1051")
    assert fss_error(lambda: delete_event(other, urn("private"), event_id)) == (404, "FSS.1051")
    # On the owner's path, its credential is refused before anything else.
    path = f"/v2/{PROJECT}/fgs/functions/{urn('private')}/events"
    assert raw.call("GET", path, credential=OTHER).status_code == 403
    other_path = function_path(urn("private", project=OTHER_PROJECT), "/events", OTHER_PROJECT)
    assert raw.call("GET", other_path, credential=OTHER).json()["error_code"] == "FSS.1051"
    assert event_names(sdk, urn("private")) == ["mine"]


@pytest.mark.parametrize(
    ("method", "body"),
    [
        ("POST", b"{not json"),
        ("POST", b"[]"),
        ("POST", b'{"content": "e30="}'),
        ("POST", b'{"name": "e"}'),
        ("POST", b'{"name": 1, "content": "e30="}'),
        ("POST", b'{"name": "e", "content": ["e30="]}'),
        ("PUT", b"{not json"),
        ("PUT", b"{}"),
        ("PUT", b'{"content": null}'),
        ("PUT", b'{"content": "e30=", "name": "9bad"}'),
    ],
)
def test_a_malformed_body_is_400(sdk: Any, raw: RawApi, method: str, body: bytes) -> None:
    create_function(sdk, "malformed")
    event_id = create_event(sdk, urn("malformed"), "kept").id
    suffix = "/events" if method == "POST" else f"/events/{event_id}"
    response = raw.call(method, function_path(urn("malformed"), suffix), content=body)
    assert response.status_code == 400, response.text
    assert response.json()["error_code"] == "FSS.0400"
    assert set(response.json()) == {"error_code", "error_msg"}
    assert event_names(sdk, urn("malformed")) == ["kept"]


def test_update_renames_when_a_name_is_given(sdk: Any, raw: RawApi) -> None:
    create_function(sdk, "rename")
    first = create_event(sdk, urn("rename"), "first").id
    create_event(sdk, urn("rename"), "taken")
    path = function_path(urn("rename"), f"/events/{first}")
    body = json.dumps({"name": "second", "content": content_of({})}).encode()
    response = raw.call("PUT", path, content=body)
    assert response.json() == {"id": first, "name": "second"}
    clash = json.dumps({"name": "taken", "content": content_of({})}).encode()
    conflict = raw.call("PUT", path, content=clash)
    assert (conflict.status_code, conflict.json()["error_code"]) == (409, "FSS.0409")
    assert event_names(sdk, urn("rename")) == ["second", "taken"]


# -- sizes -------------------------------------------------------------------------------------

SMALL_EVENT = 4096  # a sync body limit small enough to test the event size against


@pytest.fixture
def small(tmp_path: Path) -> Iterator[LiveServer]:
    """A server whose sync invoke bodies, and so test events, are at most SMALL_EVENT."""
    settings = make_settings(tmp_path / "small", max_sync_body_bytes=SMALL_EVENT)
    with live_server(settings) as live:
        yield live


def test_an_event_is_at_most_a_sync_body(small: LiveServer) -> None:
    sdk = make_sdk(small.url)
    create_function(sdk, "sized")
    padding = SMALL_EVENT - len(json.dumps({"p": ""}))
    largest = content_of({"p": "x" * padding})
    event_id = create_event(sdk, urn("sized"), "largest", largest).id
    too_large = content_of({"p": "x" * (padding + 1)})
    assert fss_error(lambda: create_event(sdk, urn("sized"), "larger", too_large)) == (
        400,
        "FSS.0400",
    )
    assert fss_error(lambda: update_event(sdk, urn("sized"), event_id, too_large)) == (
        400,
        "FSS.0400",
    )
    assert show_event(sdk, urn("sized"), event_id).content == largest


def test_a_large_event_is_kept_whole(sdk: Any) -> None:
    create_function(sdk, "large")
    content = content_of({"p": "x" * (300 * 1024)})  # past the default 64 KB body limit
    event_id = create_event(sdk, urn("large"), "large", content).id
    assert show_event(sdk, urn("large"), event_id).content == content
    broken = content[:-8] + base64.b64encode(b"}}}}}").decode()[:8]
    assert fss_error(lambda: update_event(sdk, urn("large"), event_id, broken)) == (
        400,
        "FSS.0400",
    )


def test_a_body_over_the_route_limit_is_413(small: LiveServer) -> None:
    sdk = make_sdk(small.url)
    create_function(sdk, "huge")
    event_id = create_event(sdk, urn("huge"), "kept").id
    over = "A" * (200 * 1024)  # past the base64 of SMALL_EVENT plus 64 KB for the rest
    raw = RawApi(small.url)
    try:
        for method, suffix in [("POST", "/events"), ("PUT", f"/events/{event_id}")]:
            body = json.dumps({"name": "big", "content": over}).encode()
            response = raw.call(method, function_path(urn("huge"), suffix), content=body)
            assert response.status_code == 413, response.text
            assert response.json()["error_code"] == "FSS.0413"
    finally:
        raw.close()
    assert event_names(sdk, urn("huge")) == ["kept"]
