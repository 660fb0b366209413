"""One rule for e-mail addresses everywhere: which are accepted, and the one form each is kept in.

The HTTP format check (`http.validation`) and pydantic's EmailStr (the generated models, the
event payloads) both use email-validator, which by default refuses special-use domains such as
`.test` or `.local`. Partner test suites and our own contract tests use them, and
deliverability is never checked here, so both accept them. email-validator reads this list on
every call and offers no per-call switch that pydantic would pass, hence the module-level change,
made once when the kit is imported.

`normalise_email` gives the canonical form an address is stored, compared and published in
(ADR 0010): the same mailbox typed in NFC or NFD, with its domain in Unicode or in punycode
(`xn--`), or in another letter case, is one key.
"""

import contextlib
import unicodedata

import email_validator

from services.platform.core.rules import FieldError

email_validator.SPECIAL_USE_DOMAIN_NAMES.clear()


def normalise_email(address: str) -> str:
    """The canonical form of `address`: email-validator's `normalized` (local part in Unicode
    NFC, domain IDNA-decoded to Unicode by UTS #46, so `xn--bcher-kva.de` is `bücher.de`),
    trimmed and lower-cased (then NFC again: lower-casing may leave a string unnormalised).

    Idempotent. An address email-validator refuses is only trimmed, lower-cased and NFC'd: the
    caller's own check says why it is refused, and a lookup by it finds nobody.
    """
    trimmed = address.strip()
    with contextlib.suppress(email_validator.EmailNotValidError):
        trimmed = email_validator.validate_email(trimmed, check_deliverability=False).normalized
    return unicodedata.normalize("NFC", trimmed.lower())


def stored_email(address: str, field: str = "email") -> str | FieldError:
    """`address` as it is stored (`normalise_email`), or why no mailbox can have it."""
    normalised = normalise_email(address)
    try:
        email_validator.validate_email(normalised, check_deliverability=False)
    except email_validator.EmailNotValidError:
        return FieldError(field, "is not a valid e-mail address")
    return normalised
