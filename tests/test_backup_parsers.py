"""Backup-report parsers against ../shared/samples/backup-reports (index.md is the oracle).

Every index.md row is a case, so new samples are picked up without touching this file.
Each sample is also re-sent the ways comuni forward them (Outlook "I:" inline, Thunderbird
"Fwd:" inline, a rule attaching it as message/rfc822), and person-written mails that talk
about backups must never come out as reports.
"""

from __future__ import annotations

import email
import email.policy
import html
import re
from datetime import datetime
from email.message import EmailMessage, Message
from email.mime.application import MIMEApplication
from email.mime.message import MIMEMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from pathlib import Path

import pytest

from maild.backup import BackupReport, GenericRule, parse_report
from maild.backup import parsers as backup_parsers
from maild.backup.parsers.htmltext import html_to_doc

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples" / "backup-reports"


# -- the oracle ---------------------------------------------------------------------------


def _cells(line: str) -> list[str]:
    return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]


def _index_rows() -> list[dict[str, str]]:
    lines = [
        line.strip()
        for line in (SAMPLES / "index.md").read_text(encoding="utf-8").splitlines()
        if line.strip().startswith("|")
    ]
    header = _cells(lines[0])
    rows = []
    for line in lines[1:]:
        cells = _cells(line)
        if set("".join(cells)) <= set("-: "):
            continue  # the |---|---| separator
        rows.append(dict(zip(header, cells, strict=True)))
    return rows


ROWS = _index_rows()
FILES = [row["file"] for row in ROWS]


def _none(value: str) -> str | None:
    return None if value == "-" else value


def _when(value: str) -> datetime | None:
    return None if value == "-" else datetime.fromisoformat(value)


def load(name: str, policy=email.policy.default) -> Message:
    return email.message_from_bytes((SAMPLES / name).read_bytes(), policy=policy)


def parse_bytes(raw: bytes, rules=(), policy=email.policy.compat32) -> BackupReport | None:
    return parse_report(email.message_from_bytes(raw, policy=policy), rules)


def test_index_lists_every_sample():
    assert len(ROWS) >= 59
    assert sorted(FILES) == sorted(p.name for p in SAMPLES.glob("*.eml"))


@pytest.mark.parametrize(
    "policy", [email.policy.default, email.policy.compat32], ids=["default", "compat32"]
)
@pytest.mark.parametrize("row", ROWS, ids=FILES)
def test_sample_matches_index(row: dict[str, str], policy):
    report = parse_report(load(row["file"], policy))
    assert report is not None, f"{row['file']} not recognised"
    assert report.product == row["product"]
    assert report.variant == _none(row["variant"])
    assert report.status == row["status"]
    assert report.job == _none(row["job"])
    assert report.host == _none(row["host"])
    assert report.start == _when(row["start"])
    assert report.end == _when(row["end"])
    assert report.size == _none(row["size"])
    assert report.lang == _none(row["lang"])
    if row["error"] == "-":
        assert report.error is None
    else:
        assert report.error, "a warning/failure needs an error summary"
        assert len(report.error) <= 600
    if row["must contain"] != "-":
        assert row["must contain"] in report.error


# -- forwards -----------------------------------------------------------------------------

_WEEKDAYS = ["lunedì", "martedì", "mercoledì", "giovedì", "venerdì", "sabato", "domenica"]
_MONTHS = ["gennaio", "febbraio", "marzo", "aprile", "maggio", "giugno", "luglio", "agosto",
           "settembre", "ottobre", "novembre", "dicembre"]  # fmt: skip


def _bodies(msg: Message) -> tuple[str | None, str | None]:
    plain = msg.get_body(("plain",))
    rich = msg.get_body(("html",))
    return (plain.get_content() if plain else None, rich.get_content() if rich else None)


def _crude_text(markup: str) -> str:
    """Roughly what Outlook adds as text/plain when forwarding an HTML-only mail."""
    markup = re.sub(r"(?is)<(head|style)\b.*?</\1>", "", markup)
    markup = re.sub(r"(?i)<(br|/p|/tr|/td|/th|/div)\b[^>]*>", "\n", markup)
    text = html.unescape(re.sub(r"<[^>]+>", "", markup))
    return "\n".join(line.strip() for line in text.splitlines() if line.strip())


