"""Cron schedules as Kubernetes reads a CronJob's `schedule`: the descriptors @hourly, @daily
(@midnight), @weekly, @monthly and @yearly (@annually) run at the same times as their
five-field forms, in UTC or the CronJob's time zone; what Kubernetes' parser refuses
(@every, upper case, a sixth field, TZ= prefixes) is refused with its words."""

from __future__ import annotations

import datetime
import zoneinfo

import pytest

from pilothouse import cron, manifests
from tests import factories

# Friday 2024-03-15 10:30:00 UTC.
BASE = datetime.datetime(2024, 3, 15, 10, 30, tzinfo=datetime.UTC).timestamp()


def at(when: float, zone: str = "UTC") -> str:
    tz = datetime.UTC if zone == "UTC" else zoneinfo.ZoneInfo(zone)
    return datetime.datetime.fromtimestamp(when, tz=tz).strftime("%a %Y-%m-%d %H:%M")


@pytest.mark.parametrize(
    ("descriptor", "following", "then"),
    [
        ("@hourly", "Fri 2024-03-15 11:00", "Fri 2024-03-15 12:00"),
        ("@daily", "Sat 2024-03-16 00:00", "Sun 2024-03-17 00:00"),
        ("@midnight", "Sat 2024-03-16 00:00", "Sun 2024-03-17 00:00"),
        ("@weekly", "Sun 2024-03-17 00:00", "Sun 2024-03-24 00:00"),
        ("@monthly", "Mon 2024-04-01 00:00", "Wed 2024-05-01 00:00"),
        ("@yearly", "Wed 2025-01-01 00:00", "Thu 2026-01-01 00:00"),
        ("@annually", "Wed 2025-01-01 00:00", "Thu 2026-01-01 00:00"),
    ],
)
def test_descriptors_run_when_kubernetes_runs_them(
    descriptor: str, following: str, then: str
) -> None:
    assert cron.problem(descriptor) is None
    schedule = cron.Schedule.parse(descriptor)
    first = schedule.next_after(BASE)
    assert at(first) == following
    assert at(schedule.next_after(first)) == then
    same = cron.Schedule.parse(cron.DESCRIPTORS[descriptor])
    assert [schedule.next_after(BASE + d * 3600) for d in range(0, 24 * 400, 97)] == [
        same.next_after(BASE + d * 3600) for d in range(0, 24 * 400, 97)
    ], f"{descriptor} differs from {cron.DESCRIPTORS[descriptor]!r}"


def test_a_descriptor_follows_the_time_zone() -> None:
    paris = cron.Schedule.parse("@daily", "Europe/Paris")
    first = paris.next_after(BASE)
    assert at(first, "Europe/Paris") == "Sat 2024-03-16 00:00"
    assert at(first) == "Fri 2024-03-15 23:00", "midnight in Paris is 23:00 UTC in March"
    weekly = cron.Schedule.parse("@weekly", "America/New_York")
    assert at(weekly.next_after(BASE), "America/New_York") == "Sun 2024-03-17 00:00"


def test_missed_runs_of_a_descriptor_are_counted() -> None:
    hourly = cron.Schedule.parse("@hourly")
    latest, missed = hourly.most_recent(BASE - 5 * 3600, BASE)
    assert (at(latest), missed) == ("Fri 2024-03-15 10:00", 5)
    monthly = cron.Schedule.parse("@monthly")
    assert monthly.most_recent(BASE - 10 * 86400, BASE) == (None, 0), "no 1st of the month"


@pytest.mark.parametrize(
    ("schedule", "why"),
    [
        ("@every 1m", "unrecognized descriptor: @every 1m"),
        ("@HOURLY", "unrecognized descriptor: @HOURLY"),
        ("@reboot", "unrecognized descriptor: @reboot"),
        ("0 0 * * * *", "expected exactly 5 fields, found 6: 0 0 * * * *"),
        ("TZ=UTC @daily", "cannot use TZ or CRON_TZ in schedule, use timeZone field instead"),
    ],
)
def test_what_kubernetes_refuses_is_refused(schedule: str, why: str) -> None:
    assert cron.problem(schedule) == why
    with pytest.raises(cron.ScheduleError, match=why.split(":")[0]):
        cron.Schedule.parse(schedule)


def test_a_cronjob_manifest_takes_descriptors_and_names_a_bad_one() -> None:
    good = factories.cron_job(schedule="@weekly")
    manifests.set_defaults(good)
    assert manifests.validate(good) == []
    bad = factories.cron_job(schedule="@every 5m")
    manifests.set_defaults(bad)
    problems = [str(p) for p in manifests.validate(bad)]
    assert len(problems) == 1 and "spec.schedule" in problems[0], problems
    assert "unrecognized descriptor: @every 5m" in problems[0], problems
