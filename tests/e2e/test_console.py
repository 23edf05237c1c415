"""The web console in a real headless Chromium, against a live server on loopback.

Functions and records are made through the official SDK (and WAIT rows the worker never
claims, inserted into the store); the browser only uses the console. Chromium is Debian's
(``/usr/bin/chromium``), driven by Playwright; under CI (``CI=true``) a missing browser fails
these tests instead of skipping them.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from huaweicloudsdkfunctiongraph.v2 import (
    AsyncInvokeFunctionRequest,
    CreateFunctionTriggerRequest,
    CreateFunctionTriggerRequestBody,
    CreateFunctionVersionRequest,
    CreateFunctionVersionRequestBody,
    CreateVersionAliasRequest,
    CreateVersionAliasRequestBody,
    TriggerEventDataRequestBody,
)

from openfgs.models import Status
from tests.api.conftest import (
    insert_records,
)
from tests.api.test_statistics_async import Record, write
from tests.support import (
    CREDENTIAL,
    PROJECT,
    REPORTER_CODE,
    LiveServer,
    create_function,
    live_server,
    make_settings,
    sdk_client,
    token_body,
    urn,
    wait_for_terminal_record,
)

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 15_000
WAITING = 25  # WAIT records of the function "waiter": more than one page of 20
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
STATUS_CHART = 'figure[data-chart="Invocations per status"]'
HOSTILE = "<img src=x onerror=alert(1)>"
# Chromium reports every non-2xx answer to fetch() on the console; those are the API's
# answers the page shows (a wrong key, statistics not there yet), not script errors.
NETWORK_NOTE = re.compile(r"^Failed to load resource: the server responded with a status of")

sync_api: Any = None
try:
    from playwright import sync_api
except ImportError:  # pragma: no cover - the test extra installs it
    pass


def _require_browser() -> None:
    missing = []
    if sync_api is None:
        missing.append("playwright")
    if not Path(CHROMIUM).exists():
        missing.append(CHROMIUM)
    if missing:
        message = "the console tests need " + " and ".join(missing)
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    _require_browser()
    # Auto-refresh runs every 5 s: waits are longer than that, and end as soon as they hold.
    sync_api.expect.set_options(timeout=WAIT_MS)
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@dataclass
class Seeded:
    """The module's server and what was made on it before the tests."""

    server: LiveServer
    starts: list[int]  # of the waiter's WAIT records, newest first (ms)
    waiting: list[str]  # their request ids
    failed: str  # the reporter's FAIL record, its message holding HOSTILE

    @property
    def url(self) -> str:
        return self.server.url


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    """One server for the module, with the functions and records the tests look at."""
    _require_browser()
    with live_server(make_settings(tmp_path_factory.mktemp("console") / "data")) as server:
        yield _seed(server)


def _seed(server: LiveServer) -> Seeded:
    sdk = sdk_client(server.url)
    create_function(sdk, "waiter")
    now_ms = int(time.time() * 1000)
    starts = [now_ms - i * 120_000 for i in range(WAITING)]
    waiting = insert_records(server, "waiter", starts)
    create_function(sdk, "refreshed")
    publish(sdk, "published")
    create_function(sdk, "reporter", REPORTER_CODE)
    answer = sdk.async_invoke_function(
        AsyncInvokeFunctionRequest(function_urn=urn("reporter"), body={"html": HOSTILE})
    )
    wait_for_terminal_record(sdk, urn("reporter"), answer.request_id)
    return Seeded(server, starts, waiting, answer.request_id)


def publish(sdk: Any, name: str) -> None:
    """A function with a version v1, an alias prod on it and a (disabled) daily timer."""
    create_function(sdk, name)
    body = CreateFunctionVersionRequestBody(version="v1", description="first release")
    sdk.create_function_version(CreateFunctionVersionRequest(function_urn=urn(name), body=body))
    alias = CreateVersionAliasRequestBody(name="prod", version="v1")
    sdk.create_version_alias(
        CreateVersionAliasRequest(function_urn=urn(name, qualifier=None), body=alias)
    )
    data = TriggerEventDataRequestBody(name="daily", schedule_type="Cron", schedule="0 0 12 * * *")
    trigger = CreateFunctionTriggerRequestBody(
        trigger_type_code="TIMER", trigger_status="DISABLED", event_data=data
    )
    sdk.create_function_trigger(CreateFunctionTriggerRequest(function_urn=urn(name), body=trigger))