def _insert_after_body(markup: str, block: str) -> str:
    m = re.search(r"(?i)<body[^>]*>", markup)
    return markup[: m.end()] + block + markup[m.end() :] if m else block + markup


def _italian_date(msg: Message) -> str:
    d = email.utils.parsedate_to_datetime(msg["Date"])
    return f"{_WEEKDAYS[d.weekday()]} {d.day} {_MONTHS[d.month - 1]} {d.year} {d:%H:%M}"


def outlook_forward(original: Message, prefix: str = "I: ") -> bytes:
    """Outlook (Italian) inline forward: Da:/Inviato:/A:/Oggetto: block, base64 parts."""
    plain, rich = _bodies(original)
    head = {
        "Da": str(original["From"]),
        "Inviato": _italian_date(original),
        "A": str(original["To"]),
        "Oggetto": str(original["Subject"]),
    }
    fwd = EmailMessage()
    fwd["From"] = "Servizi Informatici <sistemi@comune.vaiano-cremasco.cr.it>"
    fwd["To"] = "supporto@consorzio-it.cr.it"
    fwd["Subject"] = prefix + str(original["Subject"])
    fwd["Date"] = "Tue, 18 Mar 2025 08:12:00 +0100"
    fwd["X-Mailer"] = "Microsoft Outlook 16.0"
    fwd["Thread-Index"] = "AQHbl1x2AbCdEfGhIjKlMnOpQrStUv=="
    if plain is None and rich is not None:
        plain = _crude_text(rich)
    text_block = "\n".join(f"{k}: {v}" for k, v in head.items())
    fwd.set_content(f"\n\n________________________________\n{text_block}\n\n{plain}", cte="base64")
    if rich is not None:
        lines = "<br>\n".join(f"<b>{k}:</b> {html.escape(v)}" for k, v in head.items())
        block = (
            '<div class="WordSection1"><p class="MsoNormal">&nbsp;</p>'
            '<div style="border:none;border-top:solid #E1E1E1 1.0pt;padding:3.0pt 0cm 0cm 0cm">'
            f'<p class="MsoNormal">{lines}</p></div><p class="MsoNormal">&nbsp;</p></div>\n'
        )
        fwd.add_alternative(_insert_after_body(rich, block), subtype="html", cte="base64")
    return fwd.as_bytes()


def thunderbird_forward(original: Message) -> bytes:
    """Thunderbird (Italian) inline forward: `-------- Messaggio Inoltrato --------` block."""
    plain, rich = _bodies(original)
    head = {
        "Oggetto": str(original["Subject"]),
        "Data": str(original["Date"]),
        "Mittente": str(original["From"]),
        "A": str(original["To"]),
    }
    fwd = EmailMessage()
    fwd["From"] = "Luca Ferri <l.ferri@comune.vaiano-cremasco.cr.it>"
    fwd["To"] = "supporto@consorzio-it.cr.it"
    fwd["Subject"] = "Fwd: " + str(original["Subject"])
    fwd["Date"] = "Tue, 18 Mar 2025 08:15:00 +0100"
    fwd["User-Agent"] = "Mozilla Thunderbird"
    if plain is not None or rich is None:
        block = "\n".join(f"{k}: \t{v}" for k, v in head.items())
        fwd.set_content(f"\n\n\n-------- Messaggio Inoltrato --------\n{block}\n\n\n{plain}")
    if rich is not None:
        cells = "".join(
            f'<tr><th valign="BASELINE" nowrap="nowrap" align="RIGHT">{k}: </th>'
            f"<td>{html.escape(v)}</td></tr>"
            for k, v in head.items()
        )
        block = (
            '<div class="moz-forward-container"><br><br>-------- Messaggio Inoltrato --------\n'
            f'<table class="moz-email-headers-table" border="0"><tbody>{cells}</tbody></table><br><br>'
        )
        body = _insert_after_body(rich, block)
        if plain is None:
            fwd.set_content(body, subtype="html")
        else:
            fwd.add_alternative(body, subtype="html")
    return fwd.as_bytes()


