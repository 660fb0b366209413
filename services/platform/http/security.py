"""Who is calling: JWT and API-key authentication, then the operation's permissions.

* Bearer: an RS256 access token from the auth service. The signature is checked with the key
  named by `kid` (the service's own keys for auth, the JWKS over HTTP for everyone else), then
  `exp`, `iat`, `iss`, `aud`, `jti` (required, and not on the Redis blacklist that logout
  writes) and `typ` == "access".
* `X-API-Key`: verified by the service's `ApiKeyVerifier` (`definition.api_keys`).
* Permissions: `authenticate` then requires every slug of the operation's `x-permissions`
  (403 names the missing ones).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Protocol

import httpx
import jwt
from redis.asyncio import Redis

from services.platform.core.contracts import OperationInfo
from services.platform.core.ids import api_key_digest
from services.platform.core.problems import Problem, unauthorized
from services.platform.core.scope import Principal
from services.platform.persistence.redis import Keys

ALGORITHMS = ("RS256",)
ACCESS_TOKEN_TYPE = "access"
REQUIRED_CLAIMS = ("exp", "iat", "iss", "aud", "sub", "jti")
# Clock skew verifiers tolerate on `exp` and `iat`: a token passes until this long after its
# `exp`, so whatever revokes a token (the blacklist) must outlive its `exp` by as much.
TOKEN_LEEWAY: Final = timedelta(seconds=30)
JWKS_PATH = "/.well-known/jwks.json"

log = logging.getLogger("services.platform.http.security")


class Credentials(Protocol):
    """The caller behind a bearer token or an API key; a 401 problem when it is not valid."""

    async def bearer(self, token: str) -> Principal: ...

    async def api_key(self, raw_key: str) -> Principal: ...


class KeySource(Protocol):
    """Public keys that verify access tokens, by key id.

    `loaded` is true once the keys have been loaded at least once (a service is not ready
    before: it would refuse every valid token); `warm()` loads them if they are not, and says
    whether they are now. The runtime calls it at start-up, again with back-off until true.
    """

    @property
    def loaded(self) -> bool: ...

    async def warm(self) -> bool: ...

    async def public_key(self, kid: str) -> Any | None: ...


class ApiKeyVerifier(Protocol):
    """Partner API keys: the principal of a valid key, None for an unknown or revoked one."""

    async def verify(self, raw_key: str) -> Principal | None: ...


class JwksKeySource:
    """Keys from the auth service's JWKS, cached for `ttl_seconds`.

    A refresh is needed when no JWKS has been fetched yet, when the cache is older than the
    TTL, or for a `kid` the cache lacks (auth rotated its key). Failure model:

    * Single flight: one fetch at a time, run as an `asyncio` task. Every caller needing a
      refresh while it runs awaits that task, then reads the keys it left, so the requests
      arriving at start-up or right after a rotation all get the new keys, none a 401. Callers
      wait through `asyncio.shield`: one whose request is cancelled does not cancel the fetch
      the others wait on. (A task rather than a lock held across the fetch: a late caller
      joins the fetch in flight instead of queueing to decide, one by one, not to fetch.)
    * A new fetch starts at most every `min_refresh_seconds`: a flood of tokens with made-up
      kids costs auth one request per interval; between fetches such a kid is refused at once.
    * A fetch takes at most `timeout_seconds`, connection and body together. Whatever goes
      wrong (auth down or slow, an error status, a body that is not JSON), it is logged, the
      cached keys stay in use, and the waiting callers read the cache as it is: None for a
      kid it lacks (the 401 they would have got), never a hang.
    * `warm()` (the runtime's start-up warm-up) joins the fetch in flight or starts one
      without the request throttle: its caller paces its retries itself.
    """

    def __init__(
        self,
        url: str,
        client: httpx.AsyncClient,
        *,
        ttl_seconds: float = 300.0,
        min_refresh_seconds: float = 5.0,
        timeout_seconds: float = 3.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.client = client
        self.ttl_seconds = ttl_seconds
        self.min_refresh_seconds = min_refresh_seconds
        self.timeout_seconds = timeout_seconds
        self.clock = clock
        self._keys: dict[str, Any] = {}
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._inflight: asyncio.Task[None] | None = None

    @property
    def loaded(self) -> bool:
        return self._fetched_at is not None

    async def warm(self) -> bool:
        if not self.loaded:
            await asyncio.shield(self._inflight or self._start_fetch())
        return self.loaded

    def _fresh(self) -> bool:
        return self._fetched_at is not None and self.clock() - self._fetched_at < self.ttl_seconds

    def _may_refresh(self) -> bool:
        return (
            self._attempted_at is None
            or self.clock() - self._attempted_at >= self.min_refresh_seconds
        )

    async def public_key(self, kid: str) -> Any | None:
        if kid in self._keys and self._fresh():
            return self._keys[kid]
        fetch = self._inflight
        if fetch is None and self._may_refresh():
            fetch = self._start_fetch()
        if fetch is not None:
            await asyncio.shield(fetch)
        return self._keys.get(kid)

    def _start_fetch(self) -> asyncio.Task[None]:
        self._attempted_at = self.clock()
        fetch = asyncio.create_task(self._fetch(), name=f"jwks-fetch {self.url}")
        self._inflight = fetch
        fetch.add_done_callback(self._fetched)
        return fetch

    def _fetched(self, fetch: asyncio.Task[None]) -> None:
        if self._inflight is fetch:
            self._inflight = None

    async def _fetch(self) -> None:
        attempted_at = self._attempted_at
        try:
            async with asyncio.timeout(self.timeout_seconds):
                response = await self.client.get(self.url, timeout=self.timeout_seconds)
                response.raise_for_status()
                document = response.json()
        except TimeoutError:
            log.warning(
                "cannot fetch the JWKS from %s: no answer within %gs",
                self.url,
                self.timeout_seconds,
            )
            return
        except Exception as error:  # the failure model: any failure keeps the cached keys
            log.warning("cannot fetch the JWKS from %s: %s", self.url, str(error) or repr(error))
            return
        self._keys = parse_jwks(document)
        self._fetched_at = attempted_at


def parse_jwks(document: object) -> dict[str, Any]:
    """Signing keys of a JWKS document by kid; keys that are not usable are skipped."""
    keys: dict[str, Any] = {}
    entries = document.get("keys") if isinstance(document, dict) else None
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
            continue
        kid = entry.get("kid")
        if not isinstance(kid, str) or not kid:
            continue
        try:
            keys[kid] = jwt.PyJWK(entry).key
        except jwt.PyJWTError as error:
            log.warning("skipping JWKS key %s: %s", kid, error)
    return keys


class TokenVerifier:
    """Turns an access token into a Principal, or raises a 401 problem saying why."""

    def __init__(
        self,
        keys: KeySource,
        *,
        issuer: str,
        audience: str,
        is_revoked: Callable[[str], Awaitable[bool]],
        leeway_seconds: float = TOKEN_LEEWAY.total_seconds(),
    ) -> None:
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self.is_revoked = is_revoked
        self.leeway_seconds = leeway_seconds

    async def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise unauthorized("The access token is malformed.") from None
        if header.get("alg") not in ALGORITHMS:
            raise unauthorized("The access token is not signed with RS256.")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise unauthorized("The access token names no signing key (kid).")
        key = await self.keys.public_key(kid)
        if key is None:
            raise unauthorized("The access token is signed by an unknown key.")
        claims = self._decode(token, key)
        if claims.get("typ") != ACCESS_TOKEN_TYPE:
            raise unauthorized("The token is not an access token.")
        principal = _principal(claims)
        if await self.is_revoked(str(claims["jti"])):
            raise unauthorized("The access token has been revoked.")
        return principal

    def _decode(self, token: str, key: Any) -> dict[str, Any]:
        try:
            return jwt.decode(
                token,
                key,
                algorithms=list(ALGORITHMS),
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway_seconds,
                options={"require": list(REQUIRED_CLAIMS)},
            )
        except jwt.ExpiredSignatureError:
            raise unauthorized("The access token has expired.") from None
        except jwt.ImmatureSignatureError:
            raise unauthorized("The access token is not valid yet.") from None
        except jwt.InvalidAudienceError:
            raise unauthorized("The access token is not meant for this platform.") from None
        except jwt.InvalidIssuerError:
            raise unauthorized("The access token was issued by an unknown issuer.") from None
        except jwt.MissingRequiredClaimError as error:
            raise unauthorized(f"The access token has no {error.claim} claim.") from None
        except jwt.InvalidSignatureError:
            raise unauthorized("The access token signature is invalid.") from None
        except jwt.PyJWTError:
            raise unauthorized("The access token is invalid.") from None


def _principal(claims: Mapping[str, Any]) -> Principal:
    permissions, roles = claims.get("permissions", []), claims.get("roles", [])
    subject, jti = claims["sub"], claims["jti"]
    if not (
        isinstance(subject, str)
        and subject
        and isinstance(jti, str)
        and jti
        and _strings(permissions)
        and _strings(roles)
    ):
        raise unauthorized("The access token claims are malformed.")
    return Principal(
        subject=subject,
        kind="user",
        permissions=frozenset(permissions),
        roles=tuple(roles),
        token_id=jti,
        expires_at=datetime.fromtimestamp(int(claims["exp"]), UTC),
    )


def _strings(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


@dataclass(frozen=True, slots=True)
class PublishedApiKey:
    """What auth publishes in shared Redis about an active partner key, under
    `keys("auth", "api_key", <digest>)`, so that every service can verify it locally with one
    lookup: `permissions` are what the key may do now (auth keeps them within what the key's
    creator holds, and removes the entry once the creator is dismissed)."""

    id: str
    permissions: tuple[str, ...]
    expires_at: datetime | None

    def dumps(self) -> str:
        expires = self.expires_at.isoformat() if self.expires_at else None
        return json.dumps({"id": self.id, "permissions": self.permissions, "expires_at": expires})

    @classmethod
    def loads(cls, text: str) -> PublishedApiKey:
        data = json.loads(text)
        expires = data["expires_at"]
        return cls(
            id=data["id"],
            permissions=tuple(data["permissions"]),
            expires_at=datetime.fromisoformat(expires) if expires else None,
        )


class PublishedApiKeys:
    """The `ApiKeyVerifier` of every service but auth: reads the keys auth publishes in Redis
    (ADR 0002) and leaves a last-use mark (`keys("auth", "api_key_used", <id>)`) that auth
    folds into the key's `last_used_at`."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    async def verify(self, raw_key: str) -> Principal | None:
        published = await self.redis.get(self.keys("auth", "api_key", api_key_digest(raw_key)))
        if published is None:
            return None
        key = PublishedApiKey.loads(
            published.decode() if isinstance(published, bytes) else published
        )
        now = datetime.now(UTC)
        if key.expires_at is not None and key.expires_at <= now:
            return None
        await self.redis.set(self.keys("auth", "api_key_used", key.id), now.isoformat())
        return Principal(
            subject=key.id,
            kind="api_key",
            permissions=frozenset(key.permissions),
            expires_at=key.expires_at,
        )


async def authenticate(
    operation: OperationInfo, headers: Mapping[str, str], credentials: Credentials
) -> Principal | None:
    """The caller of a secured operation, with every permission its `x-permissions` names;
    None for a public one. 401 without a valid credential, 403 without a permission.

    A request that carries both a bearer token and an API key is served only if both are
    valid (as the token's caller): a bad second credential is refused rather than ignored.
    """
    if operation.public:
        return None
    principal: Principal | None = None
    authorization = headers.get("authorization")
    if authorization is not None:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise unauthorized("The Authorization header is not a bearer token.")
        principal = await credentials.bearer(token.strip())
    raw_key = headers.get("x-api-key")
    if raw_key is not None:
        partner = await credentials.api_key(raw_key)
        principal = principal or partner
    if principal is None:
        raise unauthorized("Authentication is required: a bearer token or an X-API-Key.")
    missing = principal.missing(operation.permissions)
    if missing:
        raise Problem(403, detail=f"Missing permission: {', '.join(missing)}")
    return principal
