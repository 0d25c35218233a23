"""Ticket tags and reply/forward prefixes in subjects.

A ticket is referenced in a subject as `[Ticket#2026-000123]` (the tag word and the number
format are configurable). Mail clients pile prefixes in front of it ("R: R: I:", "RE[2]:",
"Risposta automatica:", "ANOMALIA MESSAGGIO: POSTA CERTIFICATA:"), in every language an
Italian office meets; `clean_subject` removes them and keeps the tag, `title_of` also drops
the tag to give the ticket's title.
"""

from __future__ import annotations

import re
from functools import lru_cache

# Reply, forward, auto-reply and bounce prefixes, matched case-insensitively and only when a
# colon follows (optionally after a counter), so "Richiesta", "I miei ticket" or
# "Re-installazione" are never touched. Longer alternatives first.
_PREFIX_WORDS = [
    # automatic replies and delivery reports written as prefixes
    r"risposta\s+automatica",
    r"automatic\s+reply",
    r"auto[\s-]?reply",
    r"out\s+of\s+(?:the\s+)?office(?:\s+auto[\s-]?reply)?",
    r"fuori\s+(?:ufficio|sede)",
    r"assente",
    r"automatische\s+antwort",
    r"abwesenheitsnotiz",
    r"r[ée]ponse\s+automatique",
    r"respuesta\s+autom[áa]tica",
    r"non\s+recapitabile",
    r"recapito\s+non\s+riuscito",
    r"undeliverable",
    r"undelivered",
    r"unzustellbar",
    r"non\s+remis",
    r"non\s+letto",
    r"letto",
    r"not\s+read",
    r"read",
    # PEC envelopes (the distinctive ones; receipts are handled case-sensitively below)
    r"anomalia\s+messaggio",
    r"posta\s+certificata",
    # forwards
    r"inoltro",
    r"inoltra",
    r"fwd?",
    r"tr",
    r"wg",
    r"rv",
    r"i",
    # replies
    r"rif\.?",
    r"ref\.?",
    r"r[ée]f\.?",
    r"antw",
    r"aw",
    r"sv",
    r"re",
    r"r",
]
_COUNTER = r"(?:\s*(?:\[\d+\]|\(\d+\)|\^\d+|\*\d+))?"
_COLON = r"\s*[:：]"
_PREFIX_RE = re.compile(
    r"^\s*(?:" + "|".join(_PREFIX_WORDS) + r")" + _COUNTER + _COLON + r"\s*", re.IGNORECASE
)
# PEC receipt subjects: providers write them upper-case; matched case-sensitively so an ordinary
# subject such as "Consegna: materiale" keeps its first word.
_PEC_RECEIPT_RE = re.compile(
    r"^\s*(?:ACCETTAZIONE|AVVISO DI NON ACCETTAZIONE|PRESA IN CARICO|CONSEGNA"
    r"|AVVISO DI MANCATA CONSEGNA|PREAVVISO DI MANCATA CONSEGNA(?: PER SUPERAMENTO TEMPO MASSIMO)?"
    r"|AVVISO DI RILEVAZIONE VIRUS|PROBLEMA DI SICUREZZA)\s*:\s*"
)
# Old Thunderbird/Netscape forward form: the whole subject in brackets, "[Fwd: Oggetto]".
_BRACKETED_FWD_RE = re.compile(r"^\s*\[\s*(?:fwd?|i|inoltro)\s*:\s*(.*)\]\s*$", re.IGNORECASE)
_SPACE_RE = re.compile(r"\s+")


@lru_cache(maxsize=16)
def _tag_re(tag_word: str) -> re.Pattern[str]:
    # The number is whatever stands between '#' and ']' so any configured format is found.
    return re.compile(r"\[\s*" + re.escape(tag_word) + r"\s*#\s*([^\]\s]+)\s*\]", re.IGNORECASE)


def ticket_tag(number: str, tag_word: str = "Ticket") -> str:
    """The tag to put in outgoing subjects: "[Ticket#2026-000123]"."""
    return f"[{tag_word}#{number}]"


def find_ticket_tag(subject: str, tag_word: str = "Ticket") -> str | None:
    """The ticket number of the first tag in the subject ("2026-000123"), wherever it stands."""
    m = _tag_re(tag_word).search(subject or "")
    return m.group(1) if m else None


def strip_prefixes(text: str) -> str:
    """Remove every leading reply/forward/auto/PEC prefix, repeated or nested."""
    text = _SPACE_RE.sub(" ", text or "").strip()
    while True:
        bracketed = _BRACKETED_FWD_RE.match(text)
        if bracketed:
            text = bracketed.group(1).strip()
            continue
        stripped = _PEC_RECEIPT_RE.sub("", _PREFIX_RE.sub("", text, count=1), count=1)
        if stripped == text:
            return text
        text = stripped


def clean_subject(subject: str, tag_word: str = "Ticket") -> str:
    """The subject without prefixes, the ticket tag kept (written canonically) where it stood.

    "R: R: I: [Ticket#2026-000131] PEC protocollo" -> "[Ticket#2026-000131] PEC protocollo";
    prefixes after the tag ("[Ticket#…] RE: …") and repeated tags are removed too.
    """
    subject = _SPACE_RE.sub(" ", subject or "").strip()
    tag_re = _tag_re(tag_word)
    m = tag_re.search(subject)
    if m is None:
        return strip_prefixes(subject)
    before = strip_prefixes(subject[: m.start()])
    # a second copy of the tag (clients re-adding it) is dropped, then prefixes after it
    after = strip_prefixes(tag_re.sub(" ", subject[m.end() :]))
    return " ".join(p for p in (before, ticket_tag(m.group(1), tag_word), after) if p)


def title_of(subject: str, tag_word: str = "Ticket") -> str:
    """The ticket title: the clean subject without any tag, whitespace-normalised."""
    without_tag = _tag_re(tag_word).sub(" ", clean_subject(subject, tag_word))
    return strip_prefixes(without_tag)
