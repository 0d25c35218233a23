"""maild.parse: charsets, bodies, attachments, addresses and robustness on hostile input."""

from __future__ import annotations

import email.header
import random
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maild.html import html_to_text, sanitize_html
from maild.parse import NotAMessage, decode_header_value, parse_message, safe_filename
from maild.tnef import extract_tnef

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
ITALIAN = SHARED / "samples" / "italian-mail"
ZAMMAD = SHARED / "corpus" / "zammad"


def sample(name: str) -> bytes:
    return (ITALIAN / name).read_bytes()


def zammad(name: str) -> bytes:
    return (ZAMMAD / f"{name}.box").read_bytes()


def mail(headers: str, body: bytes | str = b"Testo.\n") -> bytes:
    if isinstance(body, str):
        body = body.encode()
    return headers.strip().replace("\n", "\r\n").encode() + b"\r\n\r\n" + body


# --- Italian samples ----------------------------------------------------------------------------


def test_windows1252_quoted_printable_a01() -> None:
    parsed = parse_message(sample("a01-outlook2016-new-windows1252.eml"))
    assert parsed.body_content_type == "text/plain"
    assert "stampante di rete dell’Ufficio Anagrafe" in parsed.text  # 0x92 is ’
    assert "lo stato «Errore - Stampa in corso»" in parsed.text
    assert "È abbastanza urgente" in parsed.text
    assert "I documenti restano in coda con lo stato" in parsed.text
    assert "\r" not in parsed.text
    assert parsed.html is not None and "dell’Ufficio" in parsed.html
    assert parsed.sender.email == "m.rossi@comune.vaiano-cremasco.cr.it"
    assert parsed.sender.name == "Marta Rossi"
    assert parsed.subject == "Stampante di rete Anagrafe non stampa"
    assert parsed.message_id == "<d5c101dcaff1$ba56b11e$3e8bcdbb$@comune.vaiano-cremasco.cr.it>"
    assert parsed.date == datetime(2026, 3, 10, 8, 47, 12, tzinfo=timezone(timedelta(hours=1)))
    assert parsed.attachments == []


def test_iso88591_plain_text_a25() -> None:
    parsed = parse_message(sample("a25-outlook2016-new-plaintext-iso88591.eml"))
    assert parsed.body_content_type == "text/plain"
    assert parsed.html is None
    assert "ho sbagliato il PIN della smart card tre volte" in parsed.text
    assert "il dispositivo è bloccato" in parsed.text
    assert "perché devo firmare le determine entro venerdì" in parsed.text
    assert "Sarò in ufficio" in parsed.text
    assert "=\n" not in parsed.text and "=E8" not in parsed.text  # soft breaks undone


def test_inline_images_with_content_id_a05() -> None:
    parsed = parse_message(sample("a05-exchange2016-new-inline-screenshot.eml"))
    assert [a.filename for a in parsed.attachments] == ["image001.png", "image002.png"]
    first = parsed.attachments[0]
    assert first.content_type == "image/png"
    assert first.content_id == "image001.png@01DCB13B.5E0A8C70"
    assert first.inline is True
    assert first.data.startswith(b"\x89PNG\r\n\x1a\n")
    assert parsed.html is not None and 'src="cid:image001.png@01DCB13B.5E0A8C70"' in parsed.html
    assert "Oggi pomeriggio dobbiamo chiudere le rateizzazioni TARI" in parsed.text


def test_forward_as_attachment_a07() -> None:
    parsed = parse_message(sample("a07-exchange2016-forward-as-attachment.eml"))
    assert "vi inoltro in allegato la comunicazione del fornitore" in parsed.text
    assert "verrà installato l'aggiornamento 7.4.2" not in parsed.text  # only inside the .eml
    [attached] = parsed.attachments
    assert attached.content_type == "message/rfc822"
    assert attached.filename == "Aggiornamento programmato Sicr@web sabato 21 marzo.eml"
    inner = parse_message(attached.data)
    assert inner.subject == "Aggiornamento programmato Sicr@web sabato 21 marzo"
    assert "verrà installato l'aggiornamento 7.4.2" in inner.text


