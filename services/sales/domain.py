"""The sales service's pure rules: customer documents (CPF/CNPJ), default addresses, and what
a product description does to the catalogue replica.

Check digits come from python-stdnum (`stdnum.br.cpf`, `stdnum.br.cnpj`): typed, maintained,
and the same module family covers the alphanumeric CNPJ should the platform accept it later.
What stdnum accepts and sales does not: one digit repeated (`111.111.111-11` passes its check
digits) and letters in a CNPJ (this issue asks for 14 digits).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from stdnum.br import cnpj, cpf

from services.platform import FieldError

MAX_ADDRESSES = 10


class DocumentType(StrEnum):
    CPF = "cpf"
    CNPJ = "cnpj"


class CustomerStatus(StrEnum):
    ACTIVE = "active"
    INACTIVE = "inactive"


@dataclass(frozen=True)
class Document:
    digits: str
    type: DocumentType


_PUNCTUATION = str.maketrans("", "", ".-/")
_LENGTHS = {11: (DocumentType.CPF, cpf), 14: (DocumentType.CNPJ, cnpj)}


def parse_document(raw: str, field: str = "document") -> Document | FieldError:
    """The document as stored (digits only) and its type, or why it is refused (never echoing
    the value: ADR 0010)."""
    digits = raw.translate(_PUNCTUATION)
    if not digits.isdigit() or len(digits) not in _LENGTHS:
        return FieldError(field, "must have 11 (CPF) or 14 (CNPJ) digits")
    kind, module = _LENGTHS[len(digits)]
    if len(set(digits)) == 1:
        return FieldError(field, "must not repeat a single digit")
    if not module.is_valid(digits):
        return FieldError(field, f"is not a valid {kind.value.upper()} (check digits)")
    return Document(digits, kind)


def initial_default(flags: Sequence[bool]) -> int | FieldError | None:
    """Which of a new customer's addresses is the default: the one flagged, else the first;
    None without addresses; more than one flagged is refused."""
    flagged = [index for index, flag in enumerate(flags) if flag]
    if len(flagged) > 1:
        return FieldError("addresses", "at most one address can be the default")
    if flagged:
        return flagged[0]
    return 0 if flags else None


class ReplicaChange(StrEnum):
    """What a description of a product (an event, or inventory's answer) does to its row."""

    INSERT = "insert"  # not replicated yet
    UPDATE = "update"  # a newer version of the row
    STALE = "stale"  # the same version (a redelivery) or an older one: nothing changes
    SKU_CHANGED = "sku_changed"  # a newer version under another SKU: inventory never does that


@dataclass(frozen=True)
class ReplicaVersion:
    version: int
    sku: str


def replica_change(stored: ReplicaVersion | None, incoming: ReplicaVersion) -> ReplicaChange:
    """Last writer wins by inventory's version; the SKU is immutable (a tombstone included)."""
    if stored is None:
        return ReplicaChange.INSERT
    if incoming.version <= stored.version:
        return ReplicaChange.STALE
    if incoming.sku != stored.sku:
        return ReplicaChange.SKU_CHANGED
    return ReplicaChange.UPDATE