@pytest.fixture
def new_page(browser: Any) -> Iterator[Callable[..., Any]]:
    """Opens pages in fresh browser contexts; fails the test on any script or console error."""
    contexts: list[Any] = []
    problems: list[str] = []

    def opened(**options: Any) -> Any:
        context = browser.new_context(**{"viewport": DESKTOP, **options})
        contexts.append(context)
        tab = context.new_page()
        tab.on("pageerror", lambda error: problems.append(f"pageerror: {error}"))
        tab.on(
            "console",
            lambda message: (
                problems.append(f"console {message.type}: {message.text}")
                if message.type == "error" and not NETWORK_NOTE.match(message.text)
                else None
            ),
        )
        tab.set_default_timeout(WAIT_MS)
        return tab

    yield opened
    for context in contexts:
        context.close()
    assert not problems, problems


@pytest.fixture
def page(new_page: Callable[..., Any]) -> Any:
    return new_page()


def screenshot(page: Any, name: str, tmp_path: Path) -> None:
    """Save a screenshot; into ``$CONSOLE_SCREENSHOTS`` too when set (docs/console/)."""
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=True)
    target = os.environ.get("CONSOLE_SCREENSHOTS")
    if target:
        shutil.copy(path, Path(target) / name)


def sign_in(page: Any, secret_key: str = CREDENTIAL.secret_key) -> None:
    page.get_by_label("Project ID").fill(CREDENTIAL.project_id)
    page.get_by_label("Access key").fill(CREDENTIAL.access_key)
    page.get_by_label("Secret key").fill(secret_key)
    page.get_by_role("button", name="Sign in").click()


def records_url(live: Seeded, name: str, query: str = "") -> str:
    return f"{live.url}/console/functions/{name}/async-invocations{query}"


def rows(page: Any) -> Any:
    return page.locator("tr[data-request-id]")


def card(page: Any, title: str) -> Any:
    """The section of a page under the heading ``title``."""
    heading = page.get_by_role("heading", name=title, exact=True)
    return page.locator("section").filter(has=heading)


def expect(target: Any) -> Any:
    return sync_api.expect(target)


def test_the_console_is_served_with_a_strict_policy(server: LiveServer) -> None:
    """Served by every API node without a credential; no browser needed here."""
    live = server
    for path in ("/console", "/console/", "/console/functions/waiter/async-invocations"):
        answer = httpx.get(live.url + path, timeout=10)
        assert answer.status_code == 200, path
        assert answer.headers["content-type"].startswith("text/html")
        policy = answer.headers["content-security-policy"]
        assert "default-src 'self'" in policy and "script-src 'self'" in policy
        assert "unsafe-inline" not in policy
        assert answer.headers["cache-control"] == "no-cache"
        assert "<script" in answer.text and "<script>" not in answer.text  # no inline script
    script = httpx.get(live.url + "/console/assets/app.js", timeout=10)
    assert script.headers["content-type"].startswith("text/javascript")
    assert "innerHTML" not in script.text
    again = httpx.get(
        live.url + "/console/assets/app.js",
        headers={"If-None-Match": script.headers["etag"]},
        timeout=10,
    )
    assert again.status_code == 304
    css = httpx.get(live.url + "/console/assets/app.css", timeout=10)
    assert css.headers["content-type"].startswith("text/css")
    missing = httpx.get(live.url + "/console/assets/index.py", timeout=10)
    assert missing.status_code == 404
    assert missing.json()["error_code"] == "FSS.0404"