def test_tnef_winmail_keeps_blob_and_adds_files_a17() -> None:
    parsed = parse_message(sample("a17-outlook2013-tnef-winmail.eml"))
    names = [a.filename for a in parsed.attachments]
    assert names == ["winmail.dat", "rapporto_scansione.pdf"]
    pdf = parsed.attachments[1]
    assert pdf.content_type == "application/pdf"
    assert pdf.data.startswith(b"%PDF-")
    assert parsed.attachments[0].content_type == "application/ms-tnef"
    assert "la scansione non arriva più nella cartella condivisa" in parsed.text


def test_broken_tnef_keeps_winmail_dat() -> None:
    blob = b"\x78\x9f\x3e\x22" + bytes(range(256)) * 3  # right signature, garbage after it
    raw = mail(
        """
From: a@comune.example
Subject: tnef rotto
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="b"
""",
        b"--b\r\nContent-Type: text/plain\r\n\r\nciao\r\n--b\r\n"
        b"Content-Type: application/ms-tnef\r\nContent-Disposition: attachment; "
        b'filename="winmail.dat"\r\n\r\n' + blob + b"\r\n--b--\r\n",
    )
    parsed = parse_message(raw)
    assert [a.filename for a in parsed.attachments] == ["winmail.dat"]
    assert extract_tnef(b"not tnef at all") == []
    assert extract_tnef(b"") == []


def test_format_flowed_thunderbird_a11() -> None:
    parsed = parse_message(sample("a11-thunderbird-reply-toppost.eml"))
    assert (
        "aggiungo un dettaglio: uso il portatile del Comune (quello consegnato a gennaio) "
        "e fino a lunedì la VPN funzionava." in parsed.text
    )
    assert "\n-- \nLucia Brambilla" in parsed.text  # signature separator survives
    assert parsed.in_reply_to == ["<maild.2026-000140.ack@consorzio.example>"]


def test_format_flowed_delsp_and_quotes() -> None:
    body = "Una riga lun \r\nga spezzata.\r\n> citata che \r\n> continua\r\n>> doppia\r\n"
    raw = mail(
        """
From: a@b.example
Subject: flowed
Content-Type: text/plain; charset=utf-8; format=flowed; delsp=yes
""",
        body,
    )
    assert parse_message(raw).text.splitlines() == [
        "Una riga lunga spezzata.",
        "> citata checontinua",
        ">> doppia",
    ]


def test_delivery_report_a20() -> None:
    parsed = parse_message(sample("a20-exchange2016-ndr-italian.eml"))
    types = [a.content_type for a in parsed.attachments]
    assert types == ["message/delivery-status", "message/rfc822"]
    report = parsed.attachments[0]
    assert report.filename == "delivery-status.txt"
    assert b"Status: 5." in report.data
    assert parsed.attachments[1].filename.endswith(".eml")


def test_every_italian_sample_parses_with_its_sender() -> None:
    import json

    expected = json.loads((ITALIAN / "expected.json").read_text())
    for name, facts in expected.items():
        parsed = parse_message(sample(name))
        assert parsed.sender.email == facts["sender"].lower(), name
        assert parsed.subject == facts["subject"], name
        if facts.get("new_text_must_contain"):
            assert facts["new_text_must_contain"] in parsed.text, name


# --- Bodies --------------------------------------------------------------------------------------


def test_html_only_message_gives_text() -> None:
    html = (
        "<html><head><title>Titolo</title><style>p{color:red}</style></head><body>"
        "<p>Buongiorno,<br>il PC non si accende.</p><ul><li>primo</li><li>secondo</li></ul>"
        "<script>alert(1)</script><p>Saluti &amp; grazie</p></body></html>"
    )
    raw = mail(
        """
From: a@b.example
Subject: solo html
Content-Type: text/html; charset=utf-8
""",
        html,
    )
    parsed = parse_message(raw)
    assert parsed.body_content_type == "text/html"
    assert parsed.text == (
        "Buongiorno,\nil PC non si accende.\n\n- primo\n- secondo\n\nSaluti & grazie"
    )
    assert parsed.html is not None
    assert "<script" not in parsed.html and "Titolo" not in parsed.html
    assert "Titolo" not in parsed.text and "color:red" not in parsed.text


def test_empty_plain_alternative_falls_back_to_html() -> None:
    raw = mail(
        """
From: a@b.example
Subject: vuoto
Content-Type: multipart/alternative; boundary="x"
""",
        "--x\r\nContent-Type: text/plain\r\n\r\n \r\n--x\r\nContent-Type: text/html\r\n\r\n"
        "<div>Testo vero</div>\r\n--x--\r\n",
    )
    parsed = parse_message(raw)
    assert parsed.text == "Testo vero"
    assert parsed.body_content_type == "text/html"


