import email
import email.policy
import json
from pathlib import Path

import pytest

from maild.autodetect import AutoKind, bounce_info, classify_auto, is_bounce

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SAMPLES = SHARED / "samples" / "italian-mail"
ZAMMAD = SHARED / "corpus" / "zammad"
EXPECTED = json.loads((SAMPLES / "expected.json").read_text(encoding="utf-8"))


def _load(path: Path) -> email.message.Message:
    return email.message_from_bytes(path.read_bytes(), policy=email.policy.compat32)


def _msg(headers: str, body: str = "Buongiorno,\nla stampante non va.\n") -> email.message.Message:
    return email.message_from_string(headers.strip() + "\n\n" + body, policy=email.policy.compat32)


PERSON = "From: Mario Rossi <m.rossi@comune.example.it>\nTo: supporto@consorzio.example\n"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_samples_is_auto(name):
    e = EXPECTED[name]
    kind = classify_auto(_load(SAMPLES / name), e["subject"])
    assert (kind is not None) == e["is_auto"], kind
    if e["kind"] == "bounce":
        assert kind is AutoKind.BOUNCE
    if e["kind"] == "auto-reply":
        assert kind is AutoKind.AUTO_REPLY


@pytest.mark.parametrize(
    "name", ["a20-exchange2016-ndr-italian.eml", "a21-aruba-postfix-bounce.eml"]
)
def test_sample_bounce_info(name):
    e = EXPECTED[name]
    info = bounce_info(_load(SAMPLES / name))
    assert info is not None
    assert info.original_message_id == e["refers_to_message_id"] == e["bounced_message_id"]
    assert info.failed_recipients == [e["failed_recipient"]]
    assert info.status == e["status"]
    assert info.action == "failed"
    assert info.diagnostic
    assert e["status"] in info.diagnostic or "over quota" in info.diagnostic
    assert "[Ticket#" in info.original_subject


ZAMMAD_BOUNCES = [
    "mail018.box",
    "mail033-undelivered-mail-returned-to-sender.box",
    "mail033-undelivered-mail-returned-to-sender-notification.box",
    "mail052.box",
    "mail053.box",
    "mail055.box",
    "mail063.box",
    "mail078.box",
    "mail087.box",
    "mail092.box",
]


@pytest.mark.parametrize("name", ZAMMAD_BOUNCES)
def test_zammad_bounces(name):
    msg = _load(ZAMMAD / name)
    assert classify_auto(msg) is AutoKind.BOUNCE
    assert bounce_info(msg) is not None


def test_zammad_bounce_details():
    info = bounce_info(_load(ZAMMAD / "mail053.box"))  # returned headers only (text/rfc822-headers)
    assert info.original_message_id == "<20170227103514.188.920664@help.example.com>"
    assert info.failed_recipients == ["john_example@example.com"]
    assert info.status == "4.4.1"
    delayed = bounce_info(_load(ZAMMAD / "mail078.box"))  # Gmail delay notice
    assert delayed.action == "delayed" and delayed.failed_recipients == []
    assert delayed.original_message_id == "<20150830145601.30.608881@example.com>"
    assert bounce_info(_load(ZAMMAD / "mail018.box")).original_subject == (
        "Angebot für OTRS-Anpassung [Ticket#113588]"
    )


@pytest.mark.parametrize("name", ["mail089.box", "mail090.box"])
def test_zammad_system_notifications(name):
    assert classify_auto(_load(ZAMMAD / name)) is AutoKind.BULK


