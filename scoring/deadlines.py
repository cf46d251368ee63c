"""Service promises as dates: "contact within 2 working days" -> the date by which the bank contacts.

Pure: the holiday calendar arrives as data (`products.policy.HolidayCalendar`, loaded from
products/calendar.yaml by the caller), the start date is the quote's as-of date.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from products.policy import HolidayCalendar
from products.schema import Service

MAX_SCAN_DAYS = 400  # a run of non-working days longer than this means a broken calendar


def add_days(start: dt.date, days: int, working: bool, calendar: HolidayCalendar) -> dt.date:
    """`days` after `start` (the start day itself not counted): calendar days, or working days."""
    if not working:
        return start + dt.timedelta(days=days)
    day, left = start, days
    for _ in range(MAX_SCAN_DAYS + days):
        if left == 0:
            return day
        day += dt.timedelta(days=1)
        if calendar.is_working_day(day):
            left -= 1
    raise ValueError(f"no {days} working days within {MAX_SCAN_DAYS} days after {start}")


def service_deadlines(service: Service, start: dt.date | None, calendar: HolidayCalendar) -> dict[str, Any] | None:
    """The dates a product's service promise gives, counted from `start`; None when it promises no delay
    in days (or there is no start date)."""
    if start is None or (service.contact_days is None and service.disbursement_days is None):
        return None
    out: dict[str, Any] = {"from": start.isoformat(), "working_days": service.working_days}
    last = start
    zh, en = [], []
    kind_zh = "个工作日" if service.working_days else "日"
    kind_en = "working day(s)" if service.working_days else "day(s)"
    for key, days, verb_zh, verb_en in (("contact_by", service.contact_days, "对接", "contact"),
                                        ("disbursement_by", service.disbursement_days, "放款", "disbursement")):
        if days is None:
            continue
        date = add_days(start, days, service.working_days, calendar)
        last = max(last, date)
        out[key] = date.isoformat()
        zh.append(f"{days}{kind_zh}内{verb_zh}：{date.isoformat()}前")
        en.append(f"{verb_en} within {days} {kind_en}: by {date.isoformat()}")
    # a date in a year the calendar does not cover counted weekends only: say so
    out["calendar_covered"] = not service.working_days or all(
        y in calendar.years for y in range(start.year, last.year + 1))
    out["text"] = {"zh": "；".join(zh), "en": "; ".join(en)}
    return out