def test_html_charset_from_meta_and_undeclared_8bit_body() -> None:
    raw = mail(
        """
From: a@b.example
Subject: meta
Content-Type: text/html
""",
        b'<meta http-equiv="Content-Type" content="text/html; charset=windows-1252">'
        b"<p>Citt\xe0 \x93virgolette\x94</p>",
    )
    assert parse_message(raw).text == "Città “virgolette”"
    undeclared = mail("From: a@b.example\nSubject: x", b"perch\xe9 l\x92ho fatto")
    assert parse_message(undeclared).text == "perché l’ho fatto"
    utf8 = mail("From: a@b.example\nSubject: x", "perché così".encode())
    assert parse_message(utf8).text == "perché così"


def test_utf8_content_under_latin1_label_is_utf8() -> None:
    raw = mail(
        "From: a@b.example\nSubject: x\nContent-Type: text/plain; charset=iso-8859-1",
        "è già così".encode(),
    )
    assert parse_message(raw).text == "è già così"


def test_text_and_html_parts_in_mixed_are_kept_in_order() -> None:
    parsed = parse_message(zammad("mail110"))  # text part + HTML signature part
    assert parsed.text.index("This is the text part") < parsed.text.index("html part")
    assert parsed.html is not None and "This is the text part" in parsed.html


def test_uuencoded_block_in_text_becomes_attachment() -> None:
    parsed = parse_message(zammad("mail025"))
    [csv] = parsed.attachments
    assert csv.filename == "rulesets-report.csv"
    assert csv.data.startswith(b"RULESET_ID;NAME;")
    assert "begin 644" not in parsed.text


def test_x_uuencode_transfer_encoding() -> None:
    parsed = parse_message(zammad("mail078-content_transfer_encoding_x_uuencode"))
    assert parsed.attachments[0].data == b"Hello Zammad"


def test_iso2022jp_with_microsoft_extensions() -> None:
    assert parse_message(zammad("mail099")).text.strip() == "①１都３県の鯵と、"


# --- Headers -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("=?utf-8?Q?Citt=C3=A0?= di Crema", "Città di Crema"),
        ("R: =?iso-8859-1?Q?perch=E9?= no", "R: perché no"),
        ("=?utf-8?Q?Citt=C3?= =?utf-8?Q?=A0?=", "Città"),  # a character split over two words
        ("=?utf-8?B?5L2/44Gj44Gm?= / =?iso-8859-1?Q?Priorit=E4t?=", "使って / Priorität"),
        ("=?windows-1252?Q?l=92ufficio?=", "l’ufficio"),
        ("=?iso-8859-1?Q?l=92ufficio?=", "l’ufficio"),  # latin-1 label, windows-1252 bytes
        ("=?GB2312?B?vKjQp7ncwO0svr++ucuttO3Byw==?=", "绩效管理,究竟谁错了"),
        (
            "=?GB2312?B?g8iRqsGmrmHJ+tPr16LL3Lmk0tXM9bz+1q685LXEudjPtaO7?=",
            "內應力產生与注塑工艺条件之间的关系；",
        ),
        ("=?unicode-1-1-utf-7?Q?+ANw-bermittlung?=", "Übermittlung"),
        ("=?utf-8?B?Q2l0dMOgIGU?=", "Città e"),  # padding missing
        ("=?utf-8?q?una_prova?=", "una prova"),
        ("=?x-unknown?Q?Citt=E0?=", "Città"),
        ("=?utf-8*it?Q?lingua?=", "lingua"),  # RFC 2231 language suffix
        ("Oggetto\r\n lungo\r\n\tpiegato", "Oggetto lungo\tpiegato"),
        ("=?utf-8?Q?a?=\r\n =?utf-8?Q?b?=", "ab"),
        ("=?utf-8?Q?rotto", "=?utf-8?Q?rotto"),
        ("Citt\udcc3\udca0", "Città"),  # undeclared 8-bit UTF-8 (surrogateescape)
        ("Citt\udce0 \udc93x\udc94", "Città “x”"),  # undeclared 8-bit windows-1252
        ("", ""),
        (None, ""),
    ],
)
def test_decode_header_value(raw: str | None, expected: str) -> None:
    assert decode_header_value(raw) == expected


