import email
import email.policy
import json
from pathlib import Path

import pytest

from maild.quoting import html_to_text, new_text

SAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "samples" / "italian-mail"
EXPECTED = json.loads((SAMPLES / "expected.json").read_text(encoding="utf-8"))
REPLIES_AND_FORWARDS = sorted(n for n, e in EXPECTED.items() if e["kind"] in ("reply", "forward"))


def _bodies(name: str) -> tuple[str, str | None]:
    """First inline text/plain and text/html of a sample (stdlib only, as parse.py may differ)."""
    msg = email.message_from_bytes((SAMPLES / name).read_bytes(), policy=email.policy.compat32)
    found: dict[str, str] = {}
    for part in msg.walk():
        if part.is_multipart() or part.get_filename():
            continue
        ctype = part.get_content_type()
        if ctype in ("text/plain", "text/html") and ctype not in found:
            payload = part.get_payload(decode=True)
            found[ctype] = payload.decode(part.get_content_charset() or "utf-8", "replace")
    return found.get("text/plain", ""), found.get("text/html")


@pytest.mark.parametrize("name", REPLIES_AND_FORWARDS)
def test_sample_new_text(name):
    e = EXPECTED[name]
    text, html = _bodies(name)
    got = new_text(text, html)
    assert e["new_text_must_contain"] in got
    if e["new_text_must_not_contain"]:
        assert e["new_text_must_not_contain"] not in got
        # the history really is in the input, so the test proves something was cut
        assert (
            e["new_text_must_not_contain"] in text
            or e["new_text_must_not_contain"] in (html or "")
            or e["layout"] == "forward"
        )


@pytest.mark.parametrize("name", [n for n in REPLIES_AND_FORWARDS if _bodies(n)[1]])
def test_sample_new_text_from_html_only(name):
    """The same, when the mail had only its HTML part."""
    e = EXPECTED[name]
    got = new_text("", _bodies(name)[1])
    assert e["new_text_must_contain"] in got
    if e["new_text_must_not_contain"]:
        assert e["new_text_must_not_contain"] not in got


def test_inline_answers_keep_every_fragment():
    name = "a12-thunderbird-inline-answers.eml"
    got = new_text(_bodies(name)[0])
    for fragment in EXPECTED[name]["new_text_fragments"]:
        assert fragment in got
    assert "ha scritto" not in got
    assert "Quale messaggio di errore" not in got
    assert "Lucia Brambilla" in got  # the signature below the quote stays


def test_gmail_wrapped_attribution_is_removed_entirely():
    got = new_text(_bodies("a13-gmail-workspace-reply.eml")[0])
    assert "Il giorno lun 16 mar 2026" not in got
    assert "ha scritto" not in got
    assert got.endswith("Comune di Bagnolo Cremasco")


def test_libero_attribution_and_dash_line_are_removed():
    got = new_text(_bodies("a26-libero-mail-android-reply.eml")[0])
    assert got == "Il cavo di rete era staccato dietro la scrivania, adesso va. Scusate il disturbo"


def test_forward_separators_leave_nothing_behind():
    for name in ("a15-gmail-forward-fwd.eml", "a22-thunderbird-forward-inline.eml"):
        got = new_text(_bodies(name)[0])
        assert "Forwarded message" not in got and "Messaggio inoltrato" not in got
        assert not got.rstrip().endswith("-")


@pytest.mark.parametrize(
    "body, kept, gone",
    [
        (  # English Outlook, old style
            "Fixed, thanks.\n\n-----Original Message-----\nFrom: Mario\nSent: Monday\n"
            "To: x\nSubject: y\n\nold question",
            "Fixed, thanks.",
            "old question",
        ),
        (  # English attribution with quote
            "Works now.\n\nOn Mon, 16 Mar 2026 at 08:11, Supporto <s@c.example> wrote:\n> old",
            "Works now.",
            "wrote",
        ),
        (  # Outlook Italian block without separator line
            "Va bene.\n\nDa: Supporto <s@c.example>\nInviato: lunedì 16 marzo 2026 08:11\n"
            "A: Mario\nOggetto: R: stampante\n\nvecchio testo",
            "Va bene.",
            "vecchio testo",
        ),
        (  # Outlook Italian, old style separator
            "Ok.\n\n-----Messaggio originale-----\nDa: x\nInviato: y\nA: z\nOggetto: w\n\nstorico",
            "Ok.",
            "storico",
        ),
        (  # Apple Mail forward
            "Guardate qui.\n\nInizio messaggio inoltrato:\n\nDa: Fornitore <f@x.example>\n"
            "Data: 19 marzo 2026 18:14:26 CET\nA: me\nOggetto: aggiornamento\n\ntesto del fornitore",
            "Guardate qui.",
            "testo del fornitore",
        ),
        (  # HCL Notes separator
            'Procedete pure.\n\n-----"Supporto" <s@c.example> ha scritto: -----\n\nstorico',
            "Procedete pure.",
            "storico",
        ),
        (  # Notes attribution line
            "Procedete pure.\n\nSupporto <s@c.example> ha scritto il 24/03/2026 14:51:\n\nstorico",
            "Procedete pure.",
            "storico",
        ),
        (  # bottom-posting
            "Il 13/03/26 08:02, Supporto ha scritto:\n> domanda\n\nrisposta in fondo",
            "risposta in fondo",
            "domanda",
        ),
        (  # German Outlook / GMX
            "Danke.\n\n----- Original Nachricht ----\nVon: a\nAn: b\n\nalt",
            "Danke.",
            "alt",
        ),
    ],
)
def test_history_layouts(body, kept, gone):
    got = new_text(body)
    assert kept in got
    assert gone not in got


