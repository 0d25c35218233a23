"""PEC through `Ingestor.ingest` (the daemon's path): every file of ../shared/corpus/pec as
STRUCTURE.md describes it, and envelopes/receipts built to the same layout for the kinds and
cases the corpus lacks (a comune's real sender, anomaly envelopes, the rarer receipts)."""

from __future__ import annotations

import base64
import uuid
from email.utils import make_msgid

import pytest

from maild.ingest import RECEIPTS
from maild.parse import parse_message
from maild.pec import read_pec
from maild.pec_intake import (
    ANOMALY_NAME,
    ANOMALY_NOTE,
    DATICERT_NAME,
    ENVELOPE_NAME,
    open_envelope,
)

from .conftest import SHARED
from .mails import make_mail
from .test_italian_mail import (
    articles,
    events,
    ingest,
    open_ticket,
    outbox,
    runtime,
    shared_db,  # noqa: F401 (fixture)
    tickets,
)


@pytest.fixture
def rt(shared_db, state_dir):  # noqa: F811
    return runtime(shared_db, state_dir)


CORPUS = SHARED / "corpus" / "pec"
REQUESTER = "m.rossi@comune.vaiano-cremasco.cr.it"
PROVIDER = "posta-certificata@pec.aruba.it"


# -- building PEC messages as providers write them (STRUCTURE.md, "MIME layout") -------------


def daticert(tipo: str, *, msgid: str, mittente: str, oggetto: str, errore="nessuno", **dati):
    extra = "".join(f"<{k.replace('_', '-')}>{v}</{k.replace('_', '-')}>" for k, v in dati.items())
    esc = msgid.replace("<", "&lt;").replace(">", "&gt;")
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<postacert tipo="{tipo}" errore="{errore}">'
        f"<intestazione><mittente>{mittente}</mittente>"
        f'<destinatari tipo="certificato">supporto@consorzio.example</destinatari>'
        f"<risposte>{mittente}</risposte><oggetto>{oggetto}</oggetto></intestazione>"
        f"<dati><gestore-emittente>Aruba PEC S.p.A.</gestore-emittente>"
        f'<data zona="+0100"><giorno>24/03/2026</giorno><ora>10:15:00</ora></data>'
        f"<identificativo>opec21192.20260324101500.1.1@pec.aruba.it</identificativo>"
        f"<msgid>{esc}</msgid>{extra}</dati></postacert>"
    ).encode()


def pec_message(
    headers: dict[str, str],
    subject: str,
    *,
    xml: bytes | None,
    inner: bytes | None = None,
    inner_name: str = "postacert.eml",
    sender: str = PROVIDER,
) -> bytes:
    """multipart/signed > multipart/mixed > (text, daticert.xml, postacert.eml)."""
    sig, mix = (f"{name}-{uuid.uuid4().hex}" for name in ("SIG", "MIX"))
    head = {
        "Date": "Tue, 24 Mar 2026 10:15:00 +0100",
        **headers,
        "From": sender,
        "To": "supporto@consorzio.example",
        "Subject": subject,
        "Message-ID": make_msgid(domain="pec.aruba.it"),
        "MIME-Version": "1.0",
        "Content-Type": 'multipart/signed; protocol="application/pkcs7-signature"; '
        f'micalg="sha-256"; boundary="{sig}"',
    }
    lines = [f"{k}: {v}" for k, v in head.items()]
    lines += ["", "This is an S/MIME signed message", "", f"--{sig}"]
    lines += [f'Content-Type: multipart/mixed; boundary="{mix}"', "", f"--{mix}"]
    lines += ["Content-Type: text/plain; charset=iso-8859-1", "Content-Transfer-Encoding: 8bit"]
    lines += ["", "Messaggio di posta certificata", "", "Il giorno 24/03/2026 alle ore 10:15:00"]
    if xml is not None:
        lines += [f"--{mix}", 'Content-Type: application/xml; name="daticert.xml"']
        lines += ['Content-Disposition: inline; filename="daticert.xml"']
        lines += ["Content-Transfer-Encoding: base64", "", base64.encodebytes(xml).decode()]
    if inner is not None:
        lines += [f"--{mix}", f'Content-Type: message/rfc822; name="{inner_name}"']
        lines += [f'Content-Disposition: inline; filename="{inner_name}"', ""]
        lines += [inner.decode("utf-8").replace("\r\n", "\n").rstrip("\n").replace("\n", "\r\n")]
    lines += [
        f"--{mix}--",
        "",
        f"--{sig}",
        'Content-Type: application/pkcs7-signature; name="smime.p7s"',
    ]
    lines += ["Content-Transfer-Encoding: base64", "", "MIIBAAYJKoZIhvcNAQcCoIA=", f"--{sig}--", ""]
    return "\r\n".join(lines).encode("utf-8")


