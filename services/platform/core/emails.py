"""One rule for e-mail addresses everywhere.

The HTTP format check (`http.validation`) and pydantic's EmailStr (the generated models, the
event payloads) both use email-validator, which by default refuses special-use domains such as
`.test` or `.local`. Partner test suites and our own contract tests use them, and
deliverability is never checked here, so both accept them. email-validator reads this list on
every call and offers no per-call switch that pydantic would pass, hence the module-level change,
made once when the kit is imported.
"""

import email_validator

email_validator.SPECIAL_USE_DOMAIN_NAMES.clear()
