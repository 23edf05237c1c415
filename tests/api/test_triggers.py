"""Triggers through the official SDK: timers that really fire (seconds-field cron), their
event and records, enable/disable, missed fires, limits and every error code; HTTP trigger
definitions."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime
from typing import Any

import pytest
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkfunctiongraph.v2 import (
    ApigTriggerFuncInfo,
    BatchDeleteFunctionTriggersRequest,
    CreateFunctionTriggerRequest,
    CreateFunctionTriggerRequestBody,
    CreateFunctionVersionRequest,
    CreateFunctionVersionRequestBody,
    CreateVersionAliasRequest,
    CreateVersionAliasRequestBody,
    DeleteFunctionRequest,
    DeleteFunctionTriggerRequest,
    ListAsyncInvocationsRequest,
    ListFunctionTriggersRequest,
    ShowFunctionTriggerRequest,
    TriggerEventDataRequestBody,
    UpdateFunctionAsyncInvokeConfigRequest,
    UpdateFunctionAsyncInvokeConfigRequestBody,
    UpdateTriggerRequest,
    UpdateTriggerRequestBody,
)

from openfgs.models import now_ms
from tests.api.conftest import (
    RawApi,
    function_path,
    set_concurrency,
)
from tests.support import (
    PROJECT,
    REPORTER_CODE,
    LiveServer,
    create_function,
    reported_event,
    urn,
    wait_for,
)


@pytest.fixture
def server(shared_server: LiveServer) -> LiveServer:
    """One server for the module: each test starts from empty projects."""
    return shared_server


pytestmark = pytest.mark.usefixtures("server")
EVERY_SECOND = "*/1 * * * * *"


def timer(
    sdk: Any,
    function_urn: str,
    name: str = "tick",
    schedule: str = EVERY_SECOND,
    schedule_type: str = "Cron",
    status: str | None = None,
    user_event: str | None = None,
) -> Any:
    data = TriggerEventDataRequestBody(
        name=name, schedule_type=schedule_type, schedule=schedule, user_event=user_event
    )
    body = CreateFunctionTriggerRequestBody(
        trigger_type_code="TIMER", trigger_status=status, event_data=data
    )
    return sdk.create_function_trigger(
        CreateFunctionTriggerRequest(function_urn=function_urn, body=body)
    )


def http_trigger(sdk: Any, function_urn: str, path: str, method: str = "GET", **info: Any) -> Any:
    data = TriggerEventDataRequestBody(
        name="api_test",
        path=path,
        req_method=method,
        match_mode="NORMAL",
        auth="NONE",
        type=1,
        protocol="HTTPS",
        func_info=ApigTriggerFuncInfo(**{"timeout": 5000, **info}),
    )
    body = CreateFunctionTriggerRequestBody(trigger_type_code="APIG", event_data=data)
    return sdk.create_function_trigger(
        CreateFunctionTriggerRequest(function_urn=function_urn, body=body)
    )


def fss_error(call: Any) -> tuple[int, str]:
    with pytest.raises(ClientRequestException) as caught:
        call()
    return caught.value.status_code, caught.value.error_code


def records(sdk: Any, function_urn: str) -> list[Any]:
    request = ListAsyncInvocationsRequest(function_urn=function_urn, limit="500")
    found: list[Any] = sdk.list_async_invocations(request).invocations
    return found


def fired_events(sdk: Any, function_urn: str, at_least: int) -> list[dict[str, Any]]:
    """Wait until ``at_least`` fires ran (the reporter fails with its event), return them."""

    def ended() -> list[Any] | None:
        done = [r for r in records(sdk, function_urn) if r.status in ("FAIL", "SUCCESS")]
        return done if len(done) >= at_least else None

    return [reported_event(record) for record in wait_for(ended, timeout=15)]


def store_trigger(server: LiveServer, trigger_id: str) -> Any:
    return server.run(server.services.store.get_trigger(trigger_id))


# -- timers ---------------------------------------------------------------------------------


def test_a_cron_timer_fires_every_second_with_functiongraphs_event(sdk: Any) -> None:
    create_function(sdk, "ticker", REPORTER_CODE)
    created = timer(sdk, urn("ticker"), user_event='{"k": "v"}')
    assert created.trigger_type_code == "TIMER"
    assert created.trigger_status == "ACTIVE"
    assert created.event_data.schedule == EVERY_SECOND
    events = fired_events(sdk, urn("ticker"), at_least=2)
    for event in events:
        assert set(event) == {"version", "time", "trigger_type", "trigger_name", "user_event"}
        assert event["version"] == "v1.0"
        assert event["trigger_type"] == "TIMER"
        assert event["trigger_name"] == "tick"
        assert event["user_event"] == '{"k": "v"}'
        fired = datetime.fromisoformat(event["time"])
        assert fired.utcoffset() is not None and fired.microsecond == 0
    times = sorted(event["time"] for event in events)
    assert len(set(times)) == len(times)  # each scheduled time once


def test_a_timer_without_user_event_sends_an_empty_string(sdk: Any) -> None:
    create_function(sdk, "plain", REPORTER_CODE)
    timer(sdk, urn("plain"))
    assert fired_events(sdk, urn("plain"), at_least=1)[0]["user_event"] == ""


def test_a_disabled_timer_does_not_fire_and_resumes_when_enabled(
    server: LiveServer, sdk: Any
) -> None:
    create_function(sdk, "paused", REPORTER_CODE)
    created = timer(sdk, urn("paused"), status="DISABLED")
    assert store_trigger(server, created.trigger_id).next_fire is None
    assert server.run(server.services.scheduler.fire_due()) == 0
    assert records(sdk, urn("paused")) == []
    update = UpdateTriggerRequestBody(trigger_status="ACTIVE")
    enabled = sdk.update_trigger(
        UpdateTriggerRequest(
            function_urn=urn("paused"),
            trigger_type_code="TIMER",
            trigger_id=created.trigger_id,
            body=update,
        )
    )
    assert enabled.trigger_status == "ACTIVE"
    fired_events(sdk, urn("paused"), at_least=1)
    update = UpdateTriggerRequestBody(trigger_status="DISABLED")
    sdk.update_trigger(
        UpdateTriggerRequest(
            function_urn=urn("paused"),
            trigger_type_code="TIMER",
            trigger_id=created.trigger_id,
            body=update,
        )
    )
    assert store_trigger(server, created.trigger_id).next_fire is None


def test_a_rate_timer_fires_a_period_after_it_starts(server: LiveServer, sdk: Any) -> None:
    create_function(sdk, "rated", REPORTER_CODE)
    for schedule, period in [("3m", 180_000), ("1h", 3_600_000), ("30d", 30 * 86_400_000)]:
        created = timer(
            sdk, urn("rated"), name=f"r{period}", schedule=schedule, schedule_type="Rate"
        )
        kept = store_trigger(server, created.trigger_id)
        assert kept.next_fire - kept.anchor == period


def test_a_function_disabled_by_concurrency_zero_is_not_fired(server: LiveServer, sdk: Any) -> None:
    create_function(sdk, "off", REPORTER_CODE)
    set_concurrency(sdk, "off", 0)
    created = timer(sdk, urn("off"))
    wait_for(
        lambda: store_trigger(server, created.trigger_id).next_fire > created_ms(created) + 2000
    )
    assert records(sdk, urn("off")) == []
    assert server.run(server.services.store.list_trigger_fires(created.trigger_id)) == []


def created_ms(trigger: Any) -> int:
    return int(trigger.created_time.timestamp() * 1000)


def test_missed_fires_after_an_outage_fire_once_within_the_max_event_age(
    server: LiveServer, sdk: Any
) -> None:
    """A timer whose next time is days past (every node was down) fires only its most recent
    time, once, and only when that is younger than the function's max event age."""
    create_function(sdk, "outage", REPORTER_CODE)
    config = UpdateFunctionAsyncInvokeConfigRequestBody(max_async_event_age_in_seconds=86400)
    sdk.update_function_async_invoke_config(
        UpdateFunctionAsyncInvokeConfigRequest(function_urn=urn("outage"), body=config)
    )
    create_function(sdk, "outage-short", REPORTER_CODE)
    config = UpdateFunctionAsyncInvokeConfigRequestBody(max_async_event_age_in_seconds=60)
    sdk.update_function_async_invoke_config(
        UpdateFunctionAsyncInvokeConfigRequest(function_urn=urn("outage-short"), body=config)
    )
    store = server.services.store
    day = 86_400_000
    for name, age in [("outage", day), ("outage-short", 60_000)]:
        created = timer(sdk, urn(name), name="daily", schedule="0 0 0 * * *")
        kept = store_trigger(server, created.trigger_id)
        midnight = kept.next_fire - day  # the last midnight (UTC)
        server.run(store.update_trigger(replace(kept, next_fire=midnight - 3 * day)))
        server.run(server.services.scheduler.fire_due())
        fires = server.run(store.list_trigger_fires(created.trigger_id))
        if now_ms() - midnight <= age:
            assert [scheduled for scheduled, _, _ in fires] == [midnight], name
        else:
            assert fires == [], name
        assert store_trigger(server, created.trigger_id).next_fire == midnight + day
    assert len(fired_events(sdk, urn("outage"), at_least=1)) == 1