@pytest.mark.parametrize(
    "headers, kind",
    [
        ("Auto-Submitted: auto-replied\nSubject: Re: x", AutoKind.AUTO_REPLY),
        ("Auto-Submitted: auto-generated\nSubject: Report settimanale", AutoKind.BULK),
        ("X-Autoreply: yes\nSubject: Re: x", AutoKind.AUTO_REPLY),
        ("X-Autorespond: x\nSubject: Re: x", AutoKind.AUTO_REPLY),
        ("Precedence: auto_reply\nSubject: x", AutoKind.AUTO_REPLY),
        ("Precedence: bulk\nSubject: x", AutoKind.BULK),
        ("Precedence: junk\nSubject: x", AutoKind.BULK),
        ("Precedence: list\nSubject: x", AutoKind.BULK),
        ("List-Id: <utenti.lists.example>\nSubject: x", AutoKind.BULK),
        ("Return-Path: <>\nSubject: Re: x", AutoKind.AUTO_REPLY),
        (
            "X-Auto-Response-Suppress: All\nX-MS-Exchange-Inbox-Rules-Loop: a@b.it\nSubject: x",
            AutoKind.AUTO_REPLY,
        ),
        (
            "X-Auto-Response-Suppress: All\n"
            "X-MS-Exchange-Generated-Message-Source: Mailbox Rules Agent\nSubject: x",
            AutoKind.AUTO_REPLY,
        ),
        ("Subject: Risposta automatica: [Ticket#2026-000001] x", AutoKind.AUTO_REPLY),
        ("Subject: Automatic reply: x", AutoKind.AUTO_REPLY),
        ("Subject: Out of Office: x\nAuto-Submitted: auto-generated", AutoKind.AUTO_REPLY),
        ("Subject: Fuori ufficio\nX-Auto-Response-Suppress: All", AutoKind.AUTO_REPLY),
        ("Subject: Non recapitabile: x", AutoKind.BOUNCE),
        ("Subject: Recapito non riuscito: x", AutoKind.BOUNCE),
        ("Subject: Notifica dello stato di recapito (Errore)", AutoKind.BOUNCE),
        ("Subject: Messaggio non recapitato: x", AutoKind.BOUNCE),
        ("Subject: Undeliverable: x", AutoKind.BOUNCE),
        ("Subject: Delivery Status Notification (Failure)", AutoKind.BOUNCE),
        ("Subject: Mail delivery failed: returning message to sender", AutoKind.BOUNCE),
        ("X-MS-Exchange-Message-Is-Ndr:\nSubject: x", AutoKind.BOUNCE),
        ("X-Failed-Recipients: a@b.it\nSubject: x", AutoKind.BOUNCE),
    ],
)
def test_header_rules(headers, kind):
    msg = _msg("From: segreteria@comune.example.it\nTo: supporto@consorzio.example\n" + headers)
    assert classify_auto(msg) is kind
    # the subject given by the caller wins over the header
    assert classify_auto(msg, msg["Subject"]) is kind


def test_mailer_daemon_and_postmaster():
    daemon = _msg("From: MAILER-DAEMON (Mail Delivery System)\nSubject: problema\n")
    assert classify_auto(daemon) is AutoKind.BOUNCE
    postmaster_bounce = _msg("From: postmaster@comune.example.it\nReturn-Path: <>\nSubject: x\n")
    assert classify_auto(postmaster_bounce) is AutoKind.BOUNCE
    # the comune's admin writing from the postmaster box is a person
    postmaster_person = _msg("From: postmaster@comune.example.it\nSubject: casella piena?\n")
    assert classify_auto(postmaster_person) is None


def test_noreply_sender_is_bulk():
    assert classify_auto(_msg("From: Halley <noreply@halley.example>\nSubject: x")) is AutoKind.BULK
    assert classify_auto(_msg("From: do-not-reply@x.example\nSubject: x")) is AutoKind.BULK


def test_read_receipt_is_auto_reply():
    msg = _msg(
        PERSON + "Subject: Letto: x\nMIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=disposition-notification; boundary="b"',
        "--b\nContent-Type: text/plain\n\nletto\n--b--\n",
    )
    assert classify_auto(msg) is AutoKind.AUTO_REPLY


