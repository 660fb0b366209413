"""The invoice rules of domain.py, table-tested: the NF-e access key and its check digit (the
manual's own example among them), the tax rule and its rounding, the status machine with the
cancellation window, and the issuer's configuration."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from services.financial import domain
from services.financial.domain import InvoiceStatus, KeyParts
from services.financial.issuer import load_issuer
from services.platform import SettingsError


@pytest.mark.parametrize(
    ("first_43", "digit"),
    [
        # The example of the Manual de Orientação do Contribuinte (NF-e), check digit 5.
        ("5206043300991100250655012000000780026730161", 5),
        ("3518085921323796459658616836269987262217787", 0),  # remainder 0 → 0
        ("3525102734646869589693504925899139441177151", 0),  # remainder 1 → 0
        ("3539825979190748337887623286012904047966697", 9),  # remainder 2 → 11 - 2
        ("3583592451959264847564696062307986830784853", 1),  # remainder 10 → 1
    ],
)
def test_the_check_digit_is_modulo_11_with_weights_2_to_9_from_the_right(
    first_43: str, digit: int
) -> None:
    assert domain.nfe_check_digit(first_43) == digit
    assert domain.nfe_key_is_valid(f"{first_43}{digit}")
    assert not domain.nfe_key_is_valid(f"{first_43}{(digit + 1) % 10}")


@pytest.mark.parametrize("digits", ["", "1" * 42, "1" * 44, "x" * 43])
def test_the_check_digit_covers_exactly_43_digits(digits: str) -> None:
    with pytest.raises(ValueError, match="43 digits"):
        domain.nfe_check_digit(digits)


def test_a_key_is_its_parts_in_the_manuals_order() -> None:
    parts = KeyParts("35", date(2025, 2, 3), "11222333000181", series=1, number=1, code=9550155)
    key = domain.nfe_key(parts)
    assert key == "35250211222333000181550010000000011095501554"
    assert (key[0:2], key[2:6], key[6:20], key[20:22]) == ("35", "2502", "11222333000181", "55")
    assert (key[22:25], key[25:34], key[34], key[35:43]) == ("001", "000000001", "1", "09550155")
    assert domain.nfe_key_is_valid(key)


def test_the_widest_parts_still_make_44_digits() -> None:
    parts = KeyParts("53", date(2099, 12, 31), "99999999000191", 999, 999_999_999, 99_999_999)
    key = domain.nfe_key(parts)
    assert len(key) == 44
    assert domain.nfe_key_is_valid(key)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"state_code": "5"}, "cUF"),
        ({"cnpj": "1122233300018"}, "CNPJ"),
        ({"series": 1000}, "series"),
        ({"number": 0}, "number"),
        ({"number": 1_000_000_000}, "number"),
        ({"code": 100_000_000}, "cNF"),
    ],
)
def test_parts_that_do_not_fit_are_refused(change: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {
        "state_code": "35",
        "issued_on": date(2025, 2, 3),
        "cnpj": "11222333000181",
        "series": 1,
        "number": 1,
        "code": 1,
    }
    with pytest.raises(ValueError, match=message):
        domain.nfe_key(KeyParts(**{**fields, **change}))  # type: ignore[arg-type]


def test_the_numeric_code_is_reproducible_and_never_the_number() -> None:
    seed = bytes(range(16))
    code = domain.numeric_code(seed, 1)
    assert code == domain.numeric_code(seed, 1)
    assert 0 <= code < 100_000_000
    assert domain.numeric_code(seed, code) == (code + 1) % 100_000_000


@pytest.mark.parametrize(
    ("total", "rate", "taxes", "amount"),
    [
        ("1250.00", "0.18", "225.00", "1025.00"),
        ("349.90", "0.18", "62.98", "286.92"),  # 62.982 → down
        ("0.25", "0.10", "0.02", "0.23"),  # 0.025 → half to even: 0.02
        ("0.35", "0.10", "0.04", "0.31"),  # 0.035 → half to even: 0.04
        ("10.00", "0", "0.00", "10.00"),
        ("0.00", "0.18", "0.00", "0.00"),
    ],
)
def test_the_taxes_are_inside_the_total_rounded_half_even(
    total: str, rate: str, taxes: str, amount: str
) -> None:
    result = domain.invoice_taxes(Decimal(total), Decimal(rate))
    assert (result.taxes, result.amount, result.total) == (
        Decimal(taxes),
        Decimal(amount),
        Decimal(total),
    )
    assert result.amount + result.taxes == result.total


@pytest.mark.parametrize(("total", "rate"), [("-1.00", "0.18"), ("1.00", "1"), ("1.00", "-0.1")])
def test_impossible_taxes_are_refused(total: str, rate: str) -> None:
    with pytest.raises(ValueError, match=r"cannot be negative|tax rate"):
        domain.invoice_taxes(Decimal(total), Decimal(rate))


V = InvoiceStatus
LEGAL = {
    (V.PENDING, V.ISSUED),
    (V.PENDING, V.CANCELLED),
    (V.ISSUED, V.SENT),
    (V.ISSUED, V.CANCELLED),
    (V.SENT, V.CANCELLED),
}
NOW = datetime(2025, 2, 4, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(("current", "target"), [(c, t) for c in V for t in V])
def test_the_invoice_machine_has_exactly_the_designed_edges(
    current: InvoiceStatus, target: InvoiceStatus
) -> None:
    problem = domain.invoice_transition_problem(
        current, target, issued_at=NOW - timedelta(hours=1), now=NOW
    )
    if (current, target) in LEGAL:
        assert problem is None
    else:
        assert problem == f"is {current}: it cannot become {target}"


@pytest.mark.parametrize(
    ("issued_ago", "allowed"),
    [
        (timedelta(hours=1), True),
        (timedelta(hours=24), True),
        (timedelta(hours=24, seconds=1), False),
        (timedelta(days=30), False),
    ],
)
def test_a_sent_invoice_is_cancelled_only_within_24_hours_of_its_issue(
    issued_ago: timedelta, allowed: bool
) -> None:
    problem = domain.invoice_transition_problem(
        V.SENT, V.CANCELLED, issued_at=NOW - issued_ago, now=NOW
    )
    assert (problem is None) is allowed
    if not allowed:
        assert problem == "was issued more than 24 hours ago: it can no longer be cancelled"
    # An issued (not yet sent) invoice has no window in this machine: it never left.
    late = domain.invoice_transition_problem(
        V.ISSUED, V.CANCELLED, issued_at=NOW - issued_ago, now=NOW
    )
    assert late is None


def test_the_issuer_has_valid_defaults() -> None:
    issuer = load_issuer({})
    assert (issuer.cnpj, issuer.state_code, issuer.series) == ("11222333000181", "35", "1")
    assert issuer.tax_rate == Decimal("0.18")


def test_a_bad_issuer_configuration_names_every_variable() -> None:
    with pytest.raises(SettingsError) as refused:
        load_issuer(
            {
                "ERP_FINANCIAL_ISSUER_CNPJ": "11222333000180",
                "ERP_FINANCIAL_ISSUER_NAME": " ",
                "ERP_FINANCIAL_ISSUER_STATE_CODE": "99",
                "ERP_FINANCIAL_INVOICE_SERIES": "001",
                "ERP_FINANCIAL_TAX_RATE": "NaN",
            }
        )
    assert [error.split(":")[0] for error in refused.value.errors] == [
        "ERP_FINANCIAL_ISSUER_CNPJ",
        "ERP_FINANCIAL_ISSUER_NAME",
        "ERP_FINANCIAL_ISSUER_STATE_CODE",
        "ERP_FINANCIAL_INVOICE_SERIES",
        "ERP_FINANCIAL_TAX_RATE",
    ]


@pytest.mark.parametrize("rate", ["1", "0.12345", "-0.01", "abc"])
def test_a_tax_rate_out_of_range_is_refused(rate: str) -> None:
    with pytest.raises(SettingsError, match="ERP_FINANCIAL_TAX_RATE"):
        load_issuer({"ERP_FINANCIAL_TAX_RATE": rate})