def test_text_without_history_is_kept_whole():
    body = (
        "Buongiorno,\nDa: lunedì la stampante non funziona.\nIl tecnico ha scritto che passa "
        "domani.\nRichiesta: sostituzione toner.\n\nGrazie"
    )
    assert new_text(body) == body


def test_only_quotes_gives_empty_text():
    assert new_text("Il 13/03/26 08:02, Supporto ha scritto:\n> solo storia\n> fine\n") == ""
    assert new_text("") == ""


def test_crlf_bom_and_nbsp_are_normalised():
    got = new_text("\ufeffVa\u00a0bene\r\n\r\n> citato\r\n")
    assert got == "Va bene"


# --- HTML ---------------------------------------------------------------------------------

THUNDERBIRD_INLINE_HTML = """<html><body>
<div class="moz-cite-prefix">Il 13/03/26 09:18, Supporto Consorzio ha scritto:<br></div>
<blockquote type="cite">Prima domanda: quale errore?</blockquote>
<p>Errore -12.</p>
<blockquote type="cite">Seconda domanda: quale PC?</blockquote>
<p>Il portatile del Comune.</p>
</body></html>"""

OWA_HTML = """<html><body><div id="divtagdefaultwrapper"><p>Risolto, grazie.</p></div>
<hr style="display:inline-block;width:98%" tabindex="-1">
<div id="divRplyFwdMsg" dir="ltr"><b>Da:</b> Supporto<br><b>Inviato:</b> lunedì<br>
<b>A:</b> Mario<br><b>Oggetto:</b> R: x</div>
<div>Testo della richiesta originale</div></body></html>"""


def test_html_inline_answers():
    got = new_text("", THUNDERBIRD_INLINE_HTML)
    assert "Errore -12." in got and "Il portatile del Comune." in got
    assert "domanda" not in got and "ha scritto" not in got


def test_html_used_when_text_lost_the_quotes():
    # parse.py made `text` from the HTML, so the quotes are no longer marked
    flat = "Il 13/03/26 09:18, Supporto Consorzio ha scritto:\nPrima domanda\nErrore -12."
    got = new_text(flat, THUNDERBIRD_INLINE_HTML)
    assert "Errore -12." in got and "domanda" not in got


def test_html_outlook_web_reply_header():
    got = new_text("", OWA_HTML)
    assert got == "Risolto, grazie."
    flat = "Risolto, grazie.\nTesto della richiesta originale"  # history markers lost in text
    assert new_text(flat, OWA_HTML) == "Risolto, grazie."


def test_html_to_text_layout():
    text = html_to_text(
        "<div>uno<br>due</div><p>&nbsp;</p><p>tre <b>quattro</b></p>"
        "<blockquote>citato<br>ancora</blockquote><style>p{}</style><!-- nota -->"
    )
    assert text == "uno\ndue\n\ntre quattro\n> citato\n> ancora"


@pytest.mark.parametrize("name", REPLIES_AND_FORWARDS)
def test_with_parsed_message(name):
    """As the integrator calls it: the parser's text and its sanitised HTML."""
    parse = pytest.importorskip("maild.parse")
    pm = parse.parse_message((SAMPLES / name).read_bytes())
    e = EXPECTED[name]
    got = new_text(pm.text, pm.html)
    assert e["new_text_must_contain"] in got
    if e["new_text_must_not_contain"]:
        assert e["new_text_must_not_contain"] not in got
