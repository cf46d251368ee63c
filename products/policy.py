"""The bank's policy maxima (`policy.yaml`) and the holiday calendar (`calendar.yaml`), loaded once.

Both are data the bank changes without code; the settings `product_policy_file` and
`holiday_calendar_file` point at other files. Product definitions are checked against the policy in
`products.schema.semantic_issues`; the scoring layer receives the calendar as an argument.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

PACKAGE_DIR = Path(__file__).resolve().parent
POLICY_FILE = PACKAGE_DIR / "policy.yaml"
CALENDAR_FILE = PACKAGE_DIR / "calendar.yaml"


def _unit(unit: str, **bounds: float) -> object:
    return Field(json_schema_extra={"unit": unit}, **bounds)


class Policy(BaseModel):
    """Policy maxima; every key carries its unit in its name (see policy.yaml)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    guarantee_fee_pct_max: Annotated[float, _unit("percent", ge=0, le=100)]
    subsidy_share_max: Annotated[float, _unit("fraction", ge=0, le=1)]
    subsidy_points_max_pp: Annotated[float, _unit("percentage points", ge=0, le=100)]
    limit_cny_max: Annotated[float, _unit("CNY", gt=0, le=1e12)]
    rate_pct_min: Annotated[float, _unit("percent", ge=0, le=100)]
    rate_pct_max: Annotated[float, _unit("percent", gt=0, le=100)]
    spread_pp_min: Annotated[float, _unit("percentage points", ge=-100, le=100)]
    spread_pp_max: Annotated[float, _unit("percentage points", ge=-100, le=100)]
    coefficient_cap_max: Annotated[float, _unit("factor", ge=1, le=100)]
    max_pd_max: Annotated[float, _unit("fraction", gt=0, le=1)]
    risk_compensation_share_max: Annotated[float, _unit("fraction", ge=0, le=1)]
    service_days_max: Annotated[int, _unit("days", ge=0, le=366)]

    @model_validator(mode="after")
    def _ordered(self) -> Policy:
        if self.rate_pct_min >= self.rate_pct_max:
            raise ValueError("rate_pct_min must be under rate_pct_max")
        if self.spread_pp_min >= self.spread_pp_max:
            raise ValueError("spread_pp_min must be under spread_pp_max")
        return self


# The schema's own bounds as a policy: what a stored definition is checked against when it is rebuilt
# for replay (it was within the bank's policy of its day; a stricter policy today must not break replay)
PERMISSIVE = Policy(guarantee_fee_pct_max=100, subsidy_share_max=1, subsidy_points_max_pp=100, limit_cny_max=1e12,
                    rate_pct_min=0, rate_pct_max=100, spread_pp_min=-100, spread_pp_max=100, coefficient_cap_max=100,
                    max_pd_max=1, risk_compensation_share_max=1, service_days_max=366)


class PolicyFileError(ValueError):
    """A policy or calendar file that cannot be used (the service refuses to start on it)."""


def _read(path: Path) -> object:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise PolicyFileError(f"{path}: cannot read: {e}") from None


@cache
def load_policy(path: Path = POLICY_FILE) -> Policy:
    try:
        return Policy.model_validate(_read(path))
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, x['loc'])) or '<file>'}: {x['msg']}" for x in e.errors())
        raise PolicyFileError(f"{path}: {problems}") from None


def default_policy() -> Policy:
    """The policy named by the settings (default products/policy.yaml)."""
    from features.settings import get_settings

    return load_policy(get_settings().product_policy_file or POLICY_FILE)


@dataclass(frozen=True)
class HolidayCalendar:
    """Non-working weekdays (holidays) and working weekend days (make-up days) of the years covered."""

    years: frozenset[int]
    holidays: frozenset[dt.date]
    workdays: frozenset[dt.date]

    def is_working_day(self, day: dt.date) -> bool:
        if day in self.workdays:
            return True
        return day.weekday() < 5 and day not in self.holidays


class _Span(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    start: dt.date = Field(alias="from")
    to: dt.date


class _CalendarFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    years: Annotated[list[Annotated[int, Field(ge=1990, le=2100)]], Field(min_length=1)]
    holidays: list[dt.date | _Span] = []
    workdays: list[dt.date] = []


@cache
def load_calendar(path: Path = CALENDAR_FILE) -> HolidayCalendar:
    try:
        data = _CalendarFile.model_validate(_read(path))
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, x['loc'])) or '<file>'}: {x['msg']}" for x in e.errors())
        raise PolicyFileError(f"{path}: {problems}") from None
    holidays: set[dt.date] = set()
    for item in data.holidays:
        if isinstance(item, dt.date):
            holidays.add(item)
            continue
        if item.to < item.start or (item.to - item.start).days > 31:
            raise PolicyFileError(f"{path}: holiday span {item.start} to {item.to} is reversed or over 31 days")
        holidays.update(item.start + dt.timedelta(days=k) for k in range((item.to - item.start).days + 1))
    clash = holidays & set(data.workdays)
    if clash:
        raise PolicyFileError(f"{path}: {sorted(clash)[0]} is both a holiday and a make-up working day")
    return HolidayCalendar(frozenset(data.years), frozenset(holidays), frozenset(data.workdays))


def default_calendar() -> HolidayCalendar:
    """The calendar named by the settings (default products/calendar.yaml)."""
    from features.settings import get_settings

    return load_calendar(get_settings().holiday_calendar_file or CALENDAR_FILE)
