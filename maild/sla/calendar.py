"""Working-hours calendar for SLA clocks: weekly windows, Italian holidays, Saturday on-call.

Semantics (what the tests check against a minute-by-minute reference):
- An instant is working time when its *local wall-clock* time (in the configured zone)
  lies in a half-open window ``[start, end)`` of its weekday, and its local date is not
  closed. On a spring-forward day the skipped wall-clock hour is never worked; on a
  fall-back day a window covering the repeated hour is worked twice (real elapsed time).
- Closed dates: national holidays of the `holidays` package, the province's patron saint
  when the package has it for that subdivision, and the ente's own ``closed_days``
  (exact dates, or "MM-DD" for a yearly patron saint). On-call windows are closed too.
- Results are timezone-aware datetimes in **UTC**; inputs may be in any zone but must
  be aware. Arithmetic is exact to the microsecond.
- ``add_working_time`` returns the end of the last window touched when the duration runs
  out exactly there (Friday 17:00 + 1 h = Friday 18:00, not Monday 08:30).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays

from maild.sla.priority import Priority, Profile

Window = tuple[time, time]
WeeklyWindows = Mapping[int, Sequence[Window]]

_US = timedelta(microseconds=1)
_DAY_US = 86_400_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAIVE_EPOCH = datetime(1970, 1, 1)
# Give up after this many days without a single working moment (misconfiguration).
_MAX_EMPTY_DAYS = 366 * 10


def _office_hours() -> dict[int, list[Window]]:
    morning, afternoon = (time(8, 30), time(12, 30)), (time(14, 0), time(18, 0))
    return {weekday: [morning, afternoon] for weekday in range(5)}  # Mon-Fri


def _saturday_on_call() -> dict[int, list[Window]]:
    return {5: [(time(8, 30), time(12, 30))]}


@dataclass(frozen=True, eq=False)  # eq=False: hashable by identity, so calendars can be cached
class CalendarConfig:
    """Contract calendar. Weekdays are 0=Monday..6=Sunday; windows are local wall-clock
    ``(start, end)`` pairs, half-open, with ``end == time(0)`` meaning midnight at the end
    of the day. A window may not cross midnight: split it in two."""

    timezone: str = "Europe/Rome"
    weekly: WeeklyWindows = field(default_factory=_office_hours)
    on_call: WeeklyWindows = field(default_factory=_saturday_on_call)
    on_call_profiles: frozenset[Profile] = frozenset(
        {Profile.BASIC, Profile.PRO, Profile.ENTERPRISE}
    )
    on_call_priorities: frozenset[Priority] = frozenset({Priority.ALTA})
    country: str = "IT"

    def __post_init__(self) -> None:
        # Fail when the configuration is loaded, not on the first ticket.
        ZoneInfo(self.timezone)
        for source in (self.weekly, self.on_call):
            for weekday, windows in source.items():
                _parse_weekday(weekday)
                for window in windows:
                    _window_us(window)

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> CalendarConfig:
        """Build from a YAML-style mapping, e.g.
        ``{"timezone": "Europe/Rome", "weekly": {"mon": ["08:30-12:30", "14:00-18:00"]},
        "on_call": {"sab": ["08:30-12:30"]}, "on_call_profiles": ["PRO"],
        "on_call_priorities": ["alta"]}``. Missing keys keep the defaults."""
        kwargs: dict[str, object] = {}
        if "timezone" in data:
            kwargs["timezone"] = str(data["timezone"])
        if "country" in data:
            kwargs["country"] = str(data["country"])
        for key in ("weekly", "on_call"):
            if key in data:
                kwargs[key] = _parse_weekly(data[key])  # type: ignore[arg-type]
        if "on_call_profiles" in data:
            kwargs["on_call_profiles"] = frozenset(
                Profile.parse(p)
                for p in data["on_call_profiles"]  # type: ignore[attr-defined]
            )
        if "on_call_priorities" in data:
            priorities = set()
            for raw in data["on_call_priorities"]:  # type: ignore[attr-defined]
                parsed = Priority.parse(raw)
                if parsed is None:
                    raise ValueError(f"unknown priority {raw!r}")
                priorities.add(parsed)
            kwargs["on_call_priorities"] = frozenset(priorities)
        return cls(**kwargs)  # type: ignore[arg-type]


_WEEKDAY_NAMES = {
    **{name: i for i, name in enumerate(("mon", "tue", "wed", "thu", "fri", "sat", "sun"))},
    **{name: i for i, name in enumerate(("lun", "mar", "mer", "gio", "ven", "sab", "dom"))},
}


def _parse_weekday(key: object) -> int:
    if isinstance(key, int) and 0 <= key <= 6:
        return key
    name = str(key).strip().casefold()
    if name.isdigit() and 0 <= int(name) <= 6:
        return int(name)
    if name[:3] in _WEEKDAY_NAMES:  # "monday", "lunedì" and their abbreviations
        return _WEEKDAY_NAMES[name[:3]]
    raise ValueError(f"unknown weekday {key!r}")


def _parse_window(raw: object) -> Window:
    if isinstance(raw, str):
        match = re.fullmatch(r"\s*(\d{1,2}:\d{2})\s*-\s*(\d{1,2}:\d{2})\s*", raw)
        if not match:
            raise ValueError(f"window must look like '08:30-12:30', not {raw!r}")
        start, end = (time.fromisoformat(part.zfill(5)) for part in match.groups())
        return start, end
    start, end = raw  # type: ignore[misc]
    return (
        start if isinstance(start, time) else time.fromisoformat(str(start)),
        end if isinstance(end, time) else time.fromisoformat(str(end)),
    )


def _parse_weekly(raw: Mapping[object, Iterable[object]]) -> dict[int, list[Window]]:
    weekly: dict[int, list[Window]] = {}
    for key, windows in raw.items():
        weekly.setdefault(_parse_weekday(key), []).extend(_parse_window(w) for w in windows)
    return weekly


def _window_us(window: Window) -> tuple[int, int]:
    """A window as microseconds from local midnight; end time(0) is 24:00."""
    start, end = window
    start_us = (start.hour * 3600 + start.minute * 60 + start.second) * 1_000_000
    start_us += start.microsecond
    end_us = (end.hour * 3600 + end.minute * 60 + end.second) * 1_000_000 + end.microsecond
    if end_us == 0:
        end_us = _DAY_US
    if start.tzinfo is not None or end.tzinfo is not None:
        raise ValueError("windows are local wall-clock times: use naive time objects")
    if start_us >= end_us:
        raise ValueError(f"window {start}-{end} is empty or crosses midnight")
    return start_us, end_us


def _merge(intervals: Iterable[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return tuple(merged)


def _to_us(moment: datetime) -> int:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("SLA calendar needs timezone-aware datetimes")
    return (moment - _EPOCH) // _US


def _from_us(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


@dataclass(frozen=True, slots=True)
class _Day:
    intervals: tuple[tuple[int, int], ...]  # UTC microseconds, sorted, disjoint
    total: int  # sum of interval lengths


_CLOSED = _Day((), 0)


class WorkingCalendar:
    """Working time of one ente's contract. Pure: no I/O after construction."""

    def __init__(
        self,
        config: CalendarConfig | None = None,
        province: str | None = None,
        closed_days: Iterable[date | str] = (),
        on_call: bool = False,
    ) -> None:
        self.config = config or CalendarConfig()
        self.tz = ZoneInfo(self.config.timezone)
        self.on_call = on_call
        subdiv = province.strip() if province else None
        if subdiv and len(subdiv) == 2:
            subdiv = subdiv.upper()
        try:
            # No years given: the package fills in each year on first lookup.
            self._holidays = holidays.country_holidays(self.config.country, subdiv=subdiv)
        except NotImplementedError as exc:
            raise ValueError(f"unknown province/subdivision {province!r}: {exc}") from None
        self._closed_dates: set[date] = set()
        self._closed_yearly: set[tuple[int, int]] = set()
        for day in closed_days:
            self._add_closed_day(day)
        windows: dict[int, list[tuple[int, int]]] = {d: [] for d in range(7)}
        sources = [self.config.weekly] + ([self.config.on_call] if on_call else [])
        for source in sources:
            for weekday, day_windows in source.items():
                windows[_parse_weekday(weekday)].extend(_window_us(w) for w in day_windows)
        self._windows = {d: _merge(w) for d, w in windows.items()}
        self._days: dict[date, _Day] = {}

    def _add_closed_day(self, day: date | str) -> None:
        if isinstance(day, datetime):
            day = day.date()
        if isinstance(day, date):
            self._closed_dates.add(day)
            return
        text = day.strip()
        if re.fullmatch(r"\d{2}-\d{2}", text):  # "MM-DD": every year (patron saint)
            month, dom = int(text[:2]), int(text[3:])
            date(2000, month, dom)  # validates, 2000 being a leap year allows 02-29
            self._closed_yearly.add((month, dom))
        else:
            self._closed_dates.add(date.fromisoformat(text))

    # -- per-day data ---------------------------------------------------------------

    def is_closed(self, day: date) -> bool:
        """True on holidays and the ente's closed days (whatever the weekday)."""
        return (
            day in self._closed_dates
            or (day.month, day.day) in self._closed_yearly
            or day in self._holidays
        )

    def closed_reason(self, day: date) -> str | None:
        """Holiday name or "closed day" for a closed date, else None."""
        if day in self._holidays:
            return self._holidays.get(day)
        if day in self._closed_dates or (day.month, day.day) in self._closed_yearly:
            return "closed day"
        return None

    def _day(self, day: date) -> _Day:
        cached = self._days.get(day)
        if cached is None:
            cached = self._days[day] = self._compute_day(day)
        return cached

    def _offset_us(self, second: int) -> int:
        return datetime.fromtimestamp(second, self.tz).utcoffset() // _US  # type: ignore[operator]

    def _offset_segments(self, lo: int, hi: int) -> list[tuple[int, int, int]]:
        """Split UTC seconds [lo, hi) into (start_us, end_us, offset_us) runs of constant
        UTC offset. Samples every 12 h and bisects to the exact transition second."""
        points = list(range(lo, hi, 43_200)) + [hi]
        offsets = [self._offset_us(p) for p in points]
        transitions: list[tuple[int, int]] = []
        for a, b, off_a, off_b in zip(points, points[1:], offsets, offsets[1:], strict=False):
            while off_a != off_b and b - a > 1:  # first second with the new offset is in (a, b]
                mid = (a + b) // 2
                off_mid = self._offset_us(mid)
                if off_mid == off_a:
                    a = mid
                else:
                    b, off_b = mid, off_mid
            if off_a != off_b:
                transitions.append((b, off_b))
        segments = []
        start, offset = lo * 1_000_000, offsets[0]
        for second, new_offset in transitions:
            segments.append((start, second * 1_000_000, offset))
            start, offset = second * 1_000_000, new_offset
        segments.append((start, hi * 1_000_000, offset))
        return segments

    def _compute_day(self, day: date) -> _Day:
        windows = self._windows[day.weekday()]
        if not windows or self.is_closed(day):
            return _CLOSED
        midnight = (datetime.combine(day, time()) - _NAIVE_EPOCH) // _US  # local, as if UTC
        # Every instant whose local date is `day` lies within a day either side (|offset| < 24 h).
        lo = midnight // 1_000_000 - 86_400
        segments = self._offset_segments(lo, lo + 3 * 86_400)
        intervals = []
        for start, end in windows:
            local_start, local_end = midnight + start, midnight + end
            # In a run with UTC offset `off`, local = utc + off.
            for seg_start, seg_end, off in segments:
                a, b = max(local_start - off, seg_start), min(local_end - off, seg_end)
                if a < b:
                    intervals.append((a, b))
        merged = _merge(intervals)
        return _Day(merged, sum(b - a for a, b in merged))

    def _local_date(self, us: int) -> date:
        return _from_us(us).astimezone(self.tz).date()

    # -- public API -------------------------------------------------------------------

    def is_working(self, moment: datetime) -> bool:
        t = _to_us(moment)
        return any(a <= t < b for a, b in self._day(self._local_date(t)).intervals)

    def next_working_moment(self, moment: datetime) -> datetime:
        """`moment` itself (in UTC) when it is working time, else the next window start."""
        return self.add_working_time(moment, timedelta(0))

    def add_working_time(self, start: datetime, duration: timedelta) -> datetime:
        """The UTC instant when `duration` of working time has elapsed since `start`."""
        remaining = duration // _US
        if remaining < 0:
            raise ValueError("duration must not be negative")
        t = _to_us(start)
        day = self._local_date(t)
        empty_days = 0
        while empty_days < _MAX_EMPTY_DAYS:
            info = self._day(day)
            if not info.total:
                empty_days += 1
            elif remaining > info.total and t <= info.intervals[0][0]:
                remaining -= info.total  # the whole day is used up: skip it in one step
                empty_days = 0
            else:
                empty_days = 0
                for a, b in info.intervals:
                    if b <= t:
                        continue
                    a = max(a, t)
                    if remaining <= b - a:
                        return _from_us(a + remaining)
                    remaining -= b - a
            day += timedelta(days=1)
        raise ValueError(f"no working time within {_MAX_EMPTY_DAYS} days: check the calendar")

    def working_time_between(self, a: datetime, b: datetime) -> timedelta:
        """Working time in [a, b); zero when b <= a."""
        ta, tb = _to_us(a), _to_us(b)
        if tb <= ta:
            return timedelta(0)
        total = 0
        day, last = self._local_date(ta), self._local_date(tb)
        while day <= last:
            info = self._day(day)
            if info.total:
                if ta <= info.intervals[0][0] and info.intervals[-1][1] <= tb:
                    total += info.total
                else:
                    for start, end in info.intervals:
                        total += max(0, min(end, tb) - max(start, ta))
            day += timedelta(days=1)
        return timedelta(microseconds=total)