def attached_forward(original_raw: bytes) -> bytes:
    """A server rule forwarding the report as a message/rfc822 attachment."""
    original = email.message_from_bytes(original_raw)
    outer = MIMEMultipart("mixed")
    outer["From"] = "Regola inoltro <postmaster@comune.vaiano-cremasco.cr.it>"
    outer["To"] = "supporto@consorzio-it.cr.it"
    outer["Subject"] = "Fwd: " + str(original["Subject"])
    outer["Date"] = "Tue, 18 Mar 2025 08:20:00 +0100"
    outer.attach(
        MIMEText('Messaggio inoltrato automaticamente dalla regola "backup".\n', "plain", "utf-8")
    )
    outer.attach(MIMEMessage(original))
    return outer.as_bytes()


def _same_run(report: BackupReport | None, row: dict[str, str]) -> None:
    assert report is not None
    assert (report.product, report.variant, report.status, report.job, report.host) == (
        row["product"],
        _none(row["variant"]),
        row["status"],
        _none(row["job"]),
        _none(row["host"]),
    )


@pytest.mark.parametrize("row", ROWS, ids=FILES)
def test_outlook_inline_forward(row):
    _same_run(parse_bytes(outlook_forward(load(row["file"]))), row)


@pytest.mark.parametrize("row", ROWS, ids=FILES)
def test_thunderbird_inline_forward(row):
    _same_run(parse_bytes(thunderbird_forward(load(row["file"]))), row)


@pytest.mark.parametrize("row", ROWS, ids=FILES)
def test_attached_forward(row):
    raw = attached_forward((SAMPLES / row["file"]).read_bytes())
    report = parse_bytes(raw, policy=email.policy.default)
    _same_run(report, row)
    assert report.start == _when(row["start"])  # times come from the inner report
    assert report.end == _when(row["end"])


@pytest.mark.parametrize("prefix", ["R: ", "I: I: ", "FW: "])
def test_forward_prefixes(prefix):
    row = next(r for r in ROWS if r["file"] == "veeam-vbr-failure.eml")
    _same_run(parse_bytes(outlook_forward(load(row["file"]), prefix)), row)


def test_forward_of_forward():
    row = next(r for r in ROWS if r["file"] == "bacula-warning.eml")
    once = outlook_forward(load(row["file"]))
    twice = attached_forward(once)
    _same_run(parse_bytes(twice), row)


# -- encodings ----------------------------------------------------------------------------


def test_powershell_base64_subject_and_body():
    """Send-MailMessage -Encoding UTF8: encoded-word subject, base64 HTML body."""
    original = load("wsb-failure.eml")
    _, rich = _bodies(original)
    msg = EmailMessage()
    msg["From"] = str(original["From"])
    msg["To"] = "backup-report@consorzio-it.cr.it"
    msg["Date"] = str(original["Date"])
    msg.set_content(rich, subtype="html", cte="base64")
    raw = msg.as_bytes().replace(
        b"Date:", b"Subject: =?utf-8?B?RmFpbGVkIEJhY2t1cCBvbiBTUlYtQ09NVU5FMDE=?=\nDate:", 1
    )
    report = parse_bytes(raw)
    assert report is not None
    assert (report.product, report.status, report.host) == ("wsb", "failure", "SRV-COMUNE01")


def test_windows_1252_body():
    original = load("uranium-warning-it.eml")
    plain, _ = _bodies(original)
    part = MIMEText(plain, "plain", "windows-1252")
    for key in ("From", "To", "Subject", "Date"):
        part[key] = str(original[key])
    raw = part.as_bytes()
    assert b"non =E8 stato" in raw  # cp1252 "è", quoted-printable
    report = parse_bytes(raw)
    assert report is not None and report.status == "warning"
    assert "in uso da un altro processo" in report.error


def test_raw_utf8_subject_with_compat32():
    """8-bit subjects (no encoded words) come as Header objects under compat32."""
    raw = (SAMPLES / "duplicati-success.eml").read_bytes()
    raw = raw.replace(b"for Backup Documenti Segreteria", "for Backup Attività Produttive".encode())
    report = parse_bytes(raw, policy=email.policy.compat32)
    assert report is not None and report.job == "Backup Attività Produttive"


