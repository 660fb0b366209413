"""Accounts the tests log in with."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

from services.auth.admin import create_admin
from services.platform.core.settings import load_settings
from tests.support.http import login, unique_email

PASSWORD = "S3cure-passw0rd"


@dataclass(frozen=True)
class Account:
    email: str
    password: str

    def login(self, auth_url: str) -> str:
        """A fresh access token, from auth at `auth_url`."""
        return login(auth_url, self.email, self.password)


def create_super_admin(env: Mapping[str, str]) -> Account:
    """A new super-admin in the auth database of `env`, made the way `erp users create-admin`
    makes one (on a fresh installation too: it creates and migrates the database)."""
    admin = Account(unique_email("admin"), "Sup3r-secret-pass")
    settings = load_settings("auth", 8001, env)
    asyncio.run(create_admin(settings, admin.email, admin.password, "Root"))
    return admin
