"""Access-token verification rules, the JWKS cache, and `authenticate`: credentials (a bad
second one refused) then permissions."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import fakeredis
import jwt
import pytest

from services.platform.core.contracts import OperationInfo
from services.platform.core.problems import Problem, unauthorized
from services.platform.core.scope import Principal
from services.platform.http.security import (
    JwksKeySource,
    TokenVerifier,
    authenticate,
    parse_jwks,
)
from tests.platform.fixtures.support import AUDIENCE, ISSUER, JWKS_URL, JwksEndpoint, SigningKey


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey.generate("key-1")


@pytest.fixture(scope="module")
def other_key() -> SigningKey:
    return SigningKey.generate("key-2")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def verifier(source: Any, redis: fakeredis.FakeAsyncRedis | None = None) -> TokenVerifier:
    blacklist = redis or fakeredis.FakeAsyncRedis(decode_responses=True)

    async def is_revoked(jti: str) -> bool:
        return bool(await blacklist.exists(f"erp:auth:blacklist:{jti}"))

    return TokenVerifier(source, issuer=ISSUER, audience=AUDIENCE, is_revoked=is_revoked)


def jwks(*keys: SigningKey, **options: float) -> tuple[JwksEndpoint, JwksKeySource, Clock]:
    endpoint, clock = JwksEndpoint(*keys), Clock()
    return endpoint, JwksKeySource(JWKS_URL, endpoint.client(), clock=clock, **options), clock


async def rejected(tokens: TokenVerifier, token: str) -> str:
    """The detail of the 401 that refuses `token`."""
    with pytest.raises(Problem) as raised:
        await tokens.verify(token)
    assert raised.value.status == 401
    assert raised.value.headers["WWW-Authenticate"] == "Bearer"
    return str(raised.value.detail)


async def test_a_valid_token_gives_the_principal(key: SigningKey) -> None:
    _, source, _ = jwks(key)
    token = key.token(subject="u-1", permissions=["a.b.view"], roles=["admin"], jti="j-1")

    principal = await verifier(source).verify(token)

    assert principal.subject == "u-1"
    assert principal.kind == "user"
    assert principal.permissions == frozenset({"a.b.view"})
    assert principal.roles == ("admin",)
    assert principal.token_id == "j-1"
    assert principal.expires_at is not None


async def test_an_expired_token_is_refused(key: SigningKey) -> None:
    _, source, _ = jwks(key)
    token = key.token(issued_at=time.time() - 3600, lifetime=900)
    assert "expired" in await rejected(verifier(source), token)


async def test_a_token_issued_in_the_future_is_refused(key: SigningKey) -> None:
    _, source, _ = jwks(key)
    token = key.token(issued_at=time.time() + 600)
    assert "not valid yet" in await rejected(verifier(source), token)


async def test_a_tampered_token_is_refused(key: SigningKey) -> None:
    _, source, _ = jwks(key)
    header, _, signature = key.token(permissions=["x.y.view"]).split(".")
    forged_payload = SigningKey.generate("forger").token(permissions=["*"]).split(".")[1]
    tampered = ".".join([header, forged_payload, signature])
    assert "signature" in await rejected(verifier(source), tampered)


async def test_a_token_signed_by_a_key_outside_the_jwks_is_refused(
    key: SigningKey, other_key: SigningKey
) -> None:
    _, source, _ = jwks(key)
    # Signed with another key but claiming the published kid: the signature check fails.
    impostor = other_key.token(kid=key.kid)
    assert "signature" in await rejected(verifier(source), impostor)
    # Signed with a key whose kid the JWKS does not publish.
    assert "unknown key" in await rejected(verifier(source), other_key.token())


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"issuer": "someone-else"}, "issuer"),
        ({"audience": "another-platform"}, "not meant for"),
        ({"typ": "refresh"}, "not an access token"),
        ({"without": ["jti"]}, "jti"),
        ({"without": ["exp"]}, "exp"),
        ({"without": ["sub"]}, "sub"),
    ],
)
async def test_wrong_or_missing_claims_are_refused(
    key: SigningKey, claims: dict[str, Any], reason: str
) -> None:
    _, source, _ = jwks(key)
    assert reason in await rejected(verifier(source), key.token(**claims))


async def test_a_blacklisted_token_is_refused(key: SigningKey) -> None:
    _, source, _ = jwks(key)
    redis = fakeredis.FakeAsyncRedis(decode_responses=True)
    await redis.set("erp:auth:blacklist:logged-out", "1")
    tokens = verifier(source, redis)

    assert "revoked" in await rejected(tokens, key.token(jti="logged-out"))
    assert (await tokens.verify(key.token(jti="still-valid"))).token_id == "still-valid"


async def test_garbage_and_foreign_algorithms_are_refused(key: SigningKey) -> None:
    _, source, _ = jwks(key)
    tokens = verifier(source)
    assert "malformed" in await rejected(tokens, "not-a-jwt")
    hs256 = jwt.encode({"sub": "x"}, "s" * 32, algorithm="HS256", headers={"kid": key.kid})
    assert "RS256" in await rejected(tokens, hs256)


async def test_the_jwks_is_cached(key: SigningKey) -> None:
    endpoint, source, clock = jwks(key)
    tokens = verifier(source)
    for _ in range(3):
        await tokens.verify(key.token())
    assert endpoint.fetches == 1

    clock.now += 301  # past the TTL: refetched once
    await tokens.verify(key.token())
    assert endpoint.fetches == 2


async def test_a_new_kid_triggers_a_refetch_rotation(
    key: SigningKey, other_key: SigningKey
) -> None:
    endpoint, source, clock = jwks(key)
    tokens = verifier(source)
    await tokens.verify(key.token())

    endpoint.keys.append(other_key)  # auth rotates: the JWKS now has both keys
    clock.now += 10
    assert (await tokens.verify(other_key.token(subject="new"))).subject == "new"
    assert (await tokens.verify(key.token(subject="old"))).subject == "old"
    assert endpoint.fetches == 2


async def test_unknown_kids_cannot_cause_a_refetch_storm(
    key: SigningKey, other_key: SigningKey
) -> None:
    endpoint, source, clock = jwks(key)
    tokens = verifier(source)
    await tokens.verify(key.token())
    clock.now += 10
    for _ in range(20):
        await rejected(tokens, other_key.token())
    assert endpoint.fetches == 2  # one refetch for the first unknown kid, then throttled

    clock.now += 5  # the throttle window has passed: the next unknown kid may refetch
    endpoint.keys.append(other_key)
    await tokens.verify(other_key.token())
    assert endpoint.fetches == 3


async def test_cached_keys_survive_a_failing_jwks(key: SigningKey) -> None:
    endpoint, source, clock = jwks(key)
    tokens = verifier(source)
    await tokens.verify(key.token())
    endpoint.fail = True
    clock.now += 301
    assert (await tokens.verify(key.token(subject="still"))).subject == "still"
    assert endpoint.fetches == 2


# --- single flight: concurrent callers share one fetch ------------------------------------

CALLERS = 64
SLOW = 0.05  # seconds the JWKS takes to answer: every caller arrives while it is in flight


async def all_at_once(source: JwksKeySource, kids: list[str]) -> list[Any]:
    # A bound on the wait: a caller stuck on a fetch fails the test instead of hanging it.
    return await asyncio.wait_for(asyncio.gather(*(source.public_key(k) for k in kids)), 5)


async def test_callers_at_cold_start_all_wait_for_the_one_fetch(key: SigningKey) -> None:
    endpoint, source, _ = jwks(key)
    endpoint.delay = SLOW

    found = await all_at_once(source, [key.kid] * CALLERS)

    assert all(public is not None for public in found)  # no 401 for a valid token
    assert endpoint.fetches == 1


async def test_callers_meeting_a_rotated_key_all_wait_for_the_one_refetch(
    key: SigningKey, other_key: SigningKey
) -> None:
    endpoint, source, clock = jwks(key)
    await source.public_key(key.kid)
    endpoint.keys.append(other_key)  # auth rotated: tokens now carry the new kid
    endpoint.delay = SLOW
    clock.now += 10

    found = await all_at_once(source, [other_key.kid] * CALLERS)

    assert all(public is not None for public in found)
    assert endpoint.fetches == 2


async def test_callers_after_the_ttl_share_one_refetch(key: SigningKey) -> None:
    endpoint, source, clock = jwks(key)
    await source.public_key(key.kid)
    endpoint.delay = SLOW
    clock.now += 301

    found = await all_at_once(source, [key.kid] * CALLERS)

    assert all(public is not None for public in found)
    assert endpoint.fetches == 2


@pytest.mark.parametrize("failure", ["fail", "unreachable"])
async def test_callers_waiting_on_a_failing_fetch_get_none_promptly(
    key: SigningKey, failure: str
) -> None:
    endpoint, source, _ = jwks(key)
    endpoint.delay = SLOW
    setattr(endpoint, failure, True)

    started = time.monotonic()
    found = await all_at_once(source, [key.kid] * CALLERS)

    assert found == [None] * CALLERS
    assert endpoint.fetches == 1
    assert time.monotonic() - started < 1


async def test_a_hanging_jwks_times_out_for_every_waiting_caller(key: SigningKey) -> None:
    endpoint, source, _ = jwks(key, timeout_seconds=0.1)
    endpoint.delay = 30  # auth accepts the connection and never answers

    started = time.monotonic()
    found = await all_at_once(source, [key.kid] * CALLERS)

    assert found == [None] * CALLERS
    assert time.monotonic() - started < 1


async def test_a_failed_refetch_keeps_the_cached_keys_for_concurrent_callers(
    key: SigningKey,
) -> None:
    endpoint, source, clock = jwks(key)
    await source.public_key(key.kid)
    endpoint.delay, endpoint.unreachable = SLOW, True
    clock.now += 301

    found = await all_at_once(source, [key.kid] * CALLERS)

    assert all(public is not None for public in found)
    assert endpoint.fetches == 2


async def test_concurrent_made_up_kids_cause_one_fetch_per_interval(key: SigningKey) -> None:
    endpoint, source, clock = jwks(key)
    await source.public_key(key.kid)
    endpoint.delay = SLOW
    clock.now += 10

    made_up = [f"made-up-{i}" for i in range(CALLERS)]
    assert await all_at_once(source, made_up) == [None] * CALLERS
    assert await all_at_once(source, made_up) == [None] * CALLERS
    assert endpoint.fetches == 2  # one refetch, shared; the second flood is throttled

    clock.now += 5
    assert await all_at_once(source, made_up) == [None] * CALLERS
    assert endpoint.fetches == 3


async def test_a_cancelled_caller_does_not_cancel_the_fetch_others_wait_for(
    key: SigningKey,
) -> None:
    endpoint, source, _ = jwks(key)
    endpoint.delay = SLOW
    leaving = asyncio.create_task(source.public_key(key.kid))
    staying = asyncio.create_task(source.public_key(key.kid))
    await asyncio.sleep(SLOW / 5)
    leaving.cancel()

    assert await asyncio.wait_for(staying, 5) is not None
    assert leaving.cancelled()
    assert endpoint.fetches == 1


async def test_warm_loads_the_keys_once_auth_answers(key: SigningKey) -> None:
    endpoint, source, _ = jwks(key)
    endpoint.unreachable = True
    assert not source.loaded
    assert await source.warm() is False
    assert await source.warm() is False  # warm-up paces itself: not throttled like requests
    assert endpoint.fetches == 2

    endpoint.unreachable = False
    endpoint.delay = SLOW
    warmed, *found = await asyncio.gather(
        source.warm(), *(source.public_key(key.kid) for _ in range(8))
    )
    assert warmed is True
    assert source.loaded
    assert all(public is not None for public in found)
    assert endpoint.fetches == 3  # requests arriving during the warm-up shared its fetch
    assert await source.warm() is True
    assert endpoint.fetches == 3


def test_unusable_jwks_entries_are_skipped(key: SigningKey) -> None:
    document = {
        "keys": [
            key.jwk(),
            {**key.jwk(), "kid": "enc", "use": "enc"},
            {"kty": "RSA", "kid": "broken", "n": "??", "e": "AQAB"},
            {"kty": "RSA"},
            "nonsense",
        ]
    }
    assert list(parse_jwks(document)) == [key.kid]
    assert parse_jwks({"keys": "nope"}) == {}
    assert parse_jwks(["not", "a", "jwks"]) == {}


def test_principal_reports_missing_permissions_in_order() -> None:
    caller = Principal("u", "user", frozenset({"a.view", "c.view"}))
    assert caller.missing(["a.view", "b.edit", "c.view", "d.edit"]) == ("b.edit", "d.edit")
    assert caller.missing([]) == ()


# --- authenticate: credentials, then permissions ------------------------------------------

USER = Principal("u-1", "user", frozenset({"a.view", "a.edit"}))
PARTNER = Principal("key-1", "api_key", frozenset({"a.view"}))


class Credentials:
    """Valid bearer token "good", valid API key "key"; anything else is a 401."""

    async def bearer(self, token: str) -> Principal:
        if token != "good":
            raise unauthorized("bad token")
        return USER

    async def api_key(self, raw_key: str) -> Principal:
        if raw_key != "key":
            raise unauthorized("bad key")
        return PARTNER


def secured(*permissions: str, public: bool = False) -> OperationInfo:
    return OperationInfo("op", "GET", "/x", permissions, public, ())


async def refused(operation: OperationInfo, headers: dict[str, str], status: int = 401) -> str:
    with pytest.raises(Problem) as raised:
        await authenticate(operation, headers, Credentials())
    assert raised.value.status == status
    return str(raised.value.detail)


async def test_a_public_operation_needs_no_credentials() -> None:
    assert (
        await authenticate(secured(public=True), {"authorization": "junk"}, Credentials()) is None
    )


async def test_either_credential_authenticates() -> None:
    assert await authenticate(secured(), {"authorization": "Bearer good"}, Credentials()) is USER
    assert await authenticate(secured(), {"x-api-key": "key"}, Credentials()) is PARTNER
    assert "required" in await refused(secured(), {})


@pytest.mark.parametrize("authorization", ["Basic Zm9vOmJhcg==", "Bearer ", "bearer"])
async def test_an_authorization_that_is_not_a_bearer_token_is_refused(authorization: str) -> None:
    assert "not a bearer token" in await refused(secured(), {"authorization": authorization})


async def test_a_bad_second_credential_is_refused_not_ignored() -> None:
    both = {"authorization": "Bearer good", "x-api-key": "key"}
    assert await authenticate(secured(), both, Credentials()) is USER  # the token's caller
    assert await refused(secured(), {**both, "x-api-key": "stolen"}) == "bad key"
    assert await refused(secured(), {**both, "authorization": "Bearer forged"}) == "bad token"


async def test_every_missing_permission_is_named() -> None:
    headers = {"x-api-key": "key"}
    detail = await refused(secured("a.view", "a.edit", "b.view"), headers, 403)
    assert detail == "Missing permission: a.edit, b.view"
    assert await authenticate(secured("a.view"), headers, Credentials()) is PARTNER
