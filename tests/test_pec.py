import email
import email.policy
from email.mime.application import MIMEApplication
from email.mime.message import MIMEMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from pathlib import Path

import pytest

from maild.pec import read_pec

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
PEC = SHARED / "corpus" / "pec"


def _load(path: Path) -> email.message.Message:
    return email.message_from_bytes(path.read_bytes(), policy=email.policy.compat32)


# per STRUCTURE.md / SOURCE.md: kind, X-Ricevuta, real sender, subject of the original,
# X-Riferimento-Message-ID, daticert tipo/errore, whether postacert.eml travels with it
CORPUS = {
    "java-pec-parser/accettazione.eml": (
        "receipt", "accettazione", "sender@fakepec.it", "Test PEC",
        "<SN05IE$951DEC16C1CFD3E4FD8FF1B1D24A99AE@fakepec.it>", "accettazione", "nessuno", False,
    ),
    "java-pec-parser/consegna.eml": (
        "receipt", "errore-consegna", "sender@fakepec.it", "Test PEC",
        "<SN05IE$951DEC16C1CFD3E4FD8FF1B1D24A99AE@pec.it>", "errore-consegna", "no-dest", False,
    ),
    "go-pec/accettazione.eml": (
        "receipt", "accettazione", "sender@fakepec.it", "Test PEC",
        "<SN05IE$951DEC16C1CFD3E4FD8FF1B1D24A99AE@fakepec.it>", "accettazione", "nessuno", False,
    ),
    "go-pec/consegna.eml": (
        "receipt", "errore-consegna", "sender@fakepec.it", "Test PEC",
        "<SN05IE$951DEC16C1CFD3E4FD8FF1B1D24A99AE@pec.it>", "errore-consegna", "no-dest", False,
    ),
    "go-pec/email_2.eml": (
        "receipt", "avvenuta-consegna", "no-reply@example.com", "Subject",
        "<CZPXCJRZKQDRVYXFAZYUIAWNACDAAHEVAEXAKN@example.com>", "avvenuta-consegna", "nessuno",
        True,
    ),
    "go-pec/email_3.eml": (
        "envelope", None, "no-reply@example.com", "SUBJECT",
        "<CZPXCJRZKQDRVYXFAZYUIAWNACDAEXAKN@example.com>", "posta-certificata", "nessuno", True,
    ),
}  # fmt: skip


def test_corpus_is_covered():
    assert sorted(str(p.relative_to(PEC)) for p in PEC.glob("*/*.eml")) == sorted(CORPUS)


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_corpus(name):
    kind, receipt, sender, subject, riferimento, tipo, errore, has_original = CORPUS[name]
    info = read_pec(_load(PEC / name))
    assert info is not None
    assert info.kind == kind
    assert info.receipt_type == receipt
    assert info.real_sender == sender
    assert info.original_subject == subject
    assert info.riferimento_message_id == riferimento
    assert info.daticert["tipo"] == tipo
    assert info.daticert["errore"] == errore
    assert info.daticert_xml.startswith(b"<?xml")
    assert (info.original is not None) == has_original
    if has_original:
        original = email.message_from_bytes(info.original, policy=email.policy.compat32)
        assert original["From"] and original["Message-ID"]
        # the original comes out as it went in
        assert info.original in (PEC / name).read_bytes() or name.endswith("email_3.eml")


def test_daticert_fields():
    d = read_pec(_load(PEC / "java-pec-parser/consegna.eml")).daticert
    assert d["mittente"] == "sender@fakepec.it"
    assert d["destinatari"] == ["rec@pec.it"]
    assert d["risposte"] == "sender@fakepec.it"
    assert d["oggetto"] == "Test PEC"
    assert d["gestore_emittente"] == "FAKE PEC S.p.A."
    assert d["identificativo"] == "opec210312.20241115182038.288127.606.1.53@fakepec.it"
    assert d["msgid"] == "<SN05IE$951DEC16C1CFD3E4FD8FF1B1D24A99AE@fakepec.it>"
    assert d["consegna"] == "rec@fakepec.it"
    assert d["errore_esteso"] == "5.1.1 - FAKE Pec S.p.A. - indirizzo non valido"
    assert (d["giorno"], d["ora"], d["zona"]) == ("15/11/2024", "18:21:03", "+0100")
    assert d["data"] == "2024-11-15T18:21:03+01:00"
    envelope = read_pec(_load(PEC / "go-pec/email_3.eml"))
    assert envelope.daticert["ricevuta"] == "completa" and envelope.tipo_ricevuta == "completa"


