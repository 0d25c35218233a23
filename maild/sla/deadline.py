"""Take-charge deadlines: the contract's target in working hours on the ente's calendar."""

from __future__ import annotations

from datetime import datetime, timedelta

from maild.config import Config, EnteConfig
from maild.sla.calendar import CalendarConfig, WorkingCalendar, calendar_for

_CALENDARS: dict[int, tuple[Config, CalendarConfig]] = {}


def calendar_config(cfg: Config) -> CalendarConfig:
    """The CalendarConfig of a loaded configuration (built once per Config object)."""
    hit = _CALENDARS.get(id(cfg))
    if hit is not None and hit[0] is cfg:
        return hit[1]
    cal = CalendarConfig.from_dict({"timezone": cfg.service.timezone, **cfg.sla.calendar})
    _CALENDARS[id(cfg)] = (cfg, cal)
    return cal


def ticket_calendar(cfg: Config, ente: EnteConfig | None, priority: str) -> WorkingCalendar:
    """Working time for a ticket: the ente's holidays and patron saint, and Saturday
    on-call only where its profile and the ticket's priority grant it."""
    return calendar_for(
        calendar_config(cfg),
        ente.province if ente else None,
        ente.closed_days if ente else (),
        ente.profile if ente else "MINIMAL",
        priority,
    )


def take_charge_target(cfg: Config, priority: str) -> timedelta:
    return timedelta(hours=cfg.sla.take_charge_hours[priority])


def take_charge_due(
    cfg: Config, ente: EnteConfig | None, priority: str, received_at: datetime
) -> datetime:
    """The clock starts at reception (or the next working moment) and runs for the target."""
    cal = ticket_calendar(cfg, ente, priority)
    return cal.add_working_time(received_at, take_charge_target(cfg, priority))
