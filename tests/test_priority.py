"""Requested priority from subject tags, body lines, headers and keyword rules."""

from __future__ import annotations

import email

import pytest

from maild.sla import (
    DEFAULT_KEYWORD_RULES,
    Priority,
    Profile,
    QueuePrecedence,
    requested_priority,
    strip_priority_tag,
)

ALTA, MEDIA, BASSA = Priority.ALTA, Priority.MEDIA, Priority.BASSA


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("alta", ALTA),
        ("High", ALTA),
        ("URGENTE", ALTA),
        ("media", MEDIA),
        ("Medium", MEDIA),
        ("normale", MEDIA),
        ("bassa", BASSA),
        (" low. ", BASSA),
        ("boh", None),
        ("", None),
    ],
)
def test_priority_aliases(text: str, expected: Priority | None) -> None:
    assert Priority.parse(text) is expected


def test_priority_rank_orders_urgency() -> None:
    assert BASSA.rank < MEDIA.rank < ALTA.rank


def test_profiles_carry_queue_precedence() -> None:
    assert [p.precedence for p in Profile] == [
        QueuePrecedence.NESSUNA,
        QueuePrecedence.BASE,
        QueuePrecedence.MEDIA,
        QueuePrecedence.ALTA,
    ]
    assert [int(p.precedence) for p in Profile] == [0, 1, 2, 3]
    assert Profile.parse(" pro ") is Profile.PRO
    with pytest.raises(ValueError):
        Profile.parse("GOLD")


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("[ALTA] Stampante ferma", ALTA),
        ("Stampante ferma [urgente]", ALTA),
        ("[BASSA] richiesta toner", BASSA),
        ("[MEDIA] nuovo utente", MEDIA),
        ("[Priorità: alta] server giù", ALTA),
        ("[priorita' bassa] info", BASSA),
        ("[High] VPN down", ALTA),
        ("R: [ALTA] Stampante ferma", ALTA),
        ("[BASSA][ALTA] conflitto", ALTA),  # several tags: the highest
        ("Stampante alta ferma", None),  # a bare word is not a tag
        ("[Ticket#1234] Stampante", None),
        ("[ALTAMURA] sede distaccata", None),
    ],
)
def test_subject_tags(subject: str, expected: Priority | None) -> None:
    assert requested_priority(subject, "") is expected


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("Buongiorno,\nPriorità: ALTA\nla stampante non va", ALTA),
        ("Priorita: alta", ALTA),
        ("Priorita': bassa\n", BASSA),
        ("PRIORITÀ = media", MEDIA),
        ("  Priority: high", ALTA),
        ("> Priorità: alta\nrisposta", None),  # quoted from an earlier message
        ("la priorità: alta è stata assegnata ieri", None),  # not at the start of a line
        ("Priorità: altissima", None),
    ],
)
def test_body_priority_line(body: str, expected: Priority | None) -> None:
    assert requested_priority("Problema", body) is expected


def test_subject_tag_wins_over_body_line() -> None:
    assert requested_priority("[BASSA] toner", "Priorità: alta") is BASSA


def test_headers_are_off_by_default() -> None:
    headers = {"Importance": "high"}
    assert requested_priority("Problema", "", headers) is None
    assert requested_priority("Problema", "", headers, use_headers=True) is ALTA


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"x-priority": "1 (Highest)"}, ALTA),
        ({"X-Priority": "2"}, ALTA),
        ({"X-Priority": "3 (Normal)"}, None),  # client default, not a choice
        ({"X-Priority": "5 (Lowest)"}, BASSA),
        ({"Importance": "Low"}, BASSA),
        ({"Importance": "normal"}, None),
        ({"Priority": "urgent"}, ALTA),
        ({"Priority": "non-urgent"}, BASSA),
        ({"X-MSMail-Priority": "High"}, ALTA),
        ({"Importance": "low", "X-Priority": "1"}, ALTA),
    ],
)
def test_header_values(headers: dict[str, str], expected: Priority | None) -> None:
    assert requested_priority("Problema", "", headers, use_headers=True) is expected


def test_headers_from_an_email_message_and_explicit_choice_wins() -> None:
    message = email.message_from_string("Importance: High\nSubject: x\n\nbody\n")
    assert requested_priority("x", "", message, use_headers=True) is ALTA
    assert requested_priority("[BASSA] x", "", message, use_headers=True) is BASSA


def test_keyword_rules_only_raise() -> None:
    rules = DEFAULT_KEYWORD_RULES
    body = "Il gestionale è BLOCCANTE per l'ufficio anagrafe"
    assert requested_priority("Gestionale", body) is None  # no rules given
    assert requested_priority("Gestionale", body, keyword_rules=rules) is ALTA
    assert requested_priority("[BASSA] Gestionale", body, keyword_rules=rules) is ALTA
    assert requested_priority("Aiuto", "non riesco\na   lavorare", keyword_rules=rules) is ALTA
    assert requested_priority("Sbloccante", "", keyword_rules=rules) is None  # whole words
    lowering = [("quando potete", BASSA)]
    assert requested_priority("[ALTA] pc", "quando potete", keyword_rules=lowering) is ALTA
    assert requested_priority("pc", "quando potete", keyword_rules=lowering) is BASSA


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("[ALTA] Stampante ferma", "Stampante ferma"),
        ("R: [urgente]  Stampante ferma", "R: Stampante ferma"),
        ("Stampante ferma [Priorità: bassa]", "Stampante ferma"),
        ("[Ticket#12] [ALTA] VPN", "[Ticket#12] VPN"),
        ("Nessun tag", "Nessun tag"),
    ],
)
def test_strip_priority_tag(subject: str, expected: str) -> None:
    assert strip_priority_tag(subject) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Il gestionale è BLOCCANTE da stamattina",
        "Non Riesco A\n Lavorare con il protocollo",
        "bloccante",
        "il problema è BLOCCANTE, ſcusate",  # a long s elsewhere in the text
        "KO: non riesco a lavorare",  # the Kelvin sign, which re.IGNORECASE takes for k
    ],
)
def test_keyword_rules_match_in_any_case(text):
    rules = [("bloccante", Priority.ALTA), ("non riesco a lavorare", Priority.ALTA)]
    assert requested_priority("Richiesta", text, keyword_rules=rules) is Priority.ALTA


def test_keyword_prefilter_follows_ignorecase_special_letters():
    # re.IGNORECASE matches "ſ" (long s) to "s": the quick substring test must not miss it
    rules = [("sistema", Priority.ALTA)]
    assert requested_priority("x", "il ſiſtema è fermo", keyword_rules=rules) is Priority.ALTA
    assert requested_priority("x", "il sistemista è in ferie", keyword_rules=rules) is None