@pytest.mark.parametrize(
    "subject, body",
    [
        ("Stampante non va", "Sono fuori ufficio da domani, risolvete entro oggi?"),
        ("Fuori ufficio da lunedì: chi mi sostituisce sulla PEC?", "Grazie"),
        ("Assenteismo: report presenze non si genera", "Grazie"),
        ("I: Non recapitabile: [Ticket#2026-000001] x", "Perché non arriva?"),
        ("R: Risposta automatica ai cittadini", "Come la configuro?"),
        ("Out of office non si attiva in Outlook", "Aiuto"),
        ("Auto-Submitted: no", "x"),
    ],
)
def test_people_are_not_automatic(subject, body):
    assert classify_auto(_msg(PERSON + f"Subject: {subject}\nAuto-Submitted: no", body)) is None


def test_bounce_forwarded_as_attachment_is_a_request():
    bounce = (SAMPLES / "a21-aruba-postfix-bounce.eml").read_text(encoding="utf-8")
    msg = _msg(
        PERSON + "Subject: I: mail non arrivata\nMIME-Version: 1.0\n"
        'Content-Type: multipart/mixed; boundary="outer"',
        "--outer\nContent-Type: text/plain\n\nVedete sotto, perché?\n"
        "--outer\nContent-Type: message/rfc822\n\n" + bounce + "\n--outer--\n",
    )
    assert classify_auto(msg) is None
    assert bounce_info(msg) is None


def test_plain_text_bounce_without_dsn():
    msg = _msg(
        "From: Mail Delivery System <MAILER-DAEMON@mx.example.it>\nReturn-Path: <>\n"
        "Subject: Mail delivery failed: returning message to sender",
        "This message was created automatically by mail delivery software.\n\n"
        "A message that you sent could not be delivered to one or more of its recipients.\n\n"
        "  <anagrafe@comune.example.it>: 550 5.1.1 <anagrafe@comune.example.it>: user unknown\n\n"
        "------ This is a copy of the message, including all the headers. ------\n\n"
        "Message-ID: <maild.2026-000042.ack@consorzio.example>\n"
        "Subject: [Ticket#2026-000042] Scanner\n\ntesto\n",
    )
    assert is_bounce(msg)
    info = bounce_info(msg)
    assert info.failed_recipients == ["anagrafe@comune.example.it"]
    assert info.status == "5.1.1"
    assert info.original_message_id == "<maild.2026-000042.ack@consorzio.example>"
    assert info.original_subject == "[Ticket#2026-000042] Scanner"
    assert "user unknown" in info.diagnostic


def test_bounce_info_falls_back_to_threading_headers():
    msg = _msg(
        "From: postmaster@comune.example.it\nReturn-Path: <>\nSubject: Undeliverable: x\n"
        "In-Reply-To: <maild.2026-000001.ack@consorzio.example>",
        "Delivery has failed.\n",
    )
    assert bounce_info(msg).original_message_id == "<maild.2026-000001.ack@consorzio.example>"


def test_bounce_info_none_for_people():
    assert bounce_info(_msg(PERSON + "Subject: x")) is None


@pytest.mark.parametrize(
    "name, kind",
    [
        ("java-pec-parser/accettazione.eml", AutoKind.AUTO_REPLY),
        ("go-pec/email_2.eml", AutoKind.AUTO_REPLY),  # avvenuta-consegna
        ("java-pec-parser/consegna.eml", AutoKind.BOUNCE),  # errore-consegna
    ],
)
def test_pec_receipts(name, kind):
    assert classify_auto(_load(SHARED / "corpus" / "pec" / name)) is kind


def test_pec_envelope_is_not_a_receipt():
    # the busta di trasporto carries a person's mail; only its (anonymised) no-reply From
    # makes this fixture bulk, so drop it and look at the PEC markers alone
    msg = _load(SHARED / "corpus" / "pec" / "go-pec" / "email_3.eml")
    msg.replace_header(
        "From", '"Per conto di: m.rossi@pec.example.it" <posta-certificata@pec.example>'
    )
    assert classify_auto(msg) is None
