"""The credential checks of one app, built from the running service's context: its signing
keys (auth) or the JWKS over HTTP (everyone else), the logout blacklist in Redis, and its
partner-key verifier."""

from __future__ import annotations

from services.platform.core.problems import unauthorized
from services.platform.core.scope import Principal
from services.platform.core.settings import Settings
from services.platform.http.security import (
    JWKS_PATH,
    ApiKeyVerifier,
    JwksKeySource,
    KeySource,
    PublishedApiKeys,
    TokenVerifier,
)
from services.platform.runtime.service import ServiceContext, ServiceDefinition, current_context


class Authenticator:
    """The credentials checks of one app, built lazily from the running service's context."""

    def __init__(self, definition: ServiceDefinition, settings: Settings) -> None:
        self.definition = definition
        self.settings = settings
        self._built_for: ServiceContext | None = None
        self._tokens: TokenVerifier | None = None
        self._api_keys: ApiKeyVerifier | None = None

    def _build(self) -> tuple[TokenVerifier, ApiKeyVerifier]:
        ctx = current_context()
        if self._built_for is not ctx or self._tokens is None or self._api_keys is None:
            keys: KeySource = (
                self.definition.signing_keys(ctx)
                if self.definition.signing_keys is not None
                else JwksKeySource(self.settings.auth_url.rstrip("/") + JWKS_PATH, ctx.http)
            )

            async def is_revoked(jti: str) -> bool:
                return bool(await ctx.redis.exists(ctx.keys("auth", "blacklist", jti)))

            self._tokens = TokenVerifier(
                keys,
                issuer=self.settings.jwt_issuer,
                audience=self.settings.jwt_audience,
                is_revoked=is_revoked,
            )
            api_keys = self.definition.api_keys
            self._api_keys = (
                api_keys(ctx) if api_keys is not None else PublishedApiKeys(ctx.redis, ctx.keys)
            )
            self._built_for = ctx
        return self._tokens, self._api_keys

    async def bearer(self, token: str) -> Principal:
        tokens, _ = self._build()
        return await tokens.verify(token)

    async def api_key(self, raw_key: str) -> Principal:
        _, api_keys = self._build()
        principal = await api_keys.verify(raw_key)
        if principal is None:
            raise unauthorized("The API key is invalid or revoked.")
        return principal