def test_envelope_original_is_the_users_mail():
    info = read_pec(_load(PEC / "go-pec/email_3.eml"))
    original = email.message_from_bytes(info.original, policy=email.policy.compat32)
    assert original["Message-ID"] == "<CZPXCJRZKQDRVYXFAZYUIAWNACDAAHEVAEXAKN@example.com>"
    assert any(
        p.get_content_type() == "text/plain" and p.get_payload().strip() == "text"
        for p in original.walk()
    )
    # the envelope's signature is not part of the user's mail
    assert b"smime.p7s" not in info.original


def _signed_pec(headers: dict[str, str], mixed_parts: list, with_signature: bool = True):
    """A PEC message as providers build it: multipart/signed(multipart/mixed(...), smime.p7s)."""
    mixed = MIMEMultipart("mixed")
    alternative = MIMEMultipart("alternative")
    alternative.attach(MIMEText("Messaggio di posta certificata", "plain", "iso-8859-1"))
    alternative.attach(MIMEText("<p>Messaggio di posta certificata</p>", "html", "iso-8859-1"))
    mixed.attach(alternative)
    for part in mixed_parts:
        mixed.attach(part)
    signed = MIMEMultipart("signed", protocol="application/x-pkcs7-signature", micalg="sha1")
    signed.attach(mixed)
    if with_signature:
        sig = MIMEApplication(b"\x30\x80fake", "x-pkcs7-signature", name="smime.p7s")
        sig.add_header("Content-Disposition", "attachment", filename="smime.p7s")
        signed.attach(sig)
    for key, value in headers.items():
        signed[key] = value
    return email.message_from_bytes(signed.as_bytes(), policy=email.policy.compat32)


def _users_mail() -> email.message.Message:
    mail = MIMEText("Buongiorno,\nallego la determina.\n", "plain", "utf-8")
    mail["From"] = "Ufficio Protocollo <protocollo@pec.comune.example.it>"
    mail["To"] = "supporto@pec.consorzio.example"
    mail["Subject"] = "R: [Ticket#2026-000131] PEC protocollo non riceve messaggi"
    mail["Message-ID"] = "<orig-1@pec.comune.example.it>"
    return mail


def test_synthetic_anomaly_envelope():
    wrapped = MIMEMessage(_users_mail())
    wrapped.add_header("Content-Disposition", "attachment", filename="original.eml")
    msg = _signed_pec(
        {
            "X-Trasporto": "errore",
            "X-Riferimento-Message-ID": "<orig-1@pec.comune.example.it>",
            "From": '"Per conto di: protocollo@pec.comune.example.it" '
            "<posta-certificata@pec.provider.example>",
            "Reply-To": "protocollo@pec.comune.example.it",
            "Subject": "ANOMALIA MESSAGGIO: R: [Ticket#2026-000131] PEC protocollo non riceve "
            "messaggi",
        },
        [wrapped],
    )
    info = read_pec(msg)
    assert info.kind == "anomaly"
    assert info.receipt_type is None
    assert info.daticert == {} and info.daticert_xml is None  # anomalies carry no daticert
    assert info.real_sender == "protocollo@pec.comune.example.it"
    assert info.original_subject == "R: [Ticket#2026-000131] PEC protocollo non riceve messaggi"
    assert info.riferimento_message_id == "<orig-1@pec.comune.example.it>"
    original = email.message_from_bytes(info.original, policy=email.policy.compat32)
    assert original["Message-ID"] == "<orig-1@pec.comune.example.it>"
    assert "allego la determina" in original.get_payload(decode=True).decode()


