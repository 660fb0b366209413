"""XML injection into the invoices' renditions (API8 / API10): a cancellation reason is free
text that ends up in the NF-e XML (`xJust`) and the PDF. Markup, CDATA ends, entity
declarations (XXE), quotes and control characters are taken as text: the document still
parses, holds exactly one justification that reads as written (characters XML cannot hold
become U+FFFD), gains no element, resolves no entity, and is served as XML that a browser does
not sniff into HTML; the PDF still opens.
"""

from __future__ import annotations

import io
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime

import pypdf
import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine
from sqlmodel import Session

from services.financial.renditions import NFE_NAMESPACE
from services.financial.tables import Payment
from services.platform.core.settings import load_settings
from tests.support.http import Api, new_ip
from tests.support.processes import ServiceProcess

pytestmark = pytest.mark.integration

NS = {"nfe": NFE_NAMESPACE}
HOSTILE = [
    "Cliente desistiu </xJust><cStat>135</cStat><xJust>",
    'Cliente desistiu "><injected a="1"/><x y="',
    "Cliente desistiu ]]><injected/><![CDATA[",
    '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>&xxe;',
    "Cliente desistiu &amp; &lt;injected/&gt; &#60;injected/&#62;",
    "Cliente desistiu \u0001\u000b\u001f\ufffe no meio",
]


@pytest.fixture(scope="module")
def financial_db(
    security_env: Mapping[str, str], financial_app: ServiceProcess
) -> Iterator[Engine]:
    engine = create_engine(load_settings("financial", 8005, security_env).database_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def financial(financial_app: ServiceProcess, root_token: str) -> Iterator[Api]:
    with Api(financial_app.url, root_token, ip=new_ip()) as api:
        yield api


def approved_order(engine: Engine) -> str:
    """An order whose payment was approved (written as the saga leaves it)."""
    order_id, now = uuid.uuid4(), datetime.now(UTC)
    with Session(engine) as session:
        session.add(
            Payment(
                order_id=order_id,
                order_number=f"ORD-{now.year}-{uuid.uuid4().int % 1_000_000:06d}",
                customer_id=uuid.uuid4(),
                amount="100.00",
                currency="BRL",
                method="pix",
                status="approved",
                gateway_reference=f"SIM-{order_id.hex[:16]}",
                created_at=now,
                updated_at=now,
                processed_at=now,
            )
        )
        session.commit()
    return str(order_id)


def as_xml_text(reason: str) -> str:
    """What a reason reads as in the XML: characters outside XML 1.0 become U+FFFD."""
    allowed = {0x9, 0xA, 0xD}
    return "".join(
        "\ufffd" if (ord(c) < 0x20 and ord(c) not in allowed) or c in "\ufffe\uffff" else c
        for c in reason
    )


@pytest.mark.parametrize("reason", HOSTILE)
def test_a_hostile_reason_is_text_in_the_xml_and_the_pdf(
    financial: Api, financial_db: Engine, reason: str
) -> None:
    order_id = approved_order(financial_db)
    invoice = financial.created("/api/v1/invoices", {"order_id": order_id})
    path = f"/api/v1/invoices/{invoice['id']}"
    assert financial.post(f"{path}/issue").status_code == 200
    cancelled = financial.post(f"{path}/cancel", json={"reason": reason})
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["reason"] == reason  # stored as written

    response = financial.get(f"{path}/xml")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/xml"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert b"<!DOCTYPE" not in response.content  # the reason's declaration is text, not markup
    root = ET.fromstring(response.content)
    [justification] = root.iter(f"{{{NFE_NAMESPACE}}}xJust")
    assert justification.text == as_xml_text(reason)
    assert [element for element in justification] == []
    tags = {element.tag.split("}")[-1] for element in root.iter()}
    assert "injected" not in tags
    assert len(list(root.iter(f"{{{NFE_NAMESPACE}}}cStat"))) == 1  # the protocol's own only
    assert "root:" not in (justification.text or "")  # no file was read into it

    pdf = financial.get(f"{path}/pdf")
    assert pdf.status_code == 200
    page = pypdf.PdfReader(io.BytesIO(pdf.content)).pages[0].extract_text()
    assert invoice["nfe_key"] in page