def on_call_applies(
    config: CalendarConfig, profile: Profile | str, priority: Priority | str | None
) -> bool:
    """Whether Saturday on-call counts for a ticket of this priority and ente profile."""
    return (
        Profile.parse(profile) in config.on_call_profiles
        and Priority.parse(priority) in config.on_call_priorities
    )


def calendar_for(
    config: CalendarConfig,
    ente_province: str | None,
    ente_closed_days: Iterable[date | str],
    profile: Profile | str,
    priority: Priority | str | None,
) -> WorkingCalendar:
    """The calendar for one ticket: on-call windows only when the contract grants them.
    Calendars are cached (per config object, province, closed days and on-call flag)."""
    closed = tuple(sorted({_closed_day_key(d) for d in ente_closed_days}))
    return _cached_calendar(
        config, ente_province, closed, on_call_applies(config, profile, priority)
    )


def _closed_day_key(day: date | str) -> str:
    if isinstance(day, datetime):
        day = day.date()
    return day.isoformat() if isinstance(day, date) else day.strip()


@lru_cache(maxsize=256)
def _cached_calendar(
    config: CalendarConfig, province: str | None, closed: tuple[str, ...], on_call: bool
) -> WorkingCalendar:
    return WorkingCalendar(config, province, closed, on_call)