def test_a_timer_on_an_alias_fires_the_alias(sdk: Any) -> None:
    create_function(sdk, "aliased", REPORTER_CODE)
    sdk.create_function_version(
        CreateFunctionVersionRequest(
            function_urn=urn("aliased", qualifier=None),
            body=CreateFunctionVersionRequestBody(version="v1"),
        )
    )
    sdk.create_version_alias(
        CreateVersionAliasRequest(
            function_urn=urn("aliased", qualifier=None),
            body=CreateVersionAliasRequestBody(name="prod", version="v1"),
        )
    )
    timer(sdk, urn("aliased", qualifier="!prod"))
    fired_events(sdk, urn("aliased", qualifier="!prod"), at_least=1)
    assert records(sdk, urn("aliased")) == []  # latest's own records


# -- definitions ----------------------------------------------------------------------------


def test_list_show_update_and_delete(sdk: Any) -> None:
    create_function(sdk, "defs", REPORTER_CODE)
    first = timer(sdk, urn("defs"), name="one", schedule="0 0 12 * * *")
    second = timer(sdk, urn("defs"), name="two", schedule="1d", schedule_type="Rate")
    listed = sdk.list_function_triggers(ListFunctionTriggersRequest(function_urn=urn("defs")))
    assert [t.trigger_id for t in listed.body] == [first.trigger_id, second.trigger_id]
    shown = sdk.show_function_trigger(
        ShowFunctionTriggerRequest(
            function_urn=urn("defs"), trigger_type_code="TIMER", trigger_id=first.trigger_id
        )
    )
    assert shown.event_data.name == "one"
    assert isinstance(shown.created_time, datetime)
    sdk.delete_function_trigger(
        DeleteFunctionTriggerRequest(
            function_urn=urn("defs"), trigger_type_code="TIMER", trigger_id=first.trigger_id
        )
    )
    request = ShowFunctionTriggerRequest(
        function_urn=urn("defs"), trigger_type_code="TIMER", trigger_id=first.trigger_id
    )
    assert fss_error(lambda: sdk.show_function_trigger(request)) == (404, "FSS.1131")
    sdk.batch_delete_function_triggers(BatchDeleteFunctionTriggersRequest(function_urn=urn("defs")))
    listed = sdk.list_function_triggers(ListFunctionTriggersRequest(function_urn=urn("defs")))
    assert not listed.body  # the SDK reads an empty array as None


