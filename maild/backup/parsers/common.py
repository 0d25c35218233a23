"""Helpers shared by the product parsers: dates in the formats reports use, sizes, summaries."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

LOCAL_TZ = ZoneInfo("Europe/Rome")

MONTHS = {
    # English (full and abbreviated) and Italian month names
    **{m: i for i, m in enumerate(
        ["january", "february", "march", "april", "may", "june", "july", "august",
         "september", "october", "november", "december"], start=1)},
    **{m: i for i, m in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"],
        start=1)},
    **{m: i for i, m in enumerate(
        ["gennaio", "febbraio", "marzo", "aprile", "maggio", "giugno", "luglio", "agosto",
         "settembre", "ottobre", "novembre", "dicembre"], start=1)},
    "sept": 9, "gen": 1, "mag": 5, "giu": 6, "lug": 7, "ago": 8, "set": 9, "ott": 10, "dic": 12,
}  # fmt: skip

_TIME = r"(\d{1,2}):(\d{2})(?::(\d{2}))?(?:[.,]\d+)?(?:\s*([AaPp])\.?[Mm]\.?)?"
_DMY = re.compile(r"\b(\d{1,2})[/.-](\d{1,2})[/.-](\d{4})[ ,T]+" + _TIME)
_YMD = re.compile(r"\b(\d{4})[/.-](\d{1,2})[/.-](\d{1,2})[ T]+" + _TIME)
_MDY = re.compile(r"\b(\d{1,2})/(\d{1,2})/(\d{4})[ ,]+" + _TIME)
_CLOCK = re.compile(r"^\s*" + _TIME + r"\s*$")
_D_MON_Y = re.compile(r"\b(\d{1,2})[- ]([A-Za-z]{3,9})[- ](\d{4})[ ,]+" + _TIME)


def _hms(h: str, m: str, s: str | None, ampm: str | None) -> time | None:
    hour = int(h)
    if ampm:
        if not 1 <= hour <= 12:
            return None
        hour = hour % 12 + (12 if ampm.lower() == "p" else 0)
    try:
        return time(hour, int(m), int(s or 0))
    except ValueError:
        return None


def _build(y: int, mo: int, d: int, t: time | None) -> datetime | None:
    if t is None:
        return None
    try:
        return datetime.combine(date(y, mo, d), t)
    except ValueError:
        return None


def parse_dmy(text: str | None) -> datetime | None:
    """`11/03/2025 02:00:00` (Italian day-first, as Windows tools print it on it-IT)."""
    m = _DMY.search(text or "")
    if not m:
        return None
    d, mo, y, h, mi, s, ap = m.groups()
    return _build(int(y), int(mo), int(d), _hms(h, mi, s, ap))


def parse_mdy(text: str | None) -> datetime | None:
    """`3/12/2025 11:00:09 PM` (US month-first)."""
    m = _MDY.search(text or "")
    if not m:
        return None
    mo, d, y, h, mi, s, ap = m.groups()
    return _build(int(y), int(mo), int(d), _hms(h, mi, s, ap))


def parse_ymd(text: str | None) -> datetime | None:
    """`2025-03-10 12:40:02`, `2025/03/10 23:41:27`, `2025-03-11T02:30:03`."""
    m = _YMD.search(text or "")
    if not m:
        return None
    y, mo, d, h, mi, s, ap = m.groups()
    return _build(int(y), int(mo), int(d), _hms(h, mi, s, ap))


def parse_d_mon_y(text: str | None) -> datetime | None:
    """`10-Mar-2025 23:05:03` (Bacula) and `10 March 2025 22:00:12`."""
    m = _D_MON_Y.search(text or "")
    if not m:
        return None
    d, mon, y, h, mi, s, ap = m.groups()
    month = MONTHS.get(mon.lower())
    return _build(int(y), month, int(d), _hms(h, mi, s, ap)) if month else None


def parse_clock(text: str | None) -> time | None:
    """`22:00:41` or `10:00:41 PM`."""
    m = _CLOCK.match(text or "")
    return _hms(*m.groups()) if m else None


def utc_to_local(moment: datetime) -> datetime:
    """An aware (or naive UTC) instant as naive Europe/Rome wall-clock time."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(LOCAL_TZ).replace(tzinfo=None)


def epoch_to_local(seconds: int) -> datetime:
    return utc_to_local(datetime.fromtimestamp(seconds, UTC))


def on_day(day: date, start: time | None, end: time | None) -> tuple[datetime | None, ...]:
    """Start/end datetimes from a session date and two clock times (end may pass midnight)."""
    first = datetime.combine(day, start) if start else None
    last = datetime.combine(day, end) if end else None
    if first and last and last < first:
        last += timedelta(days=1)
    return first, last


_DECIMAL_COMMA = re.compile(r"(\d),(\d{1,2})(?!\d)")


def size_text(value: str | None, italian: bool = False) -> str | None:
    """A size as printed; Italian reports' decimal comma becomes a dot (`18,4 GB` -> `18.4 GB`)."""
    if not value:
        return None
    value = re.sub(r"\s+", " ", value).strip()
    return _DECIMAL_COMMA.sub(r"\1.\2", value) if italian else value


def clip(text: str, limit: int = 300) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def summary(items: Iterable[str], limit: int = 600, most: int = 3) -> str | None:
    """Distinct messages joined with `; `, at most `most` of them, with a `(+N)` tail."""
    seen: list[str] = []
    for item in items:
        item = clip(item)
        if item and item not in seen:
            seen.append(item)
    if not seen:
        return None
    text = "; ".join(seen[:most])
    if len(seen) > most:
        text += f" (+{len(seen) - most})"
    return clip(text, limit)


def first_match(patterns: Iterable[tuple[re.Pattern[str], str]], text: str) -> str | None:
    """The label of the first pattern found in `text` (order patterns warning-before-success)."""
    for pattern, label in patterns:
        if pattern.search(text):
            return label
    return None