def test_a_wrong_secret_key_shows_the_fss_message(page: Any, live: Seeded) -> None:
    wrong = "not-the-secret-key-0000000000"
    answer = httpx.post(
        f"{live.url}/v3/auth/tokens", json=token_body(secret_key=wrong), timeout=10
    ).json()
    page.goto(f"{live.url}/console")
    sign_in(page, secret_key=wrong)
    expect(page.locator("#error")).to_have_text(f"{answer['error_code']}: {answer['error_msg']}")
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0


def test_functions_and_a_function_page(page: Any, live: Seeded, tmp_path: Path) -> None:
    page.goto(f"{live.url}/console")
    sign_in(page)
    row = page.locator("tr", has_text="waiter")
    expect(row).to_contain_text("Python3.9")
    expect(row).to_contain_text("128 MB")
    page.locator("tr", has_text="published").get_by_role("link", name="published").click()
    expect(page).to_have_url(re.compile(r"/console/functions/published$"))
    for title in ("Configuration", "Async invoke config", "Versions", "Aliases", "Triggers"):
        expect(page.get_by_role("heading", name=title)).to_be_visible()
    expect(card(page, "Configuration")).to_contain_text("index.handler")
    versions = card(page, "Versions").locator("tbody tr")
    expect(versions).to_have_count(2)
    expect(versions).to_contain_text(["latest", "v1"])
    aliases = card(page, "Aliases").locator("tbody tr")
    expect(aliases).to_contain_text(["prod"])
    triggers = card(page, "Triggers").locator("tbody tr")
    expect(triggers).to_have_count(1)
    expect(triggers.first).to_contain_text("TIMER")
    expect(triggers.first).to_contain_text("DISABLED")
    expect(triggers.first).to_contain_text("0 0 12 * * *")
    screenshot(page, "function-desktop.png", tmp_path)
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('openfgs.console.session')") is None


def test_async_invocations_find_filter_page_stop_and_detail(
    page: Any, live: Seeded, tmp_path: Path
) -> None:
    waiting = live.waiting
    page.goto(records_url(live, "waiter"))
    sign_in(page)
    # The deep link opens its view after sign-in: newest first, 20 a page, the total count.
    expect(rows(page)).to_have_count(20)
    expect(page.get_by_test_id("count")).to_have_text(f"1–20 of {WAITING}")
    expect(rows(page).first).to_have_attribute("data-request-id", waiting[0])
    chart = page.locator(f"{STATUS_CHART} svg rect")
    expect(chart.first).to_be_visible()
    assert chart.count() > 0
    screenshot(page, "async-invocations-desktop.png", tmp_path)

    page.get_by_role("button", name="Next").click()
    expect(page.get_by_test_id("count")).to_have_text(f"21–{WAITING} of {WAITING}")
    expect(rows(page)).to_have_count(WAITING - 20)
    expect(rows(page).last).to_have_attribute("data-request-id", waiting[-1])

    # Find one record by its request id and stop it.
    target = waiting[3]
    page.get_by_label("Request ID", exact=True).fill(target)
    page.get_by_role("button", name="Apply").click()
    expect(rows(page)).to_have_count(1)
    expect(page.get_by_test_id("count")).to_have_text("1–1 of 1")
    row = rows(page).first
    expect(row).to_contain_text("WAIT")
    row.get_by_role("button", name="Stop").click()
    expect(page.locator("#notice")).to_contain_text(f"Stopped {target}")
    expect(row).to_contain_text("DISCARD")
    expect(row).to_contain_text("4208")
    expect(row.get_by_role("button", name="Re-run")).to_be_visible()

    # Filter by status: the stopped record alone is DISCARD; the rest still wait.
    page.get_by_label("Request ID", exact=True).fill("")
    page.get_by_label("Status", exact=True).select_option("DISCARD")
    page.get_by_role("button", name="Apply").click()
    expect(rows(page)).to_have_count(1)
    expect(rows(page).first).to_have_attribute("data-request-id", target)
    page.get_by_label("Status", exact=True).select_option("WAIT")
    page.get_by_label("Time range", exact=True).select_option("1d")
    page.get_by_role("button", name="Apply").click()
    expect(page.get_by_test_id("count")).to_have_text(f"1–20 of {WAITING - 1}")
    page.go_back()
    expect(rows(page)).to_have_count(1)

    # The detail: every attempt, with its outcome and error.
    rows(page).first.get_by_role("link", name=target).click()
    expect(page).to_have_url(re.compile(f"/async-invocations/{target}$"))
    attempts = card(page, "Attempts").locator("tbody tr")
    expect(attempts).to_have_count(1)
    expect(attempts.first).to_contain_text("DISCARD")
    expect(attempts.first).to_contain_text("function invocation canceled")
    screenshot(page, "detail-desktop.png", tmp_path)