def test_a_timers_schedule_cannot_be_edited(raw: RawApi, sdk: Any) -> None:

    create_function(sdk, "noedit", REPORTER_CODE)
    created = timer(sdk, urn("noedit"), schedule="0 0 12 * * *")
    path = function_path(urn("noedit")).replace("/fgs/functions/", "/fgs/triggers/")
    body = {"trigger_status": "ACTIVE", "event_data": {"schedule": "0 0 13 * * *"}}
    answer = raw.call(
        "PUT", f"{path}/TIMER/{created.trigger_id}", content=json.dumps(body).encode()
    )
    assert answer.status_code == 400 and answer.json()["error_code"] == "FSS.1109"
    same = {"trigger_status": "DISABLED", "event_data": {"schedule": "0 0 12 * * *"}}
    answer = raw.call(
        "PUT", f"{path}/TIMER/{created.trigger_id}", content=json.dumps(same).encode()
    )
    assert answer.status_code == 200 and answer.json()["trigger_status"] == "DISABLED"


@pytest.mark.parametrize(
    ("schedule_type", "schedule"),
    [
        ("Cron", "* * *"),
        ("Cron", "61 * * * * *"),
        ("Cron", "0 0 0 30 2 *"),
        ("Cron", "CRON_TZ=Mars/Olympus 0 0 12 * * *"),
        ("Rate", "0m"),
        ("Rate", "61m"),
        ("Rate", "1.5h"),
        ("Every", "1m"),
        ("Cron", "x" * 300),
    ],
)
def test_an_invalid_schedule_is_fss_1109(sdk: Any, schedule_type: str, schedule: str) -> None:
    create_function(sdk, "badcron", REPORTER_CODE)
    call = lambda: timer(sdk, urn("badcron"), schedule=schedule, schedule_type=schedule_type)  # noqa: E731
    assert fss_error(call) == (400, "FSS.1109")