def test_anomaly_without_original_falls_back_to_per_conto_di():
    msg = _signed_pec(
        {
            "X-Trasporto": "errore",
            "From": '"Per conto di: mario.rossi@pec.comune.example.it" '
            "<posta-certificata@pec.provider.example>",
            "Subject": "ANOMALIA MESSAGGIO: prova",
        },
        [],
        with_signature=False,
    )
    info = read_pec(msg)
    assert info.kind == "anomaly" and info.original is None
    assert info.real_sender == "mario.rossi@pec.comune.example.it"
    assert info.original_subject == "prova"


def test_mailman_wrapped_envelope():
    """The signed PEC tree inside a mailing list's multipart/mixed with footer parts."""
    raw = (PEC / "go-pec/email_3.eml").read_bytes().replace(b"\r\n", b"\n")
    head, body = raw.split(b"\n\n", 1)
    lines = head.split(b"\n")
    signed_type = next(line for line in lines if line.startswith(b"Content-Type:"))
    list_head = b"\n".join(line for line in lines if line is not signed_type)
    wrapped = (
        list_head
        + b'\nContent-Type: multipart/mixed; boundary="LISTA"\n\n'
        + b"--LISTA\n"
        + signed_type
        + b"\n\n"
        + body
        + b"\n--LISTA\nContent-Type: text/plain\n\n_______________\nLista utenti-pec\n"
        + b"--LISTA\nContent-Type: text/plain\n\nPer cancellarsi: https://lists.example/\n"
        + b"--LISTA--\n"
    )
    msg = email.message_from_bytes(wrapped, policy=email.policy.compat32)
    assert msg.get_content_type() == "multipart/mixed"
    info = read_pec(msg)
    assert info.kind == "envelope"
    assert info.daticert["tipo"] == "posta-certificata"
    assert info.real_sender == "no-reply@example.com"
    assert info.original is not None and b"CZPXCJRZKQDRVYXFAZYUIAWNACDAAHEVAEXAKN" in info.original
    assert b"Lista utenti-pec" not in info.original


def test_receipt_recognised_from_daticert_when_headers_are_lost():
    msg = _load(PEC / "go-pec/accettazione.eml")
    del msg["X-Ricevuta"]
    info = read_pec(msg)
    assert info.kind == "receipt" and info.receipt_type == "accettazione"


def test_ordinary_mail_is_not_pec():
    sample = SHARED / "samples" / "italian-mail" / "a01-outlook2016-new-windows1252.eml"
    assert read_pec(_load(sample)) is None
    # the certified mail itself, once unwrapped, is ordinary mail
    inner = read_pec(_load(PEC / "go-pec/email_3.eml")).original
    assert read_pec(email.message_from_bytes(inner, policy=email.policy.compat32)) is None


def test_daticert_with_entities_is_not_expanded():
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE postacert [<!ENTITY a "aaaaaaaaaa">'
        b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
        b'<postacert tipo="accettazione" errore="nessuno"><intestazione>'
        b"<oggetto>&b;</oggetto></intestazione></postacert>"
    )
    daticert = MIMEApplication(bomb, "xml", name="daticert.xml")
    daticert.add_header("Content-Disposition", "inline", filename="daticert.xml")
    msg = _signed_pec({"X-Ricevuta": "accettazione", "Subject": "ACCETTAZIONE: x"}, [daticert])
    info = read_pec(msg)
    assert info.kind == "receipt"
    assert info.daticert == {}
    assert info.daticert_xml == bomb  # kept for the record, never parsed


def test_daticert_with_external_doctype_is_read():
    xml = (
        b'<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE postacert SYSTEM "daticert.dtd">\n'
        b'<postacert tipo="avvenuta-consegna" errore="nessuno"><intestazione>'
        b'<mittente>a@pec.example.it</mittente><destinatari tipo="esterno">b@example.it'
        b"</destinatari><oggetto>Prova \xc3\xa8</oggetto></intestazione><dati>"
        b"<consegna>b@example.it</consegna></dati></postacert>"
    )
    daticert = MIMEApplication(xml, "xml", name="daticert.xml")
    msg = _signed_pec({"X-Ricevuta": "avvenuta-consegna", "Subject": "CONSEGNA: x"}, [daticert])
    d = read_pec(msg).daticert
    assert d["oggetto"] == "Prova è"
    assert d["destinatari_esterni"] == ["b@example.it"]
    assert d["consegna"] == "b@example.it"
