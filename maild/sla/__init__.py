"""SLA clock: working-hours calendar and requested priority (pure, no database)."""

from maild.sla.calendar import (
    CalendarConfig,
    WorkingCalendar,
    calendar_for,
    on_call_applies,
)
from maild.sla.priority import (
    DEFAULT_KEYWORD_RULES,
    Priority,
    Profile,
    QueuePrecedence,
    requested_priority,
    strip_priority_tag,
)

__all__ = [
    "DEFAULT_KEYWORD_RULES",
    "CalendarConfig",
    "Priority",
    "Profile",
    "QueuePrecedence",
    "WorkingCalendar",
    "calendar_for",
    "on_call_applies",
    "requested_priority",
    "strip_priority_tag",
]
