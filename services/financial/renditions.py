"""The XML and PDF renditions of an invoice (ADR 0014), pure functions of the invoice and its
issuer.

* XML: an NF-e-like document with the layout 4.00 element names (`nfeProc/NFe/infNFe`, the key
  in `infNFe/@Id`, `protNFe` once issued, the cancellation event once cancelled), built with
  the standard library's ElementTree, which escapes text and attribute values (`<`, `&`, quotes);
  characters XML 1.0 cannot hold at all (control characters) become U+FFFD. Not signed: there
  is no SEFAZ behind it.
* PDF: one A4 page in the manner of a DANFE, made with fpdf2 (issuer, number, series, the access
  key in groups of four and as an Interleaved 2 of 5 barcode, order, totals, status). The PDF
  core fonts hold Latin-1; any other character is drawn as `?`.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import datetime
from decimal import Decimal
from typing import Final

from generated.financial import models
from services.financial.domain import NFE_MODEL, NORMAL_EMISSION
from services.financial.issuer import Issuer

NFE_NAMESPACE: Final = "http://www.portalfiscal.inf.br/nfe"
LAYOUT: Final = "4.00"
CANCELLATION_EVENT: Final = "110111"
# Outside XML 1.0's Char production: C0 controls but tab, newline, carriage return; surrogates;
# U+FFFE and U+FFFF.
_NOT_XML = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
ET.register_namespace("", NFE_NAMESPACE)  # the NF-e namespace is the documents' default
_STATUS_WORDS: Final = {
    "pending": "PENDENTE DE AUTORIZACAO",
    "issued": "AUTORIZADA",
    "sent": "AUTORIZADA E ENVIADA",
    "cancelled": "CANCELADA",
}


def _xml_text(value: str) -> str:
    return _NOT_XML.sub("\ufffd", value)


def _timestamp(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def _add(parent: ET.Element, tag: str, text: str | None = None, **attributes: str) -> ET.Element:
    element = ET.SubElement(parent, f"{{{NFE_NAMESPACE}}}{tag}", attributes)
    if text is not None:
        element.text = _xml_text(text)
    return element


def invoice_xml(invoice: models.Invoice, issuer: Issuer) -> bytes:
    key = invoice.nfe_key
    proc = ET.Element(f"{{{NFE_NAMESPACE}}}nfeProc", {"versao": LAYOUT})
    info = _add(_add(proc, "NFe"), "infNFe", Id=f"NFe{key}", versao=LAYOUT)
    ide = _add(info, "ide")
    for tag, text in (
        ("cUF", key[0:2]),
        ("cNF", key[35:43]),
        ("natOp", "Venda de mercadoria"),
        ("mod", NFE_MODEL),
        ("serie", invoice.series),
        ("nNF", str(invoice.number)),
        ("dhEmi", _timestamp(invoice.created_at)),
        ("tpNF", "1"),
        ("tpEmis", NORMAL_EMISSION),
        ("cDV", key[43]),
    ):
        _add(ide, tag, text)
    emit = _add(info, "emit")
    _add(emit, "CNPJ", issuer.cnpj)
    _add(emit, "xNome", issuer.name)
    rate = f"{Decimal(invoice.tax_rate) * 100:.2f}"
    detail = _add(info, "det", nItem="1")
    product = _add(detail, "prod")
    for tag, text in (
        ("cProd", invoice.order_number),
        ("xProd", f"Mercadorias do pedido {invoice.order_number}"),
        ("qCom", "1.0000"),
        ("vUnCom", invoice.total),
        ("vProd", invoice.total),
    ):
        _add(product, tag, text)
    icms = _add(_add(_add(detail, "imposto"), "ICMS"), "ICMS00")
    _add(icms, "vBC", invoice.total)
    _add(icms, "pICMS", rate)
    _add(icms, "vICMS", invoice.taxes)
    totals = _add(_add(info, "total"), "ICMSTot")
    for tag, text in (
        ("vBC", invoice.total),
        ("vICMS", invoice.taxes),
        ("vProd", invoice.total),
        ("vNF", invoice.total),
    ):
        _add(totals, tag, text)
    _add(_add(info, "compra"), "xPed", invoice.order_number)
    extra = (
        f"Cliente {invoice.customer_id}. Moeda {invoice.currency}. Valor sem ICMS {invoice.amount}."
    )
    _add(_add(info, "infAdic"), "infCpl", extra)
    if invoice.issued_at is not None:
        protocol = _add(_add(proc, "protNFe", versao=LAYOUT), "infProt")
        _add(protocol, "chNFe", key)
        _add(protocol, "dhRecbto", _timestamp(invoice.issued_at))
        _add(protocol, "cStat", "100")
        _add(protocol, "xMotivo", "Autorizado o uso da NF-e")
    if invoice.cancelled_at is not None:
        event = _add(_add(_add(proc, "procEventoNFe", versao="1.00"), "evento"), "infEvento")
        _add(event, "chNFe", key)
        _add(event, "dhEvento", _timestamp(invoice.cancelled_at))
        _add(event, "tpEvento", CANCELLATION_EVENT)
        details = _add(event, "detEvento", versao="1.00")
        _add(details, "descEvento", "Cancelamento")
        _add(details, "xJust", invoice.reason or "")
    document: bytes = ET.tostring(proc, encoding="UTF-8", xml_declaration=True)
    return document


def _latin1(text: str) -> str:
    return text.encode("latin-1", "replace").decode("latin-1")


def grouped_key(key: str) -> str:
    """The key as a DANFE prints it: eleven groups of four digits."""
    return " ".join(key[i : i + 4] for i in range(0, len(key), 4))


def invoice_pdf(invoice: models.Invoice, issuer: Issuer) -> bytes:
    # Imported here: fpdf2 (with Pillow and fontTools) takes most of a second to import, which
    # every start of the service would pay otherwise.
    from fpdf import FPDF

    pdf = FPDF(format="A4")
    pdf.set_title(_latin1(f"NF-e {invoice.number} serie {invoice.series}"))
    pdf.set_creator("ERP financial service")
    pdf.set_auto_page_break(auto=False)
    pdf.add_page()
    width = pdf.epw

    def line(text: str, *, size: int = 10, style: str = "", height: float = 6) -> None:
        pdf.set_font("Helvetica", style=style, size=size)
        pdf.multi_cell(width, height, _latin1(text), new_x="LMARGIN", new_y="NEXT")

    line("DANFE - Documento Auxiliar da Nota Fiscal Eletronica", size=14, style="B", height=8)
    line(f"Emitente: {issuer.name} - CNPJ {issuer.cnpj}")
    line(f"NF-e No {invoice.number}   Serie {invoice.series}   Modelo {NFE_MODEL}")
    line(f"Situacao: {_STATUS_WORDS[invoice.status.value]}", style="B")
    pdf.ln(2)
    line("Chave de acesso", size=9, style="B")
    line(invoice.nfe_key, size=11)
    line(grouped_key(invoice.nfe_key), size=11)
    pdf.interleaved2of5(invoice.nfe_key, x=pdf.l_margin, y=pdf.get_y() + 2, w=0.35, h=14)
    pdf.set_y(pdf.get_y() + 20)
    line(f"Pedido: {invoice.order_number}   Cliente: {invoice.customer_id}")
    line(f"Emissao: {_timestamp(invoice.created_at)}")
    if invoice.issued_at is not None:
        line(f"Protocolo de autorizacao: {_timestamp(invoice.issued_at)}")
    pdf.ln(2)
    rate = f"{Decimal(invoice.tax_rate) * 100:.2f}%"
    for label, value in (
        ("Valor dos produtos sem ICMS", invoice.amount),
        (f"ICMS ({rate}, incluido no total)", invoice.taxes),
        ("Valor total da nota", invoice.total),
    ):
        line(f"{label}: {invoice.currency} {value}")
    if invoice.cancelled_at is not None:
        pdf.ln(2)
        line(f"Cancelada em {_timestamp(invoice.cancelled_at)}", style="B")
        line(f"Justificativa: {invoice.reason or ''}")
    return bytes(pdf.output())