def test_trigger_errors_and_limits(sdk: Any) -> None:
    create_function(sdk, "lim", REPORTER_CODE)
    body = CreateFunctionTriggerRequestBody(
        trigger_type_code="OBS", event_data=TriggerEventDataRequestBody(name="x")
    )
    create = CreateFunctionTriggerRequest(function_urn=urn("lim"), body=body)
    assert fss_error(lambda: sdk.create_function_trigger(create)) == (400, "FSS.1101")
    assert fss_error(lambda: timer(sdk, urn("lim"), name="9bad")) == (400, "FSS.1109")
    timer(sdk, urn("lim"), name="t0", schedule="0 0 12 * * *")
    assert fss_error(lambda: timer(sdk, urn("lim"), name="t0", schedule="0 0 12 * * *")) == (
        409,
        "FSS.1148",
    )
    for n in range(1, 10):
        timer(sdk, urn("lim"), name=f"t{n}", schedule="0 0 12 * * *")
    assert fss_error(lambda: timer(sdk, urn("lim"), name="t10", schedule="0 0 12 * * *")) == (
        400,
        "FSS.1306",
    )
    show = ShowFunctionTriggerRequest(
        function_urn=urn("lim"), trigger_type_code="TIMER", trigger_id="nope"
    )
    assert fss_error(lambda: sdk.show_function_trigger(show)) == (404, "FSS.1131")
    other = ShowFunctionTriggerRequest(
        function_urn=urn("missing"), trigger_type_code="TIMER", trigger_id="nope"
    )
    assert fss_error(lambda: sdk.show_function_trigger(other))[0] == 404


def test_triggers_go_with_their_function(server: LiveServer, sdk: Any) -> None:
    create_function(sdk, "gone", REPORTER_CODE)
    created = timer(sdk, urn("gone"), schedule="0 0 12 * * *")
    sdk.delete_function(DeleteFunctionRequest(function_urn=urn("gone", qualifier=None)))
    assert store_trigger(server, created.trigger_id) is None


