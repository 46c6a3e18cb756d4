"""Time as the guide means it: calendar dates in America/Montreal, inclusive windows."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

__all__ = ["MONTREAL", "DayClock", "day_start", "in_force", "local_date", "parse_date", "utc_now"]

MONTREAL = ZoneInfo("America/Montreal")


def utc_now() -> datetime:
    return datetime.now(UTC)


def local_date(at: datetime) -> date:
    """The calendar date in Montreal at an instant (aware datetime)."""
    return at.astimezone(MONTREAL).date()


def day_start(day: date) -> datetime:
    """The first instant of a calendar day in Montréal."""
    return datetime(day.year, day.month, day.day, tzinfo=MONTREAL)


def parse_date(text: str) -> date:
    """Strict YYYY-MM-DD; raises ValueError otherwise."""
    if len(text) != 10 or text[4] != "-" or text[7] != "-":
        raise ValueError(f"{text!r} is not a date of the form YYYY-MM-DD")
    return date.fromisoformat(text)


def in_force(start: date, end: date, ended_at: datetime | None, at: datetime) -> bool:
    """A relation counts from start to end, both inclusive, until it is removed."""
    if ended_at is not None and at >= ended_at:
        return False
    return start <= local_date(at) <= end


class DayClock:
    """Turns epoch seconds into Montreal day ordinals, caching the last day's bounds.

    The check path asks this for every decision; the zone conversion costs more than
    the rest of a decision, so the bounds of the last day seen are kept as one tuple
    (a single attribute read, so concurrent readers never see half an update).
    """

    __slots__ = ("_window",)

    def __init__(self) -> None:
        self._window: tuple[float, float, int] = (0.0, -1.0, 0)

    def ordinal(self, ts: float) -> int:
        lo, hi, ordinal = self._window
        if lo <= ts < hi:
            return ordinal
        day = datetime.fromtimestamp(ts, MONTREAL).date()
        start = datetime(day.year, day.month, day.day, tzinfo=MONTREAL).timestamp()
        if day == date.max:
            end = float("inf")
        else:
            next_day = day + timedelta(days=1)
            end = datetime(next_day.year, next_day.month, next_day.day, tzinfo=MONTREAL).timestamp()
        self._window = (start, end, day.toordinal())
        return day.toordinal()
