"""RestartTracker: restart policies and exponential backoff, on virtual time (no sleeping)."""

from __future__ import annotations

import random

import pytest

from nodeagent.pods.restart import (
    Action,
    Backoff,
    BackoffConfig,
    Exit,
    Reason,
    RestartPolicy,
    RestartTracker,
)

NO_JITTER = BackoffConfig(jitter=0.0)


def test_always_restarts_with_doubling_delays_capped_at_sixty_seconds() -> None:
    tracker = RestartTracker(RestartPolicy.ALWAYS, NO_JITTER)
    delays = [tracker.on_exit(Exit(exit_code=1, ran_for=0.1)).delay for _ in range(9)]
    assert delays == [1, 2, 4, 8, 16, 32, 60, 60, 60], (
        f"a crash-looping container would be restarted after {delays} s instead of 1, 2, 4 … 60"
    )


def test_always_restarts_a_successful_exit_too() -> None:
    decision = RestartTracker(RestartPolicy.ALWAYS, NO_JITTER).on_exit(Exit(0, 1.0))
    assert decision.action is Action.RESTART
    assert decision.reason is Reason.POLICY_ALWAYS


def test_on_failure_restarts_errors_and_stops_on_success() -> None:
    tracker = RestartTracker(RestartPolicy.ON_FAILURE, NO_JITTER)
    failed = tracker.on_exit(Exit(2, 0.5))
    assert failed.action is Action.RESTART and failed.delay == 1
    done = tracker.on_exit(Exit(0, 0.5))
    assert done.action is Action.STOP, "an OnFailure container that exited 0 would run again"
    assert done.reason is Reason.SUCCEEDED_ON_FAILURE
    assert done.delay == 0


def test_never_never_restarts() -> None:
    tracker = RestartTracker(RestartPolicy.NEVER, NO_JITTER)
    for code in (0, 1, 137):
        decision = tracker.on_exit(Exit(code, 3.0))
        assert decision.action is Action.STOP, f"restartPolicy Never restarted exit {code}"
        assert decision.reason is Reason.POLICY_NEVER


def test_backoff_resets_after_a_long_enough_run() -> None:
    tracker = RestartTracker(RestartPolicy.ALWAYS, NO_JITTER)
    for _ in range(5):
        tracker.on_exit(Exit(1, 1.0))
    healthy = tracker.on_exit(Exit(1, 600.0))
    assert healthy.delay == 1, (
        f"a container that ran 10 minutes waited {healthy.delay} s to restart instead of 1 s"
    )
    assert tracker.on_exit(Exit(1, 1.0)).delay == 2


def test_jitter_stays_within_its_fraction_and_under_the_maximum() -> None:
    config = BackoffConfig(initial=1.0, maximum=8.0, jitter=0.1)
    backoff = Backoff(config, rng=random.Random(7))
    seen = [backoff.next() for _ in range(40)]
    nominal = [min(2.0**i, 8.0) for i in range(40)]
    for got, want in zip(seen, nominal, strict=True):
        assert want * 0.9 <= got <= min(want * 1.1, 8.0), f"delay {got} for nominal {want}"
    assert len({round(s, 6) for s in seen[5:]}) > 1, "jitter produced identical delays"


def test_configurable_short_backoff() -> None:
    config = BackoffConfig(initial=0.01, maximum=0.04, multiplier=2, reset_after=1, jitter=0)
    tracker = RestartTracker(RestartPolicy.ALWAYS, config)
    delays = [tracker.on_exit(Exit(1, 0.0)).delay for _ in range(4)]
    assert delays == [0.01, 0.02, 0.04, 0.04]


@pytest.mark.parametrize(
    "kwargs",
    [{"initial": -1}, {"initial": 5, "maximum": 1}, {"multiplier": 0.5}, {"jitter": 1.5}],
)
def test_invalid_backoff_config_is_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        BackoffConfig(**kwargs)


def test_policy_parse_defaults_to_always() -> None:
    assert RestartPolicy.parse("") is RestartPolicy.ALWAYS
    assert RestartPolicy.parse("OnFailure") is RestartPolicy.ON_FAILURE