def test_an_attacker_written_message_is_shown_as_text_and_rerun(
    page: Any, live: Seeded, tmp_path: Path
) -> None:
    failed = live.failed
    page.goto(records_url(live, "reporter", "?status=FAIL&range=1d"))
    sign_in(page)
    row = page.locator(f'tr[data-request-id="{failed}"]')
    expect(row).to_contain_text(HOSTILE)
    assert page.locator("main img").count() == 0
    row.get_by_role("link", name=failed).click()
    expect(page.locator("pre.text")).to_contain_text(HOSTILE)
    assert page.locator("main img").count() == 0
    page.get_by_role("button", name="Re-run").click()
    expect(page.locator("#notice")).to_contain_text(f"Re-run of {failed} queued as")


def test_phone_width(new_page: Callable[..., Any], live: Seeded, tmp_path: Path) -> None:
    phone = new_page(viewport=PHONE, is_mobile=True, has_touch=True)
    phone.goto(records_url(live, "waiter", "?status=WAIT"))
    sign_in(phone)
    expect(rows(phone).first).to_be_visible()
    expect(phone.locator(f"{STATUS_CHART} svg rect").first).to_be_attached()
    # The page itself never scrolls sideways; only a wide table scrolls inside its frame.
    width = phone.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], width
    screenshot(phone, "async-invocations-phone.png", tmp_path)


def test_a_custom_window(page: Any, live: Seeded) -> None:
    waiting, starts = live.waiting, live.starts
    page.goto(records_url(live, "waiter"))
    sign_in(page)
    expect(rows(page).first).to_be_visible()
    page.get_by_label("Time range", exact=True).select_option("custom")
    seconds = [time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) for ms in starts]
    page.get_by_label("From (UTC)", exact=True).fill(seconds[9])
    page.get_by_label("To (UTC)", exact=True).fill(seconds[5])
    page.get_by_role("button", name="Apply").click()
    expect(page.get_by_test_id("count")).to_have_text("1–5 of 5")
    expect(rows(page).first).to_have_attribute("data-request-id", waiting[5])
    expect(rows(page).last).to_have_attribute("data-request-id", waiting[9])
    # The charts cover the same window: its five records, each in its minute.
    expect(page.locator(f"{STATUS_CHART} svg rect")).to_have_count(5)


def test_auto_refresh_shows_new_records(page: Any, live: Seeded) -> None:
    page.goto(records_url(live, "refreshed"))
    sign_in(page)
    expect(page.get_by_text("No invocations match.")).to_be_visible()
    page.get_by_label(re.compile("Auto-refresh")).check()
    [request_id] = insert_records(live.server, "refreshed", [int(time.time() * 1000)])
    expect(page.locator(f'tr[data-request-id="{request_id}"]')).to_be_visible()
    expect(page.locator(f'tr[data-request-id="{request_id}"]')).to_be_visible()


