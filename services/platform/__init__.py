"""The platform kit: what every service shares (see docs/adr/0001-foundation.md)."""

import email_validator

# One rule for e-mail addresses everywhere: the HTTP format check and pydantic's EmailStr (the
# generated models, the event payloads) both use email-validator, which by default refuses
# special-use domains such as `.test` or `.local`. Partner test suites and our own contract
# tests use them, and deliverability is never checked here, so accept them in both places.
email_validator.SPECIAL_USE_DOMAIN_NAMES.clear()