def envelope(inner: bytes, *, anomaly: bool = False, inner_name: str = "postacert.eml") -> bytes:
    msg = parse_message(inner)
    prefix = "ANOMALIA MESSAGGIO" if anomaly else "POSTA CERTIFICATA"
    xml = daticert(
        "posta-certificata",
        msgid=msg.message_id,
        mittente=msg.sender.email,
        oggetto=msg.subject,
    )
    return pec_message(
        {
            "X-Trasporto": "errore" if anomaly else "posta-certificata",
            "X-Riferimento-Message-ID": msg.message_id,
            "Reply-To": msg.sender.email,
        },
        f"{prefix}: {msg.subject}",
        xml=None if anomaly else xml,
        inner=inner,
        inner_name=inner_name,
        sender=f'"Per conto di: {msg.sender.email}" <{PROVIDER}>',
    )


RECEIPT_SUBJECTS = {
    "accettazione": "ACCETTAZIONE",
    "non-accettazione": "AVVISO DI NON ACCETTAZIONE",
    "presa-in-carico": "PRESA IN CARICO",
    "avvenuta-consegna": "CONSEGNA",
    "errore-consegna": "AVVISO DI MANCATA CONSEGNA",
    "preavviso-errore-consegna": "PREAVVISO DI MANCATA CONSEGNA",
    "rilevazione-virus": "AVVISO DI RILEVAZIONE VIRUS",
}


def receipt(kind: str, refers_to: str, subject: str = "Risposta al protocollo 1234") -> bytes:
    errore = (
        "nessuno" if kind in ("accettazione", "avvenuta-consegna", "presa-in-carico") else "altro"
    )
    extra = {"consegna": "protocollo@pec.comune.crema.cr.it"} if "consegna" in kind else {}
    xml = daticert(
        kind, msgid=refers_to, mittente="supporto@pec.consorzio.example", oggetto=subject,
        errore=errore, **extra,
    )  # fmt: skip
    return pec_message(
        {"X-Ricevuta": kind, "X-Riferimento-Message-ID": refers_to},
        f"{RECEIPT_SUBJECTS[kind]}: {subject}",
        xml=xml,
    )


def request(subject: str = "Delibera da protocollare: scanner non funziona", **kw) -> bytes:
    return make_mail(
        sender=REQUESTER,
        subject=subject,
        body="Buongiorno, lo scanner del protocollo non acquisisce le delibere.\n",
        attachments=[("delibera.pdf", "application/pdf", b"%PDF-1.4 delibera")],
        **kw,
    )


# -- the corpus ------------------------------------------------------------------------------

RECEIPT_FILES = [
    "go-pec/accettazione.eml",
    "go-pec/consegna.eml",
    "go-pec/email_2.eml",
    "java-pec-parser/accettazione.eml",
    "java-pec-parser/consegna.eml",
]
ENVELOPE_FILES = ["go-pec/email_3.eml"]


def corpus(name: str) -> bytes:
    return (CORPUS / name).read_bytes()


def test_every_corpus_file_is_covered():
    found = sorted(str(p.relative_to(CORPUS)) for p in CORPUS.rglob("*.eml"))
    assert found == sorted(RECEIPT_FILES + ENVELOPE_FILES)