def test_charts_draw_the_async_series(page: Any, live: Seeded, tmp_path: Path) -> None:
    """Each chart from the async series: records of the last hour in three runs of minutes."""
    sdk = sdk_client(live.url)
    create_function(sdk, "charted")
    server = live.server
    function = server.run(server.services.registry.resolve(PROJECT, urn("charted")))
    base = int(time.time() * 1000) // 60_000 * 60_000
    minutes = [50, 49, 30, 10, 9, 8]  # ago: runs of two, one and three buckets
    records = [
        Record(base - m * 60_000 + 1_000 + j, 3 + j * j + m // 10, 40 + 12 * j * j + m)
        for m in minutes
        for j in range(10)
    ]
    records.append(Record(base - 30 * 60_000 + 2_000, 9, 30, Status.FAIL, 4200))
    records.append(Record(base - 10 * 60_000 + 2_000, status=None))  # left waiting
    write(server, function.id, records)

    page.goto(records_url(live, "charted"))
    sign_in(page)
    expect(page.locator(f"{STATUS_CHART} svg rect.bar-SUCCESS")).to_have_count(len(minutes))
    for title, name in (("Dispatch time (ms)", "dispatch"), ("Run time (ms)", "run")):
        chart = page.locator(f'figure[data-chart="{title}"]')
        for p in ("p50", "p90", "p99"):
            # A gap between the runs: two lines and a dot for each percentile.
            expect(chart.locator(f'polyline[data-series="{name} {p}"]')).to_have_count(2)
            expect(chart.locator(f'circle[data-series="{name} {p}"]')).to_have_count(1)
            points = chart.locator(f'[data-series="{name} {p}"]').evaluate_all(
                "marks => marks.map((m) => Number(m.dataset.points))"
            )
            assert sorted(points) == [1, 2, 3], (title, p, points)
    waiting = page.locator('figure[data-chart="Waiting depth"] polyline[data-series="waiting"]')
    expect(waiting).to_have_count(1)
    expect(waiting).to_have_attribute("data-points", "61")  # every minute the hour touches
    expect(page.locator(f"{STATUS_CHART} svg rect.bar-WAIT")).to_have_count(1)
    screenshot(page, "charts-desktop.png", tmp_path)


def test_charts_of_waiting_records(page: Any, live: Seeded) -> None:
    page.goto(records_url(live, "waiter"))
    sign_in(page)
    # One bucket each (they are two minutes apart); one may have been stopped by another test.
    expect(page.locator(f"{STATUS_CHART} svg rect")).to_have_count(WAITING)
    assert page.locator(f"{STATUS_CHART} svg rect.bar-WAIT").count() >= WAITING - 1
    depth = page.locator('figure[data-chart="Waiting depth"] polyline[data-series="waiting"]')
    expect(depth).to_have_attribute("data-points", "61")
    last = depth.evaluate("line => line.points[line.points.numberOfItems - 1].y")
    assert last < depth.evaluate("line => line.points[0].y")  # more wait now than an hour ago
    for title in ("Dispatch time (ms)", "Run time (ms)"):  # none ran: axes, no marks
        chart = page.locator(f'figure[data-chart="{title}"]')
        expect(chart.locator("svg")).to_be_visible()
        assert chart.locator("[data-series]").count() == 0


def test_charts_without_the_async_series(page: Any, live: Seeded) -> None:
    """A server without the extension (404 FSS.0404): the panels say so, the records show."""
    body = {"error_code": "FSS.0404", "error_msg": "not found"}
    page.route(
        re.compile(r".*/openfgs-statistics/\d+.*"),
        lambda route: route.fulfill(status=404, json=body),
    )
    page.goto(records_url(live, "waiter"))
    sign_in(page)
    expect(rows(page).first).to_be_visible()
    expect(page.locator("figure.chart .unavailable")).to_have_count(4)


def test_a_refused_token_signs_out_with_the_reason(page: Any, live: Seeded) -> None:
    page.goto(records_url(live, "waiter"))
    sign_in(page)
    expect(rows(page).first).to_be_visible()
    page.evaluate(
        """() => {
            const key = "openfgs.console.session";
            const saved = JSON.parse(sessionStorage.getItem(key));
            sessionStorage.setItem(key, JSON.stringify({...saved, token: "revoked"}));
        }"""
    )
    page.reload()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    expect(page.locator("#error")).to_contain_text("FSS.0403")
