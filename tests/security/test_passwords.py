"""Common passwords are refused wherever a password is set (issue 7, hardening), with a 422
problem that never repeats the password, against the real auth service."""

from __future__ import annotations

import pytest

from tests.support.http import Api, new_ip, unique_email
from tests.support.problems import problem
from tests.support.processes import ServerThread

pytestmark = pytest.mark.integration

COMMON = "Password1"  # 8+ characters, a letter and a digit: only the list refuses it


def test_registering_with_a_common_password_is_a_422(auth_server: ServerThread) -> None:
    with Api(auth_server.url, ip=new_ip()) as api:
        body = {"name": "Common", "email": unique_email("common"), "password": COMMON}
        answer = api.post("/api/v1/auth/register", json=body)
    refused = problem(answer, 422)
    assert refused["errors"] == [
        {
            "field": "password",
            "message": "is one of the most commonly used passwords; choose a less guessable one",
        }
    ]
    assert COMMON.lower() not in answer.text.lower()


def test_an_admin_cannot_give_a_user_a_common_password(
    auth_server: ServerThread, admin_token: str
) -> None:
    with Api(auth_server.url, admin_token, ip=new_ip()) as api:
        body = {"name": "Staff", "email": unique_email("staff"), "password": "qwerty123"}
        answer = api.post("/api/v1/users", json=body)
    assert problem(answer, 422)["errors"][0]["field"] == "password"
    assert "qwerty123" not in answer.text