def test_report_attached_as_eml_file():
    outer = MIMEMultipart("mixed")
    outer["From"] = "Giulia Bianchi <g.bianchi@comune.vaiano-cremasco.cr.it>"
    outer["Subject"] = "I: report backup"
    outer.attach(MIMEText("Vi inoltro il report di stanotte.\n", "plain", "utf-8"))
    attachment = MIMEApplication((SAMPLES / "qnap-failure.eml").read_bytes(), "octet-stream")
    attachment.add_header("Content-Disposition", "attachment", filename="report.eml")
    outer.attach(attachment)
    report = parse_bytes(outer.as_bytes())
    assert report is not None
    assert (report.product, report.status, report.job) == (
        "qnap",
        "failure",
        "Copia-Protocollo-NAS",
    )


def test_veeam_en_us_dates_roll_past_midnight():
    raw = (SAMPLES / "veeam-vbr-success.eml").read_bytes().decode("ascii")
    raw = raw.replace("Monday, 10 March 2025 22:00:12", "Monday, March 10, 2025 10:00:12 PM")
    raw = raw.replace(">22:00:12<", ">10:00:12 PM<").replace(">22:19:40<", ">12:19:40 AM<")
    report = parse_bytes(raw.encode())
    assert report is not None and report.lang == "en-US"
    assert report.start == datetime(2025, 3, 10, 22, 0, 12)
    assert report.end == datetime(2025, 3, 11, 0, 19, 40)


def test_html_walker_keeps_nested_rows_apart():
    doc = html_to_doc(
        "<table><tr><td>Job: A<div>desc</div></td><td>Failed</td></tr>"
        "<tr><td colspan=2><table><tr><td>Start time<td>22:00</table></td></tr></table>"
        "<p>Veeam &amp; co&nbsp;</p>"
    )
    assert doc.rows == [["Job: A\ndesc", "Failed"], [""], ["Start time", "22:00"]]
    assert doc.text.split("\n")[-1] == "Veeam & co"
    assert "Start time\t22:00" in doc.text


# -- person-written mails are not reports -------------------------------------------------