def test_decode_header_value_accepts_header_objects() -> None:
    message = email.message_from_bytes(b"Subject: Citt\xe0 =?utf-8?q?caf=C3=A9?=\n\nx")
    value = message.get("Subject")
    assert isinstance(value, email.header.Header)
    assert decode_header_value(value) == "Città café"


def test_raw_8bit_headers_use_the_message_charset() -> None:
    # mail046: a raw GBK subject in a mail whose parts declare gb2312.
    assert parse_message(zammad("mail046")).subject == "转发：整体提升企业服务水平"
    # mail093: raw Shift_JIS subject under an ISO-2022-JP body.
    assert parse_message(zammad("mail093")).subject == "ツール"


def test_header_accessors_decode() -> None:
    parsed = parse_message(
        mail("From: a@b.example\nSubject: x\nX-Ente: =?utf-8?Q?Comune_di_Forl=C3=AC?=")
    )
    assert parsed.header("X-Ente") == "Comune di Forlì"
    assert parsed.header("X-Missing", "-") == "-"
    assert parsed.header_all("X-Ente") == ["Comune di Forlì"]


def test_addresses() -> None:
    raw = mail(
        """
From: =?iso-8859-1?Q?B=FCrling,=20Andreas?= <Andreas.Buerling@Comune.Example>
To: "Rossi, Mario" <M.Rossi@Example.IT>, anna@example.it (Anna), undisclosed-recipients:;
Cc: =?utf-8?B?TmljY29sw7I=?= <n@example.it>
Reply-To: <Segreteria@Example.IT>
"""
    )
    parsed = parse_message(raw)
    assert (parsed.sender.name, parsed.sender.email) == (
        "Bürling, Andreas",
        "andreas.buerling@comune.example",
    )
    assert [(a.name, a.email) for a in parsed.to] == [
        ("Rossi, Mario", "m.rossi@example.it"),
        ("Anna", "anna@example.it"),
    ]
    assert [(a.name, a.email) for a in parsed.cc] == [("Niccolò", "n@example.it")]
    assert [a.email for a in parsed.reply_to] == ["segreteria@example.it"]


def test_sender_fallbacks() -> None:
    assert parse_message(zammad("mail017")).sender.email == "ghgbwum@185.com.cn"  # 2nd From
    assert parse_message(zammad("mail016")).sender.email == "vipyimin@126.com"  # Reply-To
    no_from = parse_message(mail("Subject: nessun mittente"))
    assert (no_from.sender.name, no_from.sender.email) == ("", "")


def test_encoded_words_inside_addr_spec_stay_literal() -> None:
    parsed = parse_message(zammad("mail118"))
    assert parsed.sender.email == "=?utf-8?q?agent?=@example.com"


def test_message_ids_and_references() -> None:
    raw = mail(
        """
From: a@b.example
Message-ID: 20180802145828.58E7387959@mail.example.cz
In-Reply-To: <maild.2026-000140.ack@consorzio.example> (messaggio di Supporto)
References: <a@x.example>
 <b@x.example>	<c@x.example> <a@x.example>
"""
    )
    parsed = parse_message(raw)
    assert parsed.message_id == "<20180802145828.58E7387959@mail.example.cz>"
    assert parsed.in_reply_to == ["<maild.2026-000140.ack@consorzio.example>"]
    assert parsed.references == ["<a@x.example>", "<b@x.example>", "<c@x.example>"]
    bare = parse_message(mail("From: a@b.example"))
    assert (bare.message_id, bare.in_reply_to, bare.references) == (None, [], [])


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Tue, 10 Mar 2026 08:47:12 +0100", datetime(2026, 3, 10, 7, 47, 12, tzinfo=UTC)),
        ("24 Sep 2018 10:22:54 -0700", datetime(2018, 9, 24, 17, 22, 54, tzinfo=UTC)),
        ("Mon, 27 Feb 2017 13:52:43 -0500 (EST)", datetime(2017, 2, 27, 18, 52, 43, tzinfo=UTC)),
        ("Fri, 07 Apr 2023 17:30:44 +0200Received: from x", datetime(2023, 4, 7, 15, 30, 44, tzinfo=UTC)),
        ("Fri, 07 Apr 2023 17:30:44 -0000", datetime(2023, 4, 7, 17, 30, 44, tzinfo=UTC)),
        ("ieri pomeriggio", None),
        ("", None),
    ],
)  # fmt: skip
def test_date(value: str, expected: datetime | None) -> None:
    parsed = parse_message(mail(f"From: a@b.example\nDate: {value}"))
    assert parsed.date == expected
    assert parsed.date is None or parsed.date.tzinfo is not None


