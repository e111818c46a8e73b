"""Cron schedules as a CronJob's `schedule` and `timeZone` mean them (pure; over croniter).

Vocabulary: a schedule is Kubernetes' standard cron syntax: five fields (minute, hour, day of
month, month, day of week) or a descriptor, which is exactly one of the five-field schedules
(`DESCRIPTORS`: @yearly and @annually "0 0 1 1 *", @monthly "0 0 1 * *", @weekly "0 0 * * 0",
@daily and @midnight "0 0 * * *", @hourly "0 * * * *"), in lower case as Kubernetes' parser
takes them (@every is not Kubernetes' and is refused); a time zone is an IANA name
("Europe/Paris"), UTC when unset. Times are seconds since the epoch (floats), as the control
plane's clocks give them.

Invariants: `problem` says why a schedule or zone is unusable (in Kubernetes' words where it
has them) or None, and `Schedule` is only built from text without a problem; `TZ=`/`CRON_TZ=`
prefixes are refused (the zone belongs in `timeZone`); scheduled times are whole minutes.
"""

from __future__ import annotations

import datetime
import zoneinfo
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # croniter is imported where a schedule is read (not by every importer)
    from croniter import croniter

DESCRIPTORS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


class ScheduleError(ValueError):
    """An unusable schedule or time zone; the message says why."""


def zone_problem(name: str) -> str | None:
    if not name:
        return None
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return f"unknown time zone {name}"
    return None


def problem(schedule: str) -> str | None:
    """Why `schedule` is not a valid cron schedule, or None."""
    text = schedule.strip()
    if not text:
        return "schedule must not be empty"
    if text.startswith(("TZ=", "CRON_TZ=")):
        return "cannot use TZ or CRON_TZ in schedule, use timeZone field instead"
    if text.startswith("@"):
        if text not in DESCRIPTORS:
            return f"unrecognized descriptor: {text}"
        return None
    fields = text.split()
    if len(fields) != 5:
        return f"expected exactly 5 fields, found {len(fields)}: {text}"
    from croniter import CroniterError, croniter

    if not croniter.is_valid(text):
        try:
            croniter(text)
        except (CroniterError, ValueError, KeyError) as error:
            return str(error) or f"invalid cron expression: {text}"
        return f"invalid cron expression: {text}"
    return None


@dataclass(frozen=True, slots=True)
class Schedule:
    """A parsed schedule in one time zone."""

    expression: str
    zone: str = ""

    @classmethod
    def parse(cls, expression: str, zone: str = "") -> Schedule:
        why = problem(expression) or zone_problem(zone)
        if why is not None:
            raise ScheduleError(why)
        text = expression.strip()
        return cls(expression=DESCRIPTORS.get(text, text), zone=zone)

    def _iterator(self, start: datetime.datetime) -> croniter:
        from croniter import croniter

        return croniter(self.expression, start)

    def _tz(self) -> datetime.tzinfo:
        return zoneinfo.ZoneInfo(self.zone) if self.zone else datetime.UTC

    def next_after(self, seconds: float) -> float:
        """The first scheduled time strictly after `seconds`."""
        start = datetime.datetime.fromtimestamp(seconds, tz=self._tz())
        return float(self._iterator(start).get_next(float))

    def most_recent(self, after: float, until: float) -> tuple[float | None, int]:
        """The latest scheduled time t with after < t <= until (None if there is none), and
        how many such times there are, counted up to `MISSED_COUNT_CAP` (Kubernetes needs to
        know only whether more than 100 were missed)."""
        start = datetime.datetime.fromtimestamp(until, tz=self._tz())
        latest = float(self._iterator(start).get_prev(float))
        following = self.next_after(latest)
        if following <= until:
            latest = following
        if latest <= after:
            return None, 0
        count = 0
        t = self.next_after(after)
        while t <= until and count < MISSED_COUNT_CAP:
            count += 1
            t = self.next_after(t)
        return latest, count


MISSED_COUNT_CAP = 101
