"""The credential checks of one app, built from the running service's context: its signing
keys (auth) or the JWKS over HTTP (everyone else), the logout blacklist in Redis, and its
partner-key verifier.

`warm_token_keys` is the app's start-up warm-up of the keys that verify tokens: it runs in the
background while the app serves (start-up does not wait for auth to be reachable: embedded
`erp up` starts auth in the same process, and services may start in any order) and retries
with back-off until the keys are loaded. Until then `/health/ready` answers 503.
"""

from __future__ import annotations

import asyncio
import logging

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

log = logging.getLogger(__name__)

# Seconds between warm-up attempts while the keys cannot be loaded; the last one repeats.
WARM_UP_DELAYS: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 5.0)


class Authenticator:
    """The credentials checks of one app, built lazily from the running service's context."""

    def __init__(self, definition: ServiceDefinition, settings: Settings) -> None:
        self.definition = definition
        self.settings = settings
        self._built_for: ServiceContext | None = None
        self._tokens: TokenVerifier | None = None
        self._api_keys: ApiKeyVerifier | None = None

    def token_keys(self, ctx: ServiceContext) -> KeySource:
        """The key source the bearer checks of `ctx` use (the one to warm up)."""
        tokens, _ = self._build(ctx)
        return tokens.keys

    def _build(self, ctx: ServiceContext | None = None) -> tuple[TokenVerifier, ApiKeyVerifier]:
        ctx = current_context() if ctx is None else ctx
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


async def warm_token_keys(keys: KeySource, service: str) -> None:
    """Load `keys`, retrying with back-off (`WARM_UP_DELAYS`) until they are loaded."""
    attempt = 0
    while not await keys.warm():
        if attempt == 0:
            log.warning(
                "%s cannot verify access tokens yet (no signing keys loaded): not ready, retrying",
                service,
                extra={"service": service},
            )
        await asyncio.sleep(WARM_UP_DELAYS[min(attempt, len(WARM_UP_DELAYS) - 1)])
        attempt += 1
    if attempt:
        log.info("%s loaded its signing keys: ready", service, extra={"service": service})
