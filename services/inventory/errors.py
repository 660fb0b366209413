"""The inventory service's own refusal: a body field naming something that does not exist is a
422 with the field. The general ones (404, 422, 409 on a unique value) are the kit's."""

from __future__ import annotations

from services.platform import FieldError, Problem, unprocessable


def unknown(kind: str, identifier: object, field: str) -> Problem:
    """A body field naming a `kind` that does not exist."""
    return unprocessable(
        f"{kind.capitalize()} {identifier} does not exist.", [FieldError(field, f"unknown {kind}")]
    )
