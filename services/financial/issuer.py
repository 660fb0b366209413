"""Who issues the invoices, and the rule their taxes follow: read from the environment at
start-up (every bad variable named at once, as the kit's settings), kept in `ctx.state`.

| variable | default | |
| --- | --- | --- |
| `ERP_FINANCIAL_ISSUER_CNPJ` | `11222333000181` | 14 digits, valid check digits |
| `ERP_FINANCIAL_ISSUER_NAME` | `ERP Comércio Ltda` | 1 to 60 characters (NF-e `xNome`) |
| `ERP_FINANCIAL_ISSUER_STATE_CODE` | `35` (São Paulo) | IBGE code of the state (`cUF`) |
| `ERP_FINANCIAL_INVOICE_SERIES` | `1` | 0 to 999 |
| `ERP_FINANCIAL_TAX_RATE` | `0.18` | ICMS rate, at least 0 and below 1, at most 4 decimals |
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Final

from stdnum.br import cnpj

from services.financial.domain import RATE_STEP
from services.platform import ServiceContext, SettingsError

ISSUER: Final = "financial.issuer"  # the ctx.state entry
# IBGE codes of the 27 federative units: the only valid cUF values.
STATE_CODES: Final = frozenset(
    {"11", "12", "13", "14", "15", "16", "17", "21", "22", "23", "24", "25", "26", "27"}
    | {"28", "29", "31", "32", "33", "35", "41", "42", "43", "50", "51", "52", "53"}
)
_SERIES = re.compile(r"^(0|[1-9]\d{0,2})$")


@dataclass(frozen=True, slots=True)
class Issuer:
    cnpj: str
    name: str
    state_code: str
    series: str
    tax_rate: Decimal


def load_issuer(env: Mapping[str, str] = os.environ) -> Issuer:
    errors: list[str] = []
    number = env.get("ERP_FINANCIAL_ISSUER_CNPJ", "11222333000181")
    if not (len(number) == 14 and number.isdigit() and cnpj.is_valid(number)):
        errors.append("ERP_FINANCIAL_ISSUER_CNPJ: must be 14 digits with valid check digits")
    name = env.get("ERP_FINANCIAL_ISSUER_NAME", "ERP Comércio Ltda")
    if not 1 <= len(name.strip()) <= 60:
        errors.append("ERP_FINANCIAL_ISSUER_NAME: must be 1 to 60 characters long")
    state = env.get("ERP_FINANCIAL_ISSUER_STATE_CODE", "35")
    if state not in STATE_CODES:
        errors.append("ERP_FINANCIAL_ISSUER_STATE_CODE: must be the IBGE code of a state")
    series = env.get("ERP_FINANCIAL_INVOICE_SERIES", "1")
    if _SERIES.match(series) is None:
        errors.append("ERP_FINANCIAL_INVOICE_SERIES: must be 0 to 999, without leading zeros")
    raw_rate = env.get("ERP_FINANCIAL_TAX_RATE", "0.18")
    try:
        rate = Decimal(raw_rate)
    except InvalidOperation:
        rate = Decimal(-1)
    if not (rate.is_finite() and Decimal(0) <= rate < 1 and rate == rate.quantize(RATE_STEP)):
        errors.append("ERP_FINANCIAL_TAX_RATE: must be a decimal from 0 to below 1 (4 places)")
    if errors:
        raise SettingsError(errors)
    return Issuer(cnpj=number, name=name.strip(), state_code=state, series=series, tax_rate=rate)


async def load_into(ctx: ServiceContext) -> None:
    """Start-up hook: a bad variable stops the service, naming each."""
    ctx.state[ISSUER] = load_issuer()


def issuer_of(ctx: ServiceContext) -> Issuer:
    issuer: Issuer = ctx.state[ISSUER]
    return issuer
