"""API2 Broken authentication: forged, altered and stale bearer tokens, against auth (which
verifies with its own keys) and inventory (which verifies from auth's JWKS).

Each forgery starts from a real token of the super-admin and the real signing key (read from
auth's database), changes one thing, and must get a 401 saying why; the same forge with nothing
changed is accepted (`test_the_forge_itself_makes_accepted_tokens`), so every refusal is the
one check under attack, not a broken forge.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import text
from sqlalchemy.engine import Engine

from services.auth.tokens import public_jwk, thumbprint
from tests.support.accounts import Member, Members
from tests.support.http import Api
from tests.support.problems import refusal
from tests.support.processes import ServiceProcess

pytestmark = pytest.mark.integration

# A secured read of each kind: any authenticated caller (auth), a permission (auth), a
# permission on a service that verifies tokens from the JWKS (inventory).
TARGETS = {
    "auth-me": ("auth", "/api/v1/auth/me"),
    "auth-users": ("auth", "/api/v1/users"),
    "inventory-stock": ("inventory", "/api/v1/stock"),
}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64_json(data: dict[str, Any]) -> str:
    return b64(json.dumps(data).encode())


@dataclass(frozen=True)
class Forge:
    """The real signing key and the claims and header of a real token, to change one thing."""

    kid: str
    private_pem: str
    claims: dict[str, Any]

    @property
    def private_key(self) -> rsa.RSAPrivateKey:
        key = serialization.load_pem_private_key(self.private_pem.encode(), password=None)
        assert isinstance(key, rsa.RSAPrivateKey)
        return key

    def fresh_claims(self, **changes: Any) -> dict[str, Any]:
        """The real token's claims, valid from now (a new jti), with `changes`; a change to
        None removes the claim."""
        now = datetime.now(UTC)
        claims = {
            **self.claims,
            "iat": int(now.timestamp()),
            "exp": int((now + timedelta(minutes=15)).timestamp()),
            "jti": str(uuid.uuid4()),
        }
        claims.update(changes)
        return {name: value for name, value in claims.items() if value is not None}

    def sign(self, claims: dict[str, Any], *, algorithm: str = "RS256", **header: Any) -> str:
        return jwt.encode(
            claims, self.private_key, algorithm=algorithm, headers={"kid": self.kid, **header}
        )

    def token(self, **changes: Any) -> str:
        return self.sign(self.fresh_claims(**changes))


@pytest.fixture(scope="module")
def forge(root_token: str, auth_db: Engine) -> Forge:
    kid = jwt.get_unverified_header(root_token)["kid"]
    with auth_db.connect() as connection:
        pem = connection.execute(
            text("SELECT private_pem FROM signing_keys WHERE kid = :kid"), {"kid": kid}
        ).scalar_one()
    return Forge(kid, pem, jwt.decode(root_token, options={"verify_signature": False}))


@dataclass(frozen=True)
class Target:
    """A secured read of one service."""

    api: Api
    path: str

    def bearer(self, token: str) -> Any:
        return self.authorization(f"Bearer {token}")

    def authorization(self, value: str) -> Any:
        return self.api.get(self.path, headers={"Authorization": value})


@pytest.fixture(scope="module")
def clients(auth_app: ServiceProcess, inventory_app: ServiceProcess) -> Iterator[dict[str, Api]]:
    with Api(auth_app.url) as auth, Api(inventory_app.url) as inventory:
        yield {"auth": auth, "inventory": inventory}


@pytest.fixture(params=sorted(TARGETS))
def target(request: pytest.FixtureRequest, clients: dict[str, Api]) -> Target:
    service, path = TARGETS[request.param]
    return Target(clients[service], path)


def assert_refused(response: Any, reason: str) -> None:
    body = refusal(response, 401)
    assert response.headers["www-authenticate"] == "Bearer"
    assert reason in body["detail"], body


def unsigned(forge: Forge, algorithm: str) -> str:
    return ".".join(
        [
            b64_json({"alg": algorithm, "typ": "JWT", "kid": forge.kid}),
            b64_json(forge.fresh_claims()),
            "",
        ]
    )


def hmac_signed(forge: Forge, secret: bytes) -> str:
    """HS256 with `secret`: what a verifier that lets the token pick the algorithm would
    accept if `secret` is the public key it holds."""
    signing_input = ".".join(
        [b64_json({"alg": "HS256", "typ": "JWT", "kid": forge.kid}), b64_json(forge.fresh_claims())]
    )
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def public_pem(forge: Forge) -> bytes:
    return forge.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def with_segment(token: str, index: int, segment: str) -> str:
    parts = token.split(".")
    parts[index] = segment
    return ".".join(parts)


@cache
def stranger_key() -> rsa.RSAPrivateKey:
    """A key auth never had (made once: RSA key generation is slow)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def embedded_jwk(forge: Forge) -> str:
    """Signed by the attacker's key, which the header itself carries (`jwk`) and names (`kid`):
    only keys from auth may verify."""
    key = stranger_key()
    jwk = public_jwk(key.public_key())
    kid = thumbprint(jwk)
    return jwt.encode(
        forge.fresh_claims(), key, algorithm="RS256", headers={"kid": kid, "jwk": jwk}
    )


def past(minutes: int) -> int:
    return int((datetime.now(UTC) - timedelta(minutes=minutes)).timestamp())


def future(minutes: int) -> int:
    return int((datetime.now(UTC) + timedelta(minutes=minutes)).timestamp())


def without(claim: str) -> Callable[[Forge], str]:
    return lambda forge: forge.token(**{claim: None})


