"""Authentication an attacker can neither exhaust nor brute-force.

Bounded tables whatever keys and tokens arrive, malformed access keys refused before any
lookup, access keys locked after repeated failures (and unlocked by time alone), the token
endpoint limited per client address, and no short secret keys. Time is a clock the tests move:
the server's Authenticator is rebuilt around it, so nothing here sleeps.
"""

from __future__ import annotations

import asyncio
import secrets
import string
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkfunctiongraph.v2 import ListFunctionsRequest

from openfgs.auth.limits import AuthLimits
from openfgs.auth.service import Authenticator
from openfgs.errors import ConfigError
from openfgs.models import Credential
from openfgs.services import Services
from openfgs.store import create_store
from tests.support import (
    CREDENTIAL,
    OTHER,
    PROJECT,
    LiveServer,
    ServerFactory,
    make_settings,
    sdk_client,
    token_body,
    urn,
)

from .conftest import RawApi, function_path

FUNCTIONS = f"/v2/{PROJECT}/fgs/functions"
TABLE = 40  # entries of each authentication table in these tests
LOCKOUT = 300.0
WINDOW = 60.0
WRONG = Credential(PROJECT, CREDENTIAL.access_key, "wrong" + CREDENTIAL.secret_key[5:])
ALNUM = string.ascii_letters + string.digits