def _person(subject: str, body: str, *, outlook: bool = False, **headers: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = "Giulia Bianchi <g.bianchi@comune.vaiano-cremasco.cr.it>"
    msg["To"] = "supporto@consorzio-it.cr.it"
    msg["Subject"] = subject
    msg["Date"] = "Tue, 11 Mar 2025 08:47:00 +0100"
    for key, value in headers.items():
        msg[key.replace("_", "-")] = value
    msg.set_content(body)
    if outlook:
        msg["X-Mailer"] = "Microsoft Outlook 16.0"
        msg["Thread-Index"] = "AduSVGx1c2VyLXdyaXR0ZW4="
        msg["Content-Language"] = "it-IT"
        paragraphs = "".join(
            f'<p class="MsoNormal">{html.escape(p)}<o:p></o:p></p>' for p in body.split("\n")
        )
        msg.add_alternative(
            f'<html><head><style>p.MsoNormal{{margin:0cm}}</style></head><body lang="IT">'
            f'<div class="WordSection1">{paragraphs}</div></body></html>',
            subtype="html",
        )
    return msg.as_bytes()


def _reply_to_report() -> bytes:
    """An Outlook reply quoting a full Veeam report: a conversation, not a new report."""
    original = load("veeam-vbr-failure.eml")
    raw = outlook_forward(original, prefix="R: ")
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    msg["In-Reply-To"] = str(original["Message-ID"])
    msg["References"] = str(original["Message-ID"])
    return msg.as_bytes()


HUMAN_MAILS = {
    "question": _person(
        "il backup di ieri è andato?",
        "Buongiorno,\nil backup di ieri è andato? Stamattina non ho visto la solita mail di Veeam.\n"
        "Grazie\nGiulia Bianchi\nUfficio Anagrafe",
    ),
    "outlook-failed": _person(
        "Backup non riuscito, potete controllare?",
        'Buongiorno,\nstanotte il backup non è riuscito: sul NAS vedo "Backup task Backup-Halley-DR '
        'failed" e Iperius dice Backup completato con errori.\nPotete controllare? Esito: da verificare.'
        "\nCordiali saluti\nGiulia Bianchi",
        outlook=True,
    ),
    "outlook-english": _person(
        "Backup failed: SRV-TRIBUTI",
        "Hi, the backup failed again last night (Acronis). Device: SRV-TRIBUTI.\nCan you have a look?",
        outlook=True,
    ),
    "bracket-subject": _person(
        "[Failed] Backup Sicr@web ??",
        "Ho ricevuto una mail di Veeam con scritto Failed, è grave?\nBackup job: Backup Sicr@web",
        outlook=True,
    ),
    "forwarded-chat": _person(
        "I: backup settimanale",
        "\n________________________________\nDa: Mario Rossi <m.rossi@comune.vaiano-cremasco.cr.it>\n"
        "Inviato: lunedì 10 marzo 2025 09:12\nA: Giulia Bianchi\nOggetto: backup settimanale\n\n"
        "Ricordati di cambiare il disco USB del backup di Cobian venerdì.",
        outlook=True,
    ),
    "auto-reply": _person(
        "Risposta automatica: [Failed] Backup Sicr@web (2 VMs) 1 failed",
        "Sono fuori ufficio fino al 14/03. Per urgenze backup contattare il CED.",
        Auto_Submitted="auto-replied",
    ),
    "reply-quoting-report": _reply_to_report(),
    "newsletter": _person(
        "Backup fallito? 5 errori da evitare",
        "Scopri come Iperius Backup ti avvisa quando il backup è completato con errori.\n"
        "Esito: sempre sotto controllo. Uranium Backup, Veeam e Acronis a confronto.",
    ),
    "dsm-disk-warning": _person(
        "[NAS-COMUNE] Disk 2 on NAS-COMUNE has degraded",
        "Dear user,\n\nDrive 2 on NAS-COMUNE has degraded. Please back up your data.\n\nFrom NAS-COMUNE",
    ),
    "bacula-intervention": _person(
        "Bacula: Intervention needed for BackupSrvHalley.2025-03-11_23.00.00_30",
        '11-Mar 23:05 bacula-sd JobId 18430: Please mount append Volume "Vol-0413" or label a new one for:\n'
        '    Job:          BackupSrvHalley.2025-03-11_23.00.00_30\n    Storage:      "FileStorage"\n'
        "    Pool:         File-Incr\n    JobId:        18430\n",
    ),
    "cron-other-command": _person(
        "Cron <root@srv-web> /usr/bin/certbot renew",
        "Saving debug log to /var/log/letsencrypt/letsencrypt.log\nNo renewals were attempted.",
    ),
}


@pytest.mark.parametrize("raw", HUMAN_MAILS.values(), ids=HUMAN_MAILS.keys())
def test_human_mail_is_not_a_report(raw):
    assert parse_bytes(raw) is None
    assert parse_bytes(raw, policy=email.policy.default) is None


def test_plain_human_mail_never_reaches_a_product_parser(monkeypatch):
    """The common case (no product named anywhere) is rejected by the marker scan alone."""

    def boom(mail):
        raise AssertionError("product parser called for a human mail")

    for parser in backup_parsers.PARSERS:
        monkeypatch.setattr(parser, "parse", boom)
    assert parse_bytes(HUMAN_MAILS["question"]) is None


# -- generic rules ------------------------------------------------------------------------

SCRIPT_RULE = GenericRule(
    name="script-db",
    product="script",
    sender=r"backup@srv-db\.",
    subject=r"^Backup database (?P<job>\S+)",
    success=r"^Esito: OK",
    warning=r"^Esito: OK con avvisi",
    failure=r"^Esito: ERRORE",
    host=r"^Server: (?P<host>\S+)",
    error=r"^(?:Errore|Avviso): (?P<error>.+)$",
)


def _script_mail(outcome: str, detail: str = "") -> bytes:
    msg = EmailMessage()
    msg["From"] = "Script backup <backup@srv-db.comune.vaiano-cremasco.cr.it>"
    msg["To"] = "backup-report@consorzio-it.cr.it"
    msg["Subject"] = "Backup database Tributi - 11/03/2025"
    msg["Date"] = "Tue, 11 Mar 2025 23:40:00 +0100"
    msg.set_content(f"Server: SRV-DB\nDatabase: Tributi\nEsito: {outcome}\n{detail}\n")
    return msg.as_bytes()


def test_generic_rule_failure():
    report = parse_bytes(
        _script_mail("ERRORE", "Errore: spazio su disco insufficiente"), [SCRIPT_RULE]
    )
    assert report == BackupReport(
        product="script",
        variant="script-db",
        status="failure",
        job="Tributi",
        host="SRV-DB",
        start=None,
        end=None,
        size=None,
        error="spazio su disco insufficiente",
        lang=None,
    )


def test_generic_rule_warning_before_success():
    report = parse_bytes(_script_mail("OK con avvisi", "Avviso: 2 tabelle saltate"), [SCRIPT_RULE])
    assert report is not None and report.status == "warning"
    assert report.error == "2 tabelle saltate"


def test_generic_rule_success_and_forwarded():
    report = parse_bytes(_script_mail("OK"), [SCRIPT_RULE])
    assert report is not None and (report.status, report.error) == ("success", None)
    forwarded = outlook_forward(
        email.message_from_bytes(_script_mail("ERRORE"), policy=email.policy.default)
    )
    report = parse_bytes(forwarded, [SCRIPT_RULE])
    assert report is not None and (report.status, report.job) == ("failure", "Tributi")


def test_generic_rule_needs_sender_subject_and_a_status():
    other_sender = _script_mail("ERRORE").replace(b"backup@srv-db.", b"backup@srv-web.")
    assert parse_bytes(other_sender, [SCRIPT_RULE]) is None
    assert parse_bytes(_script_mail("IN CORSO"), [SCRIPT_RULE]) is None
    assert parse_bytes(HUMAN_MAILS["outlook-failed"], [SCRIPT_RULE]) is None
    assert parse_bytes(_script_mail("ERRORE")) is None  # no rule configured


def test_product_parsers_win_over_generic_rules():
    catch_all = GenericRule(name="all", product="other", subject=r".", failure=r".", success=r".")
    report = parse_report(load("veeam-vbr-failure.eml"), [catch_all])
    assert report is not None and report.product == "veeam"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"subject": "(unclosed", "failure": "x"},
        {"subject": "x"},  # no status regex
        {"subject": "", "failure": "x"},
        {"subject": "x", "failure": "x", "job": r"Job: (\S+)"},  # no (?P<job>) group
    ],
)
def test_generic_rule_rejects_bad_configuration(kwargs):
    with pytest.raises(ValueError):
        GenericRule(name="bad", product="x", **kwargs)


