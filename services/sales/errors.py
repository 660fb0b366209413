"""The sales service's answers when a request cannot be served (problem+json through the kit's
`Problem`): something in the URL that does not exist is a 404; a well-formed body that breaks a
rule of `domain.py` is a 422 with the fields; a unique value taken is a 409."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.platform import FieldError, Problem


def not_found(kind: str, identifier: object) -> Problem:
    return Problem(404, detail=f"{kind} {identifier} not found.")


def unprocessable(detail: str, errors: Sequence[FieldError]) -> Problem:
    return Problem(422, detail=detail, errors=[e.as_dict() for e in errors])


def check(errors: Sequence[FieldError]) -> None:
    """Raise the 422 when a rule of `domain.py` found problems."""
    if errors:
        raise unprocessable("The request breaks the rules; see errors.", errors)


async def flush_unique(session: AsyncSession, conflict: Problem) -> None:
    """Flush; a unique violation (a concurrent insert of the same key) becomes the conflict."""
    try:
        await session.flush()
    except IntegrityError:
        raise conflict from None
