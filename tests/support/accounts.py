"""Accounts the tests log in with."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from services.auth.admin import create_admin
from services.platform.core.settings import load_settings
from tests.support.http import Api, login, new_ip, unique_email

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


@dataclass(frozen=True)
class Member:
    """A user made by an administrator, and the session it logged in with."""

    id: str
    email: str
    password: str
    access_token: str
    refresh_token: str


@dataclass
class Members:
    """`members.new(roles=[...])`: a new user, created through auth at `auth_url` by the holder
    of `admin_token`, logged in from a client address of its own."""

    auth_url: str
    admin_token: str
    _made: itertools.count[int] = field(default_factory=itertools.count)

    def new(self, roles: Sequence[str] = (), *, tag: str = "member") -> Member:
        email = unique_email(f"{tag}{next(self._made)}")
        body = {"name": f"Member {tag}", "email": email, "password": PASSWORD, "roles": list(roles)}
        with Api(self.auth_url, self.admin_token, ip=new_ip()) as auth:
            created = auth.created("/api/v1/users", body)
            tokens = auth.as_caller(None).login(email, PASSWORD)["tokens"]
        return Member(
            created["id"], email, PASSWORD, tokens["access_token"], tokens["refresh_token"]
        )
