"""Restart policy with exponential backoff: an exit goes in, a decision and a delay come out.

Role: the only place that decides whether a container that ended runs again, and when.
Nomad's RestartTracker, Kubernetes' semantics:
- `Always` restarts every exit; `OnFailure` restarts non-zero exits and stops on exit 0
  (`Completed`); `Never` never restarts.
- Delays start at `BackoffConfig.initial` and grow by `multiplier` up to `maximum`; a container
  that ran at least `reset_after` seconds is considered healthy and its backoff starts over.
- Every delay carries a jitter of ±`jitter` (a fraction), so a crash-looping fleet does not
  restart in lock-step; a jittered delay never exceeds `maximum`.

Invariants: pure: no clock, no sleeping, no I/O. Time comes in as the exit's `ran_for`; the
random source is injectable, so tests are deterministic and run on virtual time.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass


class RestartPolicy(enum.Enum):
    ALWAYS = "Always"
    ON_FAILURE = "OnFailure"
    NEVER = "Never"

    @classmethod
    def parse(cls, value: str) -> RestartPolicy:
        """The pod spec's restartPolicy; empty means Kubernetes' default, Always."""
        return cls(value) if value else cls.ALWAYS


@dataclass(frozen=True, slots=True)
class BackoffConfig:
    """Seconds throughout. Defaults: 1 s doubling to 60 s, reset after 10 min, ±10 % jitter."""

    initial: float = 1.0
    maximum: float = 60.0
    multiplier: float = 2.0
    reset_after: float = 600.0
    jitter: float = 0.1

    def __post_init__(self) -> None:
        if self.initial < 0 or self.maximum < self.initial:
            raise ValueError(
                f"backoff needs 0 <= initial <= maximum, got initial={self.initial} "
                f"maximum={self.maximum}"
            )
        if self.multiplier < 1:
            raise ValueError(f"backoff multiplier must be >= 1, got {self.multiplier}")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"backoff jitter must be a fraction in [0, 1), got {self.jitter}")


class Backoff:
    """A growing, jittered delay: `next()` for each failure, `reset()` after a success."""

    def __init__(self, config: BackoffConfig, *, rng: random.Random | None = None) -> None:
        self.config = config
        self._rng = rng or random.Random()
        self.failures = 0

    def next(self) -> float:
        c = self.config
        base = min(c.initial * c.multiplier**self.failures, c.maximum)
        self.failures += 1
        jittered = base * (1 + self._rng.uniform(-c.jitter, c.jitter))
        return max(0.0, min(jittered, c.maximum))

    def reset(self) -> None:
        self.failures = 0


class Action(enum.Enum):
    RESTART = "restart"
    STOP = "stop"


class Reason(enum.Enum):
    POLICY_ALWAYS = "restartPolicy Always restarts every exit"
    FAILED_ON_FAILURE = "restartPolicy OnFailure restarts a non-zero exit"
    SUCCEEDED_ON_FAILURE = "restartPolicy OnFailure does not restart a successful exit"
    POLICY_NEVER = "restartPolicy Never does not restart"


@dataclass(frozen=True, slots=True)
class Exit:
    exit_code: int
    ran_for: float  # seconds between start and exit


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    reason: Reason
    delay: float = 0.0  # seconds to wait before the restart (0 for STOP)


class RestartTracker:
    def __init__(
        self,
        policy: RestartPolicy,
        config: BackoffConfig | None = None,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.policy = policy
        self.backoff = Backoff(config or BackoffConfig(), rng=rng)

    def on_exit(self, exit: Exit) -> Decision:
        if self.policy is RestartPolicy.NEVER:
            return Decision(Action.STOP, Reason.POLICY_NEVER)
        if self.policy is RestartPolicy.ON_FAILURE and exit.exit_code == 0:
            return Decision(Action.STOP, Reason.SUCCEEDED_ON_FAILURE)
        if exit.ran_for >= self.backoff.config.reset_after:
            self.backoff.reset()
        reason = (
            Reason.POLICY_ALWAYS
            if self.policy is RestartPolicy.ALWAYS
            else Reason.FAILED_ON_FAILURE
        )
        return Decision(Action.RESTART, reason, self.backoff.next())