def test_corpus_envelope_becomes_ticket_for_its_real_sender(rt):
    raw = corpus("go-pec/email_3.eml")
    res = ingest(rt, raw)
    assert res.outcome == "new_ticket"
    [t] = tickets(rt)
    # from postacert.eml, stacked "POSTA CERTIFICATA:" prefixes removed
    assert (t.title, t.requester_email) == ("SUBJECT", "no-reply@example.com")
    [art] = articles(rt, t.number)
    assert art.body_text.strip() == "text"  # the certified mail's body, not the provider's
    by_name = {a.filename: a for a in art.attachments}
    assert rt.blobs.get(by_name[ENVELOPE_NAME].sha256) == raw
    assert rt.blobs.get(by_name[DATICERT_NAME].sha256).startswith(b"<?xml")
    # the certified sender is a no-reply address: a ticket, but never an acknowledgement
    assert outbox(rt, "ack") == []


@pytest.mark.parametrize("name", RECEIPT_FILES)
def test_corpus_receipt_without_ticket_goes_to_receipts_folder(rt, name):
    res = ingest(rt, corpus(name))
    assert (res.outcome, res.folder, res.ticket_number) == ("pec_receipt_unmatched", RECEIPTS, None)
    assert tickets(rt) == [] and outbox(rt) == []
    again = ingest(rt, corpus(name))  # a crash before the move: recognised, same folder
    assert again.duplicate and again.folder == RECEIPTS


@pytest.mark.parametrize("name", RECEIPT_FILES)
def test_corpus_receipt_is_an_event_on_its_ticket(rt, name):
    pec = read_pec(parse_message(corpus(name)).email)
    # our Message-ID as daticert.xml names it: X-Riferimento-Message-ID differs in
    # java-pec-parser/consegna.eml, so that one is found by the daticert msgid
    open_ticket(rt, "2026-000042", REQUESTER, message_ids=(pec.daticert["msgid"],))
    res = ingest(rt, corpus(name))
    assert (res.outcome, res.ticket_number, res.folder) == (
        "pec_receipt",
        "2026-000042",
        "processed",
    )
    [ev] = events(rt, "2026-000042", "pec_receipt")
    assert ev.new_value.startswith(pec.receipt_type)
    [art] = articles(rt, "2026-000042")
    assert art.internal
    assert DATICERT_NAME in {a.filename for a in art.attachments}
    assert len(tickets(rt)) == 1 and outbox(rt) == []
    if pec.receipt_type == "errore-consegna":
        assert "indirizzo non valido" in ev.new_value


def test_delivery_receipt_of_corpus_envelope_lands_on_its_ticket(rt):
    """email_2 (avvenuta-consegna, completa) refers to the message email_3 carries."""
    first = ingest(rt, corpus("go-pec/email_3.eml"))
    res = ingest(rt, corpus("go-pec/email_2.eml"))
    assert (res.outcome, res.ticket_number) == ("pec_receipt", first.ticket_number)
    assert len(tickets(rt)) == 1


# -- envelopes as a comune's PEC sends them --------------------------------------------------


def test_envelope_ticket_and_acknowledgement_go_to_the_real_sender(rt):
    inner = request(message_id="<pec-req-1@comune.vaiano-cremasco.cr.it>")
    raw = envelope(inner)
    res = ingest(rt, raw)
    assert res.outcome == "new_ticket"
    [t] = tickets(rt)
    assert t.requester_email == REQUESTER and t.ente == "Comune di Vaiano Cremasco"
    assert t.title == "Delibera da protocollare: scanner non funziona"
    assert t.origin_message_id == "<pec-req-1@comune.vaiano-cremasco.cr.it>"
    [art] = articles(rt, t.number)
    assert art.sender == REQUESTER
    assert "non acquisisce le delibere" in art.body_text
    assert "posta certificata" not in art.body_text.lower()
    assert [a.filename for a in art.attachments] == ["delibera.pdf", ENVELOPE_NAME, DATICERT_NAME]
    assert rt.blobs.get(art.raw_sha256) == raw  # the signed envelope, byte for byte
    [ack] = outbox(rt, "ack")
    assert ack.recipients == [REQUESTER]
    assert all(PROVIDER not in o.recipients for o in outbox(rt))


