"""The canonical form of an e-mail address (ADR 0010): one mailbox, one key."""

from __future__ import annotations

import unicodedata

import pytest

from services.platform import normalise_email

JOSE_NFC = unicodedata.normalize("NFC", "José@Example.com")
JOSE_NFD = unicodedata.normalize("NFD", "José@Example.com")


@pytest.mark.parametrize(
    ("spellings", "canonical"),
    [
        ([JOSE_NFC, JOSE_NFD, JOSE_NFC.upper(), f"  {JOSE_NFD} "], "josé@example.com"),
        (
            [
                "maria@bücher.de",
                "maria@xn--bcher-kva.de",
                "MARIA@XN--BCHER-KVA.DE",
                "maria@BÜCHER.de",
            ],
            "maria@bücher.de",
        ),
        # A fullwidth domain maps to ASCII under UTS #46.
        (["x@\uff25\uff38\uff21\uff2d\uff30\uff2c\uff25.com", "X@example.COM"], "x@example.com"),
        (["ana@example.test"], "ana@example.test"),  # special-use domains stay accepted
    ],
)
def test_every_spelling_of_one_mailbox_has_one_canonical_form(
    spellings: list[str], canonical: str
) -> None:
    assert {normalise_email(spelling) for spelling in spellings} == {canonical}
    assert unicodedata.is_normalized("NFC", canonical)


@pytest.mark.parametrize(
    "address",
    [JOSE_NFD, "maria@xn--bcher-kva.de", "İSTANBUL@example.com", "ǅemal@example.com", "ﬁ@a.io"],
)
def test_the_canonical_form_is_idempotent(address: str) -> None:
    once = normalise_email(address)
    assert normalise_email(once) == once


def test_different_mailboxes_stay_different() -> None:
    # Compatibility forms are not folded (NFC, not NFKC): "ﬁ" and "fi" are two local parts.
    assert normalise_email("ﬁ@example.com") != normalise_email("fi@example.com")
    assert normalise_email("jose@example.com") != normalise_email(JOSE_NFC)


def test_an_address_the_validator_refuses_is_still_folded_for_lookups() -> None:
    assert normalise_email(f" {unicodedata.normalize('NFD', 'JOSÉ')}@@x ") == "josé@@x"