# name -> (the forged token, the reason the refusal gives)
ATTACKS: dict[str, tuple[Callable[[Forge], str], str]] = {
    "alg-none": (lambda f: unsigned(f, "none"), "not signed with RS256"),
    "alg-None": (lambda f: unsigned(f, "None"), "not signed with RS256"),
    "alg-none-keeping-a-real-signature": (
        lambda f: with_segment(f.token(), 0, b64_json({"alg": "none", "kid": f.kid})),
        "not signed with RS256",
    ),
    "hs256-with-the-public-key-pem": (
        lambda f: hmac_signed(f, public_pem(f)),
        "not signed with RS256",
    ),
    "hs256-with-the-public-jwk": (
        lambda f: hmac_signed(f, json.dumps(public_jwk(f.private_key.public_key())).encode()),
        "not signed with RS256",
    ),
    "ps256-with-the-real-key": (
        lambda f: f.sign(f.fresh_claims(), algorithm="PS256"),
        "not signed with RS256",
    ),
    "expired": (lambda f: f.token(iat=past(60), exp=past(45)), "has expired"),
    "issued-in-the-future": (lambda f: f.token(iat=future(10), exp=future(25)), "not valid yet"),
    "not-before-in-the-future": (lambda f: f.token(nbf=future(10)), "not valid yet"),
    "wrong-issuer": (lambda f: f.token(iss="https://evil.example.com"), "unknown issuer"),
    "wrong-audience": (lambda f: f.token(aud="another-platform"), "not meant for this platform"),
    "audience-list-without-ours": (
        lambda f: f.token(aud=["another-platform", "third"]),
        "not meant for this platform",
    ),
    **{
        f"without-{claim}": (without(claim), f"no {claim} claim")
        for claim in ("exp", "iat", "iss", "aud", "sub", "jti")
    },
    "unknown-kid": (lambda f: f.sign(f.fresh_claims(), kid="no-such-key"), "unknown key"),
    "kid-sql": (lambda f: f.sign(f.fresh_claims(), kid=f"{f.kid}' OR '1'='1"), "unknown key"),
    "kid-path-traversal": (
        lambda f: f.sign(f.fresh_claims(), kid="../../../../dev/null"),
        "unknown key",
    ),
    "no-kid": (
        lambda f: jwt.encode(f.fresh_claims(), f.private_key, algorithm="RS256"),
        "names no signing key",
    ),
    "embedded-attacker-jwk": (embedded_jwk, "unknown key"),
    "real-kid-stranger-key": (
        lambda f: jwt.encode(
            f.fresh_claims(), stranger_key(), algorithm="RS256", headers={"kid": f.kid}
        ),
        "signature is invalid",
    ),
    "tampered-permissions": (
        lambda f: with_segment(
            f.token(), 1, b64_json(f.fresh_claims(permissions=["*"], roles=["super-admin"]))
        ),
        "signature is invalid",
    ),
    "tampered-subject": (
        lambda f: with_segment(f.token(), 1, b64_json(f.fresh_claims(sub=str(uuid.uuid4())))),
        "signature is invalid",
    ),
    "tampered-signature": (
        lambda f: with_segment(f.token(), 2, b64(bytes(256))),
        "signature is invalid",
    ),
    "signature-stripped": (lambda f: with_segment(f.token(), 2, ""), "signature is invalid"),
    "refresh-typed-token": (lambda f: f.token(typ="refresh"), "not an access token"),
    "untyped-token": (lambda f: f.token(typ=None), "not an access token"),
    "permissions-not-a-list": (
        lambda f: f.token(permissions="inventory.stock.view"),
        "claims are malformed",
    ),
    "subject-not-a-string": (lambda f: f.token(sub=12345), "invalid"),
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_a_forged_token_is_refused(forge: Forge, target: Target, attack: str) -> None:
    make, reason = ATTACKS[attack]
    assert_refused(target.bearer(make(forge)), reason)


def test_the_forge_itself_makes_accepted_tokens(forge: Forge, target: Target) -> None:
    assert target.bearer(forge.token()).status_code == 200


GARBAGE = {
    "bare-scheme": ("Bearer", "not a bearer token"),
    "basic-scheme": ("Basic cm9vdDpyb290", "not a bearer token"),
    "empty-header": ("", "not a bearer token"),
    "not-a-jwt": ("Bearer garbage", "malformed"),
    "two-segments": ("Bearer eyJhbGciOiJSUzI1NiJ9.e30", "malformed"),
    "header-not-json": ("Bearer bm90IGpzb24.e30.c2ln", "malformed"),
}


@pytest.mark.parametrize("case", sorted(GARBAGE))
def test_garbage_authorization_is_refused(target: Target, case: str) -> None:
    header, reason = GARBAGE[case]
    assert_refused(target.authorization(header), reason)


@pytest.mark.parametrize("end", ["delete", "deactivate"])
def test_the_tokens_of_a_deleted_or_deactivated_user_are_refused(
    members: Members, auth_api: Api, root_token: str, clients: dict[str, Api], end: str
) -> None:
    member = members.new(["stock-manager"])
    targets = [Target(clients[service], path) for service, path in TARGETS.values()]
    # Accepted as a caller (a 403 where the role lacks the permission) until the account ends.
    assert [t.bearer(member.access_token).status_code for t in targets] == [200, 403, 200]
    if end == "delete":
        ended = auth_api.delete(f"/api/v1/users/{member.id}", token=root_token)
        assert ended.status_code == 204, ended.text
    else:
        ended = auth_api.post(f"/api/v1/users/{member.id}/deactivate", token=root_token)
        assert ended.status_code == 200, ended.text
    for refused_by in targets:
        assert_refused(refused_by.bearer(member.access_token), "revoked")


def test_a_refresh_token_is_no_access_token(stock_member: Member, target: Target) -> None:
    assert_refused(target.bearer(stock_member.refresh_token), "malformed")
