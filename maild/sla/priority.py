"""Ticket priority requested by the ente, and the contract profiles' queue precedence.

How `requested_priority` weighs its signals (a help desk honours what the requester
explicitly chose, and only lets automatic hints make things more urgent):

1. Explicit requester choice, first source found wins:
   a. a tag in the subject: ``[ALTA]``, ``[URGENTE]``, ``[Priorità: bassa]``, ``[high]``...
   b. a line in the body: ``Priorità: alta``, ``Priorita': ALTA``, ``Priority: high``
      (quoted lines starting with ``>`` are ignored);
   c. only with ``use_headers=True``: Importance / X-Priority / Priority /
      X-MSMail-Priority headers. Their "normal" values are client defaults, not a
      choice, so only high/low values count.
   Within one source, several tags or lines: the highest wins.
2. Keyword rules ("bloccante", "non riesco a lavorare") can only *raise* the result:
   the outcome is the highest of the explicit choice and every matching rule.
3. No signal at all gives ``None``: the caller applies the contract's default.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from enum import Enum, IntEnum
from functools import lru_cache

from maild.textcase import lowered


class Priority(Enum):
    ALTA = "ALTA"
    MEDIA = "MEDIA"
    BASSA = "BASSA"

    @property
    def rank(self) -> int:
        """Bigger is more urgent: BASSA 1, MEDIA 2, ALTA 3."""
        return _RANK[self]

    @classmethod
    def parse(cls, value: str | Priority | None) -> Priority | None:
        """An Italian or English name ("alta", "High", "urgente", "normale"...), else None."""
        if value is None or isinstance(value, Priority):
            return value
        return _ALIASES.get(_normalise(value))


_RANK = {Priority.BASSA: 1, Priority.MEDIA: 2, Priority.ALTA: 3}

_ALIASES: dict[str, Priority] = {
    **dict.fromkeys(
        ("alta", "high", "highest", "urgente", "urgent", "critica", "critical"), Priority.ALTA
    ),
    **dict.fromkeys(("media", "medium", "normale", "normal"), Priority.MEDIA),
    **dict.fromkeys(("bassa", "low", "lowest", "non urgente", "non-urgent"), Priority.BASSA),
}


class QueuePrecedence(IntEnum):
    NESSUNA = 0
    BASE = 1
    MEDIA = 2
    ALTA = 3


class Profile(Enum):
    """Service-contract profile of an ente."""

    MINIMAL = "MINIMAL"
    BASIC = "BASIC"
    PRO = "PRO"
    ENTERPRISE = "ENTERPRISE"

    @property
    def precedence(self) -> QueuePrecedence:
        return _PRECEDENCE[self]

    @classmethod
    def parse(cls, value: str | Profile) -> Profile:
        """Case-insensitive name; raises ValueError for an unknown profile."""
        if isinstance(value, Profile):
            return value
        return cls(value.strip().upper())


_PRECEDENCE = {
    Profile.MINIMAL: QueuePrecedence.NESSUNA,
    Profile.BASIC: QueuePrecedence.BASE,
    Profile.PRO: QueuePrecedence.MEDIA,
    Profile.ENTERPRISE: QueuePrecedence.ALTA,
}

# Suggested rules for the configuration; requested_priority applies none unless passed.
DEFAULT_KEYWORD_RULES: tuple[tuple[str, Priority], ...] = (
    ("bloccante", Priority.ALTA),
    ("non riesco a lavorare", Priority.ALTA),
    ("non riusciamo a lavorare", Priority.ALTA),
)

_ALIAS_WORDS = "|".join(
    re.escape(a).replace(r"\ ", r"\s+") for a in sorted(_ALIASES, key=len, reverse=True)
)
_PRIO_WORD = r"(?:priorit[aà]'?|priority|prio)"
# [ALTA], [ urgente ], [Priorità: alta], [Priority high], [prio=bassa]
_SUBJECT_TAG = re.compile(
    rf"\[\s*(?:{_PRIO_WORD}\s*[:=]?\s*)?(?P<value>{_ALIAS_WORDS})\s*\]", re.IGNORECASE
)
# "Priorità: alta" at the start of a line (not a quoted ">" line).
_BODY_LINE = re.compile(
    rf"^[ \t]*{_PRIO_WORD}[ \t]*[:=][ \t]*(?P<value>{_ALIAS_WORDS})\b", re.IGNORECASE | re.MULTILINE
)


def _normalise(value: str) -> str:
    text = unicodedata.normalize("NFC", value).strip().strip(".,;:!'\"").casefold()
    return re.sub(r"\s+", " ", text)


def _highest(found: list[Priority]) -> Priority | None:
    return max(found, key=lambda p: p.rank, default=None)


def _from_subject(subject: str) -> Priority | None:
    return _highest([_ALIASES[_normalise(m["value"])] for m in _SUBJECT_TAG.finditer(subject)])


def _from_body(text: str) -> Priority | None:
    return _highest([_ALIASES[_normalise(m["value"])] for m in _BODY_LINE.finditer(text)])


def _header_values(headers: Mapping[str, str], name: str) -> list[str]:
    # Works for plain dicts of any key case and for email.message.Message.
    return [str(v) for k, v in headers.items() if k.casefold() == name.casefold()]


def _from_headers(headers: Mapping[str, str]) -> Priority | None:
    found: list[Priority] = []
    for name in ("Importance", "Priority", "X-MSMail-Priority"):
        for value in _header_values(headers, name):
            parsed = Priority.parse(value)
            if parsed is not None and parsed is not Priority.MEDIA:
                found.append(parsed)
    for value in _header_values(headers, "X-Priority"):
        # "1 (Highest)", "2 (High)", "3 (Normal)", "4 (Low)", "5 (Lowest)"
        digit = re.match(r"\s*([1-5])", value)
        if digit:
            level = int(digit[1])
            if level <= 2:
                found.append(Priority.ALTA)
            elif level >= 4:
                found.append(Priority.BASSA)
    return _highest(found)


@lru_cache(maxsize=256)
def _keyword_pattern(keyword: str) -> re.Pattern[str]:
    words = [re.escape(w) for w in keyword.split()]
    return re.compile(r"(?<!\w)" + r"\s+".join(words) + r"(?!\w)", re.IGNORECASE)


def _may_contain(lowered: str, keyword: str) -> bool:
    """A quick necessary condition for _keyword_pattern(keyword) to match: its longest
    word occurs in the text lowered by maild.textcase."""
    longest = max(keyword.split(), key=len, default="").lower()
    return not longest.isascii() or longest in lowered


def requested_priority(
    subject: str,
    text: str,
    headers: Mapping[str, str] | None = None,
    use_headers: bool = False,
    keyword_rules: Sequence[tuple[str, Priority]] = (),
) -> Priority | None:
    """The priority the requester asked for (see the module docstring for precedence)."""
    haystack = f"{subject}\n{text}"
    low = lowered(haystack)
    # pre-tests: a tag needs its bracket, a "Priorità:" line the letters "prio"
    explicit = (_from_subject(subject) if "[" in subject else None) or (
        _from_body(text) if "prio" in low else None
    )
    if explicit is None and use_headers and headers is not None:
        explicit = _from_headers(headers)
    found = [explicit] if explicit is not None else []
    for keyword, priority in keyword_rules:
        if _may_contain(low, keyword) and _keyword_pattern(keyword).search(haystack):
            found.append(priority)
    # The highest wins, so a keyword rule can raise an explicit choice but never lower it.
    return _highest(found)


def strip_priority_tag(subject: str) -> str:
    """The subject without priority tags, e.g. "[ALTA] Stampante ferma" -> "Stampante ferma"."""
    stripped = _SUBJECT_TAG.sub(" ", subject)
    return re.sub(r"\s{2,}", " ", stripped).strip()