# --- Attachments ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content_type", "expected"),
    [
        ("../../etc/passwd", "text/plain", "passwd"),
        ("C:\\Users\\mario\\fattura.pdf", "application/pdf", "fattura.pdf"),
        ("a\x00b\x1fc.txt", "text/plain", "abc.txt"),
        ("fattura\u202efdp.exe", "application/octet-stream", "fatturafdp.exe"),
        ("..", "image/png", "attachment-3.png"),
        ("", "image/jpeg", "attachment-3.jpg"),
        (None, "message/delivery-status", "attachment-3.txt"),
        ("", "application/x-made-up", "file"),
        ("  nome con spazi.pdf  ", "application/pdf", "nome con spazi.pdf"),
    ],
)
def test_safe_filename(name: str | None, content_type: str, expected: str) -> None:
    assert safe_filename(name, content_type, 3) == expected


def test_long_filename_keeps_extension() -> None:
    name = safe_filename("x" * 500 + ".pdf", "application/pdf", 1)
    assert len(name) <= 200 and name.endswith(".pdf")


def test_attachment_names_rfc2231_rfc2047_and_raw_8bit() -> None:
    assert parse_message(zammad("mail081")).attachments[0].filename == "Erklärung.txt"
    assert parse_message(zammad("mail056")).attachments[0].filename == (
        "Hofjägeralle Wasserschaden.jpg"
    )
    gb = parse_message(zammad("mail015")).attachments[0].filename
    assert gb == "绩效管理,究竟谁错了.xls"


def test_unnamed_and_path_attachment_names() -> None:
    raw = mail(
        """
From: a@b.example
Subject: allegati
Content-Type: multipart/mixed; boundary="b"
""",
        "--b\r\nContent-Type: text/plain\r\n\r\nvedi allegati\r\n"
        "--b\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n"
        '--b\r\nContent-Type: application/pdf; name="..\\\\..\\\\boot.ini"\r\n'
        "Content-Disposition: attachment\r\n\r\n%PDF\r\n--b--\r\n",
    )
    parsed = parse_message(raw)
    assert [a.filename for a in parsed.attachments] == ["attachment-1.png", "boot.ini"]
    assert parsed.attachments[0].data == b"\x89PNG\r\n\x1a\n"
    assert parsed.attachments[0].inline is False  # no Content-ID
    assert parsed.text == "vedi allegati"


def test_base64_with_one_stray_character_is_decoded() -> None:
    parsed = parse_message(zammad("mail062"))
    assert any(
        a.data == b"\xff\xd8\xff\xe0\x00\x10JFI\x00\x10\xb5\xdb~9" for a in parsed.attachments
    )


# --- Robustness ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"   \r\n\t\n",
        b"Hello world, this is not a mail at all.\n",
        b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\n",
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
        b"\x00\x01\x02\x03\xff\xfe" * 100,
        bytes(random.Random(7).randrange(256) for _ in range(4096)),
        b"X-Only: a custom header\n\nbody",
    ],
)
def test_garbage_is_not_a_message(raw: bytes) -> None:
    with pytest.raises(NotAMessage):
        parse_message(raw)
    assert issubclass(NotAMessage, ValueError)


def test_minimal_messages_parse() -> None:
    assert parse_message(b"Subject: ciao\n\ncorpo").text == "corpo"
    assert parse_message(b"From: a@b.example").text == ""  # no body at all
    assert parse_message(b"\r\n\r\nSubject: dopo righe vuote\r\n\r\nx").subject == (
        "dopo righe vuote"
    )


def test_broken_header_section_is_repaired() -> None:
    parsed = parse_message(zammad("mail054"))  # base64 lines of a header not indented
    assert parsed.sender.email == "karoline.smith@example.com"
    assert parsed.subject == "AW: One Net Business"
    banner = parse_message(zammad("mail068"))  # a banner line before the headers
    assert banner.subject == "Contact from Server"