def test_envelope_carrying_a_reply_follows_up_its_ticket(rt):
    open_ticket(rt, "2026-000123", REQUESTER, message_ids=("<maild.2026-000123.ack@x>",))
    inner = make_mail(
        sender=REQUESTER,
        subject="R: [Ticket#2026-000123] Stampante di rete",
        body="Ho riavviato la stampante, ora funziona.\n\n-----Messaggio originale-----\n"
        "Da: Supporto\nInviato: lunedì\nOggetto: richiesta\n\nLa richiesta è registrata.\n",
        in_reply_to="<maild.2026-000123.ack@x>",
    )
    res = ingest(rt, envelope(inner))
    assert (res.outcome, res.ticket_number) == ("follow_up", "2026-000123")
    art = articles(rt, "2026-000123")[-1]
    assert "ora funziona" in art.body_text and "registrata" not in art.body_text
    assert outbox(rt, "ack") == []


def test_anomaly_envelope_is_the_mail_it_wraps_marked_as_such(rt):
    inner = request(subject="I: Convocazione consiglio comunale")
    raw = envelope(inner, anomaly=True, inner_name="Convocazione consiglio comunale.eml")
    res = ingest(rt, raw)
    assert res.outcome == "new_ticket"
    [t] = tickets(rt)
    assert (t.title, t.requester_email) == ("Convocazione consiglio comunale", REQUESTER)
    [art] = articles(rt, t.number)
    assert art.body_text.startswith(ANOMALY_NOTE)
    assert "non acquisisce le delibere" in art.body_text
    by_name = {a.filename: a for a in art.attachments}
    assert rt.blobs.get(by_name[ANOMALY_NAME].sha256) == raw
    assert ENVELOPE_NAME not in by_name
    [ack] = outbox(rt, "ack")
    assert ack.recipients == [REQUESTER]


# -- every kind of receipt -------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(RECEIPT_SUBJECTS))
def test_every_receipt_kind_is_recorded_never_answered(rt, kind):
    ours = "<maild.2026-000007.r1@consorzio.example>"
    unmatched = ingest(rt, receipt(kind, "<somebody-else@consorzio.example>"))
    assert (unmatched.outcome, unmatched.folder) == ("pec_receipt_unmatched", RECEIPTS)
    open_ticket(rt, "2026-000007", REQUESTER, message_ids=(ours,), status="in_attesa")
    res = ingest(rt, receipt(kind, ours))
    assert (res.outcome, res.ticket_number) == ("pec_receipt", "2026-000007")
    [ev] = events(rt, "2026-000007", "pec_receipt")
    assert ev.new_value.startswith(kind)
    assert len(tickets(rt)) == 1 and outbox(rt) == []
    [t] = tickets(rt)
    assert t.status == "in_attesa"


def test_anomaly_wrapping_a_failed_envelope_opens_both(rt):
    """'ANOMALIA MESSAGGIO: POSTA CERTIFICATA: R: ...': the real sender and the reply's own
    subject, tag and new text, marked as an anomaly."""
    open_ticket(rt, "2026-000150", REQUESTER)
    inner = make_mail(
        sender=REQUESTER,
        subject="R: Re: [Ticket#2026-000150] Protocollo informatico lento",
        body="Da stamattina il protocollo è di nuovo lento.\n",
    )
    raw = envelope(envelope(inner), anomaly=True)
    res = ingest(rt, raw)
    assert (res.outcome, res.ticket_number) == ("follow_up", "2026-000150")
    art = articles(rt, "2026-000150")[-1]
    assert art.sender == REQUESTER
    assert art.subject == "R: Re: [Ticket#2026-000150] Protocollo informatico lento"
    assert ANOMALY_NOTE in art.body_text and "di nuovo lento" in art.body_text
    assert {ENVELOPE_NAME, ANOMALY_NAME, DATICERT_NAME} <= {a.filename for a in art.attachments}


def test_ordinary_mail_is_not_touched():
    msg = parse_message(request())
    assert open_envelope(msg) is msg