def _marker_texts() -> list[str]:
    """Report and ordinary mail of every kind we have, as parse_view scans it."""
    from maild.backup.parsers import report_views

    shared = Path(__file__).resolve().parents[2] / "shared"
    files = [
        *SAMPLES.glob("*.eml"),
        *(shared / "corpus" / "zammad").glob("*.box"),
        *(shared / "samples" / "italian-mail").glob("*.eml"),
    ]
    texts = []
    for f in sorted(files):
        msg = email.message_from_bytes(f.read_bytes(), policy=email.policy.compat32)
        for view in report_views(msg):
            texts.append(f"{view.sender}\n{view.subject}\n{view.text[:20_000]}")
    return texts


def test_needles_never_hide_a_marker():
    """The substring pre-test picks exactly the parsers whose MARKERS match."""
    texts = _marker_texts()
    assert len(texts) > 150
    for text in texts:
        expected = [p for p in backup_parsers.PARSERS if p.MARKERS.search(text)]
        assert backup_parsers.candidates(text) == expected, text[:200]


@pytest.mark.parametrize(
    "text",
    [
        "VEEAM Backup & Replication",
        "Backup Succeeded for job",
        "HYPER BACKUP task done",
        "Attività di Backup completata",
        '** Backing up the task "x"',
        "Log: wbadmin 1.0",
        "BACKUP ON NAS01 completed",
        "Cron <root@host> /usr/bin/backup",
        "ParsedResult: Success",
        "hbs 3 job",
        "a \u212aelvin-sign in HY\u017fPER BACKUP",  # odd letters elsewhere do not matter
        "Backup \u017fucceeded on host",  # re.IGNORECASE takes the long s for s
        "VEEAM \u0130PER\u0130US",  # and the dotted capital I for i
    ],
)
def test_needles_agree_with_markers_on_odd_cases(text):
    expected = [p for p in backup_parsers.PARSERS if p.MARKERS.search(text)]
    assert backup_parsers.candidates(text) == expected