def test_deeply_nested_multipart_does_not_crash() -> None:
    depth = 3000
    head = "".join(
        f'Content-Type: multipart/mixed; boundary="b{i}"\r\n\r\n--b{i}\r\n' for i in range(depth)
    )
    raw = (
        b"From: a@b.example\r\nSubject: annidato\r\n"
        + head.encode()
        + b"Content-Type: text/plain\r\n\r\nfondo\r\n"
    )
    parsed = parse_message(raw)
    assert parsed.subject == "annidato"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_never_raise_anything_else(raw: bytes) -> None:
    try:
        parse_message(raw)
    except NotAMessage:
        pass


_BASE = sample("a05-exchange2016-new-inline-screenshot.eml")
_HEADER_END = _BASE.index(b"\n\n")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.integers(_HEADER_END + 2, len(_BASE) - 1), st.binary(min_size=0, max_size=8)),
        max_size=12,
    ),
    st.integers(_HEADER_END + 2, len(_BASE)),
)
def test_corrupted_body_of_a_real_mail_still_parses(edits, cut: int) -> None:
    # Headers intact, MIME structure and encodings mangled and truncated: must still parse.
    data = bytearray(_BASE)
    for position, replacement in edits:
        data[position : position + len(replacement)] = replacement
    parsed = parse_message(bytes(data[:cut]))
    assert parsed.sender.email == "giuseppe.ferrari@comune.crema.cr.it"
    for attachment in parsed.attachments:
        assert attachment.filename and "/" not in attachment.filename


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=200))
def test_decode_header_value_total(value: str) -> None:
    assert isinstance(decode_header_value(value), str)


# --- HTML helpers --------------------------------------------------------------------------------


def test_sanitize_html_keeps_formatting_links_and_cid_images() -> None:
    dirty = (
        '<p onclick="x()" style="color:red;position:fixed">Ciao <b>Mario</b> '
        '<a href="https://comune.example/x">link</a> <a href="javascript:alert(1)">no</a></p>'
        '<img src="cid:image001.png@01D" alt="logo"><img src="https://track.example/p.gif">'
        "<script>alert(1)</script>"
        "<iframe src='https://evil.example'></iframe><form><input name=p></form>"
    )
    clean = sanitize_html(dirty)
    assert '<p style="color:red">' in clean
    assert "<b>Mario</b>" in clean
    assert 'href="https://comune.example/x"' in clean
    assert "javascript" not in clean and "onclick" not in clean
    assert 'src="cid:image001.png@01D"' in clean
    assert "track.example" not in clean  # remote images (tracking pixels) are dropped
    assert "<script" not in clean and "<iframe" not in clean and "<input" not in clean
    # reply markers used by maild.quoting survive
    marked = sanitize_html(
        '<div id="divRplyFwdMsg" class="gmail_quote" style="border-top:solid #E1E1E1 1.0pt">x</div>'
    )
    assert 'id="divRplyFwdMsg"' in marked and 'class="gmail_quote"' in marked
    assert "border-top:solid #E1E1E1 1.0pt" in marked


def test_html_to_text_structure() -> None:
    html = (
        "<div>Riga uno</div><div>Riga due<br>a capo</div><ol><li>a</li><li>b</li></ol>"
        "<table><tr><td>x</td><td>y</td></tr></table><pre>  rientro</pre>"
        "<p>&lt;tag&gt; &egrave;&nbsp;ok</p><!-- commento -->"
    )
    assert (
        html_to_text(html)
        == "Riga uno\nRiga due\na capo\n\n1. a\n2. b\n\nx\ty\n\n  rientro\n\n<tag> è ok"
    )


def test_base64_encoded_attached_message() -> None:
    inner = b"From: fornitore@example.com\r\nSubject: Aggiornamento\r\n\r\nTesto inoltrato\r\n"
    import base64

    raw = mail(
        """
From: a@comune.example
Subject: I: Aggiornamento
Content-Type: multipart/mixed; boundary="b"
""",
        b"--b\r\nContent-Type: text/plain\r\n\r\nin allegato\r\n--b\r\n"
        b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(inner)
        + b"--b--\r\n",
    )
    parsed = parse_message(raw)
    [attached] = parsed.attachments
    assert attached.filename == "Aggiornamento.eml"
    assert parse_message(attached.data).text.strip() == "Testo inoltrato"
    assert "Testo inoltrato" not in parsed.text
