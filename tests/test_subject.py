import json
from pathlib import Path

import pytest

from maild.subject import clean_subject, find_ticket_tag, strip_prefixes, ticket_tag, title_of

SAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "samples" / "italian-mail"
EXPECTED = json.loads((SAMPLES / "expected.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_samples_clean_subject_title_and_tag(name):
    e = EXPECTED[name]
    assert clean_subject(e["subject"]) == e["clean_subject"]
    assert title_of(e["subject"]) == e["title"]
    tag = e["refers_to_tag"]
    expected_number = tag[len("[Ticket#") : -1] if tag else None
    assert find_ticket_tag(e["subject"]) == expected_number


@pytest.mark.parametrize(
    "subject, clean",
    [
        ("R: R: I: [Ticket#2026-000131] PEC", "[Ticket#2026-000131] PEC"),
        ("RE:RE:Fwd:FW: stampante", "stampante"),
        ("R[2]: RE[3]: Re^2: Re(4): Re*5: stampante", "stampante"),
        ("Rif: Rif.: Inoltro: TR: AW: WG: SV: Fw: scanner", "scanner"),
        ("Re : re: rE: scanner", "scanner"),
        ("Risposta automatica: [Ticket#2026-000001] x", "[Ticket#2026-000001] x"),
        ("Automatic reply: Out of Office: x", "x"),
        ("Non recapitabile: Undeliverable: x", "x"),
        ("ANOMALIA MESSAGGIO: POSTA CERTIFICATA: R: Re: prova", "prova"),
        ("POSTA CERTIFICATA: POSTA CERTIFICATA: EXAMPLE", "EXAMPLE"),
        ("AVVISO DI MANCATA CONSEGNA: Test PEC", "Test PEC"),
        # prefixes after the tag, and a tag repeated by the client
        ("[Ticket#2026-000001] RE: I: x", "[Ticket#2026-000001] x"),
        ("R: [Ticket#2026-000001] R: [Ticket#2026-000001] x", "[Ticket#2026-000001] x"),
        # the tag written loosely is written back canonically
        ("Re: [ ticket # 2026-000001 ] x", "[Ticket#2026-000001] x"),
        ("[Fwd: Oggetto di prima]", "Oggetto di prima"),
        ("  R:   spazi \t  multipli  ", "spazi multipli"),
        ("", ""),
    ],
)
def test_clean_subject_prefixes(subject, clean):
    assert clean_subject(subject) == clean


@pytest.mark.parametrize(
    "subject",
    [
        "Richiesta: nuova postazione",
        "Integrazione: protocollo e PEC",
        "I miei ticket non si vedono",
        "Re-installazione Office",
        "Rete lenta in Ragioneria",
        "Inoltrare la posta al collega",
        "Consegna: materiale informatico",
        "Assenteismo: report presenze",
        "Fwd e forward non funzionano",
        "Undelivered Mail Returned to Sender",
    ],
)
def test_ordinary_words_are_not_prefixes(subject):
    assert clean_subject(subject) == subject
    assert title_of(subject) == subject


def test_tag_anywhere_and_configurable_word():
    assert find_ticket_tag("Stampante [Ticket#2026-000123]") == "2026-000123"
    assert find_ticket_tag("R: foo [TICKET#2026-000007] bar") == "2026-000007"
    assert find_ticket_tag("Stampante 2026-000123") is None
    assert find_ticket_tag("[Ticket#] vuoto") is None
    assert find_ticket_tag("R: [Richiesta#42] x", tag_word="Richiesta") == "42"
    assert find_ticket_tag("R: [Ticket#42] x", tag_word="Richiesta") is None
    assert clean_subject("R: [Richiesta#42] x", tag_word="Richiesta") == "[Richiesta#42] x"
    assert title_of("R: [Richiesta#42] I: x", tag_word="Richiesta") == "x"
    assert ticket_tag("2026-000123") == "[Ticket#2026-000123]"


def test_text_around_the_tag_is_kept():
    assert clean_subject("Urgente [Ticket#2026-000001] stampante") == (
        "Urgente [Ticket#2026-000001] stampante"
    )
    assert title_of("R: Urgente [Ticket#2026-000001]  stampante") == "Urgente stampante"


def test_strip_prefixes_leaves_tag_alone():
    assert strip_prefixes("R: [Ticket#1] x") == "[Ticket#1] x"
