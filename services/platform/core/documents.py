"""Brazilian tax ids (CPF of a person, CNPJ of a company): the one rule every service checks them
by, and the form they are stored in (digits only).

Check digits come from python-stdnum (`stdnum.br.cpf`, `stdnum.br.cnpj`; ADR 0011): typed,
maintained, and the same module family covers the alphanumeric CNPJ should the platform accept
it later. What stdnum accepts and the platform does not: one digit repeated (`111.111.111-11`
passes its check digits) and letters in a CNPJ (digits only, as the issues ask).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from enum import StrEnum
from types import ModuleType

from stdnum.br import cnpj, cpf

from services.platform.core.rules import FieldError


class DocumentType(StrEnum):
    CPF = "cpf"
    CNPJ = "cnpj"


@dataclass(frozen=True, slots=True)
class Document:
    digits: str
    type: DocumentType


_PUNCTUATION = str.maketrans("", "", ".-/")
_RULES: dict[DocumentType, tuple[int, ModuleType]] = {
    DocumentType.CPF: (11, cpf),
    DocumentType.CNPJ: (14, cnpj),
}


def parse_document(
    raw: str,
    field: str = "document",
    *,
    accepted: Collection[DocumentType] = (DocumentType.CPF, DocumentType.CNPJ),
) -> Document | FieldError:
    """The document as stored (digits only) and its type, or why it is refused (never echoing
    the value: ADR 0010). `accepted` narrows the kinds (a supplier is a company: CNPJ only)."""
    lengths = {_RULES[kind][0]: kind for kind in DocumentType if kind in accepted}
    digits = raw.translate(_PUNCTUATION)
    if not digits.isdigit() or len(digits) not in lengths:
        kinds = " or ".join(f"{length} ({kind.value.upper()})" for length, kind in lengths.items())
        return FieldError(field, f"must have {kinds} digits")
    kind = lengths[len(digits)]
    if len(set(digits)) == 1:
        return FieldError(field, "must not repeat a single digit")
    if not _RULES[kind][1].is_valid(digits):
        return FieldError(field, f"is not a valid {kind.value.upper()} (check digits)")
    return Document(digits, kind)