class Clock:
    """The Authenticator's clock; tests move it forward by hand."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def serve(make_server: ServerFactory, clock: Clock) -> ServerFactory:
    """Start a server with these settings (over the test defaults and the small tables here)
    whose Authenticator reads ``clock``."""

    def start(**overrides: Any) -> LiveServer:
        limits = {
            "auth_table_entries": TABLE,
            "auth_lockout_seconds": LOCKOUT,
            "auth_failure_window_seconds": WINDOW,
        }
        live = make_server(**{**limits, **overrides})
        settings = live.settings
        live.services.auth = Authenticator(
            live.services.store,
            skew_seconds=settings.signature_skew_seconds,
            token_ttl_seconds=settings.token_ttl_seconds,
            limits=AuthLimits.from_settings(settings),
            clock=clock,
        )
        return live

    return start


@pytest.fixture
def server(serve: ServerFactory) -> LiveServer:
    return serve()


def random_key(length: int) -> str:
    return "".join(secrets.choice(ALNUM) for _ in range(length))


def with_access_key(raw: RawApi, access_key: str) -> httpx.Request:
    """A request signed correctly, then given another ``Access=`` value."""
    request = raw.build("GET", FUNCTIONS)
    _, rest = request.headers["Authorization"].split(" Access=", 1)
    _, rest = rest.split(",", 1)
    value = f"SDK-HMAC-SHA256 Access={access_key},{rest}".encode()
    headers = [(k, v) for k, v in request.headers.raw if k.lower() != b"authorization"]
    return httpx.Request("GET", request.url, headers=[*headers, (b"Authorization", value)])


def error_of(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.json()["error_code"]


def sizes(server: LiveServer) -> dict[str, int]:
    return server.services.auth.table_sizes()


def fail_signatures(raw: RawApi, times: int, credential: Credential = WRONG) -> None:
    for _ in range(times):
        assert error_of(raw.call("GET", FUNCTIONS, credential=credential)) == (401, "APIGW.0301")


def post_token(server: LiveServer, client: httpx.Client | None = None, **kwargs: Any) -> Any:
    http = client or httpx.Client(timeout=30)
    try:
        return http.post(f"{server.url}/v3/auth/tokens", json=token_body(**kwargs))
    finally:
        if client is None:
            http.close()


# -- nothing grows without bound ------------------------------------------------------------


@pytest.mark.parametrize(
    "access_key",
    [
        pytest.param(lambda: random_key(8 * 1024), id="8KB"),
        pytest.param(lambda: random_key(129), id="129-chars"),
        pytest.param(lambda: "AK-" + random_key(17), id="dash"),
        pytest.param(lambda: "ÄK" + random_key(18), id="non-ascii"),
    ],
)
def test_a_malformed_access_key_is_refused_before_any_lookup(
    server: LiveServer, raw: RawApi, access_key: Callable[[], str]
) -> None:
    for _ in range(30):
        response = raw.send(with_access_key(raw, access_key()))

        assert error_of(response) == (401, "APIGW.0301")
        assert "verify aksk signature fail" in response.json()["error_msg"]

    assert sizes(server) == {"credentials": 0, "tokens": 0, "failures": 0, "token_clients": 0}


def test_the_longest_well_formed_access_key_is_looked_up(server: LiveServer, raw: RawApi) -> None:
    response = raw.send(with_access_key(raw, random_key(128)))

    assert error_of(response) == (401, "APIGW.0301")
    assert sizes(server)["credentials"] == 1


def test_many_distinct_access_keys_leave_bounded_tables(server: LiveServer, raw: RawApi) -> None:
    for _ in range(3 * TABLE):
        assert raw.send(with_access_key(raw, random_key(128))).status_code == 401

    assert 0 < sizes(server)["credentials"] <= TABLE
    assert 0 < sizes(server)["failures"] <= TABLE
    assert raw.call("GET", FUNCTIONS).status_code == 200


@pytest.mark.parametrize("length", [60, 8 * 1024])
def test_many_distinct_tokens_leave_a_bounded_cache(server: LiveServer, length: int) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for _ in range(3 * TABLE):
            token = "MII" + random_key(length)
            response = http.get(FUNCTIONS, headers={"X-Auth-Token": token})
            assert error_of(response) == (403, "FSS.0403")

    expected = range(1, TABLE + 1) if length < 256 else range(0, 1)
    assert sizes(server)["tokens"] in expected


# -- access keys lock after repeated failures ----------------------------------------------


def test_failed_signatures_lock_the_access_key_even_for_the_right_secret(
    server: LiveServer, raw: RawApi, clock: Clock
) -> None:
    fail_signatures(raw, 5)

    locked = raw.call("GET", FUNCTIONS)
    other = raw.call("GET", f"/v2/{OTHER.project_id}/fgs/functions", credential=OTHER)

    assert error_of(locked) == (401, "APIGW.0301")
    assert "locked" in locked.json()["error_msg"]
    assert int(locked.headers["Retry-After"]) == LOCKOUT
    assert other.status_code == 200  # only the guessed key is locked
    with pytest.raises(ClientRequestException) as info:
        sdk_client(server.url).list_functions(ListFunctionsRequest())
    assert (info.value.status_code, info.value.error_code) == (401, "APIGW.0301")

    clock.now += LOCKOUT - 10
    assert int(raw.call("GET", FUNCTIONS).headers["Retry-After"]) == 10
    clock.now += 10
    assert raw.call("GET", FUNCTIONS).status_code == 200


def test_the_lock_holds_on_the_fast_routes_too(server: LiveServer, raw: RawApi) -> None:
    fail_signatures(raw, 5)
    path = function_path(urn("hello"), "/async-invocations")

    response = raw.call("GET", path)

    assert error_of(response) == (401, "APIGW.0301")
    assert "Retry-After" in response.headers


def test_failures_spread_beyond_the_window_do_not_lock(raw: RawApi, clock: Clock) -> None:
    fail_signatures(raw, 4)
    clock.now += WINDOW
    fail_signatures(raw, 4)

    assert raw.call("GET", FUNCTIONS).status_code == 200


def test_a_success_forgets_the_failures_before_it(raw: RawApi) -> None:
    fail_signatures(raw, 4)
    assert raw.call("GET", FUNCTIONS).status_code == 200
    fail_signatures(raw, 4)

    assert raw.call("GET", FUNCTIONS).status_code == 200


def test_failures_of_made_up_keys_cannot_push_a_lock_out(server: LiveServer, raw: RawApi) -> None:
    fail_signatures(raw, 5)
    for _ in range(3 * TABLE):
        unknown = Credential(PROJECT, random_key(20), CREDENTIAL.secret_key)
        fail_signatures(raw, 1, unknown)

    assert sizes(server)["failures"] <= TABLE + 1
    assert error_of(raw.call("GET", FUNCTIONS)) == (401, "APIGW.0301")


def test_a_made_up_key_locks_like_a_real_one(raw: RawApi) -> None:
    unknown = Credential(PROJECT, "NOSUCHACCESSKEY00001", CREDENTIAL.secret_key)
    fail_signatures(raw, 5, unknown)

    response = raw.call("GET", FUNCTIONS, credential=unknown)

    assert error_of(response) == (401, "APIGW.0301")
    assert "locked" in response.json()["error_msg"]


@pytest.mark.parametrize("method", ["password", "hw_ak_sk"])
def test_wrong_passwords_lock_the_key_for_tokens_and_signatures(
    server: LiveServer, raw: RawApi, clock: Clock, method: str
) -> None:
    for _ in range(5):
        wrong = post_token(server, secret_key="not-the-secret-key", method=method)
        assert error_of(wrong) == (401, "APIGW.0301")

    refused = post_token(server, method=method)
    signed = raw.call("GET", FUNCTIONS)

    assert error_of(refused) == (401, "APIGW.0301")
    assert "X-Subject-Token" not in refused.headers
    assert int(refused.headers["Retry-After"]) == LOCKOUT
    assert error_of(signed) == (401, "APIGW.0301")
    clock.now += LOCKOUT
    assert post_token(server, method=method).status_code == 201


def test_the_threshold_is_a_setting(serve: ServerFactory, clock: Clock) -> None:
    server = serve(auth_max_failures=8)
    raw = RawApi(server.url)
    try:
        fail_signatures(raw, 7)
        assert raw.call("GET", FUNCTIONS).status_code == 200
        fail_signatures(raw, 8)
        assert error_of(raw.call("GET", FUNCTIONS)) == (401, "APIGW.0301")
    finally:
        raw.close()


# -- the token endpoint per client ---------------------------------------------------------


def test_token_requests_are_limited_per_client_address(serve: ServerFactory, clock: Clock) -> None:
    server = serve(auth_token_requests_per_minute=3)
    here = httpx.Client(timeout=30)
    elsewhere = httpx.Client(timeout=30, transport=httpx.HTTPTransport(local_address="127.0.0.2"))
    try:
        assert post_token(server, here).status_code == 201
        assert post_token(server, here, secret_key="not-the-secret-key").status_code == 401
        assert post_token(server, here, access_key="NOSUCHACCESSKEY00001").status_code == 401
        clock.now += 20

        limited = post_token(server, here)
        from_elsewhere = post_token(server, elsewhere)

        assert error_of(limited) == (429, "FSS.0429")
        assert "X-Subject-Token" not in limited.headers
        assert int(limited.headers["Retry-After"]) == 40
        assert from_elsewhere.status_code == 201
        clock.now += 40
        assert post_token(server, here).status_code == 201
        assert sizes(server)["token_clients"] == 2
    finally:
        here.close()
        elsewhere.close()


def test_the_client_table_stays_bounded(serve: ServerFactory) -> None:
    server = serve(auth_token_requests_per_minute=1, auth_table_entries=2)
    clients = [
        httpx.Client(timeout=30, transport=httpx.HTTPTransport(local_address=f"127.0.0.{n}"))
        for n in range(2, 6)
    ]
    try:
        for client in clients:
            assert post_token(server, client).status_code == 201

        assert sizes(server)["token_clients"] == 2
    finally:
        for client in clients:
            client.close()


# -- no short secret keys ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("credential", "refused"),
    [
        (Credential(PROJECT, "SHORTSECRETKEY000001", "s" * 15), "at least 16 characters"),
        (Credential(PROJECT, "BAD-ACCESS-KEY", "s" * 40), "letters and digits"),
        (Credential(PROJECT, "A" * 129, "s" * 40), "letters and digits"),
    ],
)
def test_a_weak_or_malformed_credential_is_not_created(
    tmp_path: Path, credential: Credential, refused: str
) -> None:
    async def attempt() -> tuple[str, Credential | None]:
        store = create_store(make_settings(tmp_path))
        await store.open()
        try:
            auth = Authenticator(store, skew_seconds=900, token_ttl_seconds=60)
            with pytest.raises(ConfigError) as info:
                await auth.ensure_credential(credential)
            return str(info.value), await store.get_credential(credential.access_key[:128])
        finally:
            await store.close()

    message, stored = asyncio.run(attempt())

    assert refused in message
    assert stored is None


def test_a_sixteen_character_secret_key_is_enough(tmp_path: Path) -> None:
    credential = Credential(PROJECT, "SIXTEENSECRETKEY0001", "s" * 16)

    async def attempt() -> bool:
        store = create_store(make_settings(tmp_path))
        await store.open()
        try:
            auth = Authenticator(store, skew_seconds=900, token_ttl_seconds=60)
            return await auth.ensure_credential(credential)
        finally:
            await store.close()

    assert asyncio.run(attempt()) is True


def test_serve_refuses_a_short_secret_key_from_the_settings(tmp_path: Path) -> None:
    # A database URL of its own: no data-dir lock to release after the refused start.
    settings = make_settings(
        tmp_path / "data", database_url=f"sqlite:///{tmp_path}/db.sqlite", secret_key="too-short"
    )
    services = Services.build(settings)

    async def start() -> str:
        try:
            with pytest.raises(ConfigError) as info:
                await services.start()
            return str(info.value)
        finally:  # a refused start stops nothing itself: the process that tried it exits
            await services.pool.close()
            await services.store.close()

    assert "at least 16 characters" in asyncio.run(start())