def test_an_http_trigger_is_defined_with_its_invoke_url(server: LiveServer, sdk: Any) -> None:
    create_function(sdk, "web", REPORTER_CODE)
    created = http_trigger(sdk, urn("web"), "/hello", invocation_type="sync")
    assert created.trigger_type_code == "APIG"
    assert created.event_data.invoke_url == f"{server.url}/apig/{PROJECT}/hello"
    assert created.event_data.func_info.invocation_type == "sync"
    assert fss_error(lambda: http_trigger(sdk, urn("web"), "/hello", "ANY")) == (409, "FSS.1147")
    assert http_trigger(sdk, urn("web"), "/hello", "POST").event_data.req_method == "POST"
    for path in ("hello", "/a//b", "/a/../b", "/" + "a" * 1100):
        assert fss_error(lambda p=path: http_trigger(sdk, urn("web"), p)) == (400, "FSS.1107")
    assert fss_error(lambda: http_trigger(sdk, urn("web"), "/t", timeout=0)) == (400, "FSS.1107")


def test_the_project_wide_list_names_each_triggers_function(raw: RawApi, sdk: Any) -> None:
    create_function(sdk, "listed", REPORTER_CODE)
    created = timer(sdk, urn("listed"), schedule="0 0 12 * * *")
    http_trigger(sdk, urn("listed"), "/listed")
    answer = raw.call("GET", f"/v2/{PROJECT}/fgs/triggers", params={"maxitems": "1"})
    assert answer.status_code == 200, answer.text
    page = answer.json()
    assert page["count"] == 2 and page["next_marker"] == 1
    assert page["triggers"][0]["trigger_id"] == created.trigger_id
    assert page["triggers"][0]["func_urn"] == urn("listed")
    second = raw.call("GET", f"/v2/{PROJECT}/fgs/triggers", params={"marker": "1"}).json()
    assert [t["trigger_type_code"] for t in second["triggers"]] == ["APIG"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("auth", "APP"),
        ("match_mode", "REGEX"),
        ("req_method", "TRACE"),
        ("name", "9api"),
        ("invocation_type", "later"),
        ("timeout", 60_001),
    ],
)
def test_an_http_trigger_field_openfgs_cannot_serve_is_fss_1107(
    raw: RawApi, sdk: Any, field: str, value: Any
) -> None:
    create_function(sdk, "webbad", REPORTER_CODE)
    data: dict[str, Any] = {
        "name": "api_bad",
        "path": "/bad",
        "req_method": "GET",
        "match_mode": "NORMAL",
        "auth": "NONE",
        "func_info": {"invocation_type": "sync", "timeout": 5000},
    }
    if field in ("invocation_type", "timeout"):
        data["func_info"][field] = value
    else:
        data[field] = value
    body = {"trigger_type_code": "APIG", "event_data": data}
    path = function_path(urn("webbad")).replace("/fgs/functions/", "/fgs/triggers/")
    answer = raw.call("POST", path, content=json.dumps(body).encode())
    assert answer.status_code == 400 and answer.json()["error_code"] == "FSS.1107", answer.text


def test_a_trigger_status_is_active_or_disabled(raw: RawApi, sdk: Any) -> None:
    create_function(sdk, "status", REPORTER_CODE)
    assert fss_error(lambda: timer(sdk, urn("status"), status="PAUSED")) == (400, "FSS.0400")
    created = timer(sdk, urn("status"), schedule="0 0 12 * * *")
    update = UpdateTriggerRequest(
        function_urn=urn("status"),
        trigger_type_code="TIMER",
        trigger_id=created.trigger_id,
        body=UpdateTriggerRequestBody(trigger_status="PAUSED"),
    )
    assert fss_error(lambda: sdk.update_trigger(update)) == (400, "FSS.0400")
    wrong_type = ShowFunctionTriggerRequest(
        function_urn=urn("status"), trigger_type_code="APIG", trigger_id=created.trigger_id
    )
    assert fss_error(lambda: sdk.show_function_trigger(wrong_type)) == (404, "FSS.1131")
