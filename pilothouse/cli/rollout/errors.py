"""The errors of the rollout verbs; each message is for the person who ran the verb."""

from __future__ import annotations


class RolloutError(Exception):
    """The verb cannot be done; the message says why (kubectl's wording where it has one)."""


class RolloutFailed(RolloutError):
    """The rollout failed (progress deadline exceeded)."""


class RolloutTimeout(RolloutError):
    """`rollout status --timeout` ran out before the rollout finished."""
