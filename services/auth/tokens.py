"""Access tokens: RS256 signing keys kept in the `signing_keys` table, the JWKS, and rotation.

* At start-up `start_signing_keys` makes sure one active key exists (RSA 2048) and keeps the
  `SigningKeys` in the service's state, where `signing_keys(ctx)` finds them.
* The newest active key signs; every key that has not expired is in the JWKS, so after
  `rotate_signing_key` tokens signed by the previous key stay valid until they expire, and
  services that cached the old JWKS refetch it when they meet the new `kid`.
* `SigningKeys` is also the auth service's own `KeySource` for the kit: it verifies tokens with
  the keys from its database instead of fetching its own JWKS over HTTP.

Keys are cached in memory and reloaded every `refresh_seconds` (or at once for an unknown kid,
at most every `min_reload_seconds`), so a rotation made by one replica reaches the others.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final
from uuid import UUID, uuid4

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import or_, update
from sqlmodel import col, select

from services.auth.domain import ACCESS_TOKEN_TTL
from services.auth.tables import SigningKey
from services.platform import ACCESS_TOKEN_TYPE, Database, ServiceContext, utc_now

ALGORITHM = "RS256"
KEY_SIZE = 2048
SIGNING_KEYS: Final = "auth.signing_keys"  # ctx.state entry, set by `start_signing_keys`
# A retired key outlives the last token it signed by the verifiers' clock leeway and more.
RETIRED_KEY_GRACE = ACCESS_TOKEN_TTL + timedelta(minutes=5)

log = logging.getLogger("services.auth.tokens")


def _b64url_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def public_jwk(public_key: rsa.RSAPublicKey) -> dict[str, str]:
    """The public key as a JWK {kty, n, e} (what the spec's `Jwk` holds, without kid/use/alg)."""
    numbers = public_key.public_numbers()
    return {"kty": "RSA", "n": _b64url_uint(numbers.n), "e": _b64url_uint(numbers.e)}


def thumbprint(jwk: Mapping[str, str]) -> str:
    """RFC 7638 thumbprint: the key's id, the same wherever it is computed."""
    canonical = json.dumps({k: jwk[k] for k in ("e", "kty", "n")}, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def generate_signing_key(now: datetime | None = None) -> SigningKey:
    """A new RSA 2048 key pair as a `signing_keys` row (not yet added to a session)."""
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_SIZE)
    jwk = public_jwk(private_key.public_key())
    kid = thumbprint(jwk)
    pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return SigningKey(
        kid=kid,
        private_pem=pem,
        public_jwk={**jwk, "kid": kid, "use": "sig", "alg": ALGORITHM},
        created_at=now or utc_now(),
    )


@dataclass(frozen=True, slots=True)
class AccessToken:
    token: str
    jti: str
    issued_at: datetime
    expires_at: datetime

    @property
    def expires_in(self) -> int:
        return int((self.expires_at - self.issued_at).total_seconds())


@dataclass(frozen=True, slots=True)
class _LoadedKey:
    kid: str
    jwk: dict[str, Any]
    public_key: Any
    private_pem: str
    created_at: datetime
    retired_at: datetime | None
    expires_at: datetime | None


class SigningKeys:
    """The signing keys of the auth service, cached from its database."""

    def __init__(
        self,
        database: Database,
        *,
        issuer: str,
        audience: str,
        refresh_seconds: float = 60.0,
        min_reload_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.database = database
        self.issuer = issuer
        self.audience = audience
        self.refresh_seconds = refresh_seconds
        self.min_reload_seconds = min_reload_seconds
        self.clock = clock
        self._keys: dict[str, _LoadedKey] = {}
        self._loaded_at: float | None = None
        self._private: dict[str, rsa.RSAPrivateKey] = {}
        self._lock = asyncio.Lock()

    async def ensure_active(self) -> None:
        """Create a key when none is active (first start, or every key retired)."""
        async with self.database.session() as session:
            active = await session.scalars(
                select(SigningKey).where(col(SigningKey.retired_at).is_(None)).limit(1)
            )
            if active.first() is None:
                # Several replicas starting at once may each add one: all are valid and listed.
                session.add(await asyncio.to_thread(generate_signing_key))
                await session.commit()
        await self.reload()

    async def reload(self) -> None:
        now = utc_now()
        async with self.database.session() as session:
            rows = (
                await session.scalars(
                    select(SigningKey).where(
                        or_(col(SigningKey.expires_at).is_(None), col(SigningKey.expires_at) > now)
                    )
                )
            ).all()
        keys = {}
        for row in rows:
            keys[row.kid] = _LoadedKey(
                kid=row.kid,
                jwk=dict(row.public_jwk),
                public_key=jwt.PyJWK(dict(row.public_jwk), ALGORITHM).key,
                private_pem=row.private_pem,
                created_at=row.created_at,
                retired_at=row.retired_at,
                expires_at=row.expires_at,
            )
        self._keys = keys
        self._loaded_at = self.clock()

    def _needs_reload(self, force: bool) -> bool:
        if self._loaded_at is None:
            return True
        age = self.clock() - self._loaded_at
        return age >= self.refresh_seconds or (force and age >= self.min_reload_seconds)

    async def _current(self, *, force: bool = False) -> dict[str, _LoadedKey]:
        """The keys that have not expired; `force` reloads them (rate limited) first."""
        if self._needs_reload(force):
            async with self._lock:
                if self._needs_reload(force):  # whoever held the lock may have reloaded
                    await self.reload()
        now = utc_now()
        return {
            kid: key
            for kid, key in self._keys.items()
            if key.expires_at is None or key.expires_at > now
        }

    # --- the kit's KeySource ---

    @property
    def loaded(self) -> bool:
        return self._loaded_at is not None

    async def warm(self) -> bool:
        """Auth is ready to verify once its keys are loaded (`ensure_active` at start-up)."""
        if not self.loaded:
            try:
                await self._current()
            except Exception:  # the database is down: not ready, the runtime retries
                log.warning("cannot load the signing keys", exc_info=True)
        return self.loaded

    async def public_key(self, kid: str) -> Any | None:
        keys = await self._current()
        if kid not in keys:
            keys = await self._current(force=True)  # maybe rotated by another replica
        found = keys.get(kid)
        return found.public_key if found else None

    # --- JWKS and signing ---

    async def jwks(self) -> dict[str, list[dict[str, Any]]]:
        keys = await self._current()
        ordered = sorted(keys.values(), key=lambda key: key.created_at, reverse=True)
        return {"keys": [key.jwk for key in ordered]}

    async def _signer(self) -> tuple[str, rsa.RSAPrivateKey]:
        active = [key for key in (await self._current()).values() if key.retired_at is None]
        if not active:
            active = [k for k in (await self._current(force=True)).values() if k.retired_at is None]
        if not active:
            raise RuntimeError("no active signing key (start_signing_keys runs at start-up)")
        newest = max(active, key=lambda key: (key.created_at, key.kid))
        private = self._private.get(newest.kid)
        if private is None:
            loaded = serialization.load_pem_private_key(newest.private_pem.encode(), None)
            if not isinstance(loaded, rsa.RSAPrivateKey):
                raise RuntimeError(f"signing key {newest.kid} is not an RSA key")
            private = self._private[newest.kid] = loaded
        return newest.kid, private

    async def issue(
        self,
        *,
        subject: UUID | str,
        roles: Sequence[str],
        permissions: Sequence[str],
        now: datetime | None = None,
        ttl: timedelta = ACCESS_TOKEN_TTL,
    ) -> AccessToken:
        """A signed access token with the claims every service checks (kit security.py)."""
        issued_at = now or utc_now()
        expires_at = issued_at + ttl
        jti = str(uuid4())
        kid, private_key = await self._signer()
        claims = {
            "iss": self.issuer,
            "sub": str(subject),
            "aud": self.audience,
            "iat": int(issued_at.timestamp()),
            "exp": int(expires_at.timestamp()),
            "jti": jti,
            "typ": ACCESS_TOKEN_TYPE,
            "roles": sorted(roles),
            "permissions": sorted(permissions),
        }
        token = jwt.encode(claims, private_key, algorithm=ALGORITHM, headers={"kid": kid})
        return AccessToken(token=token, jti=jti, issued_at=issued_at, expires_at=expires_at)

    async def rotate(self, now: datetime | None = None) -> str:
        """`rotate_signing_key`, then sign with the new key in this process at once."""
        kid = await rotate_signing_key(self.database, now)
        await self.reload()
        return kid


async def rotate_signing_key(database: Database, now: datetime | None = None) -> str:
    """Make a new key the signing key; the previous ones stay verifiable for a grace period.

    Returns the new kid. Other replicas pick the new key up at their next reload.
    """
    now = now or utc_now()
    new_key = await asyncio.to_thread(generate_signing_key, now)
    async with database.session() as session:
        await session.execute(
            update(SigningKey)
            .where(col(SigningKey.retired_at).is_(None))
            .values(retired_at=now, expires_at=now + RETIRED_KEY_GRACE)
        )
        session.add(new_key)
        await session.commit()
    return new_key.kid


async def start_signing_keys(ctx: ServiceContext) -> None:
    """Start-up hook: an active key exists and is loaded; `signing_keys(ctx)` returns them."""
    keys = SigningKeys(
        ctx.database, issuer=ctx.settings.jwt_issuer, audience=ctx.settings.jwt_audience
    )
    await keys.ensure_active()
    ctx.state[SIGNING_KEYS] = keys


def signing_keys(ctx: ServiceContext) -> SigningKeys:
    """The running service's signing keys (the JWKS, issuing and verifying access tokens)."""
    keys: SigningKeys = ctx.state[SIGNING_KEYS]
    return keys
