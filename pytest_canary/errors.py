"""The errors pytest-canary raises, one type per kind of failure."""

from __future__ import annotations


class CanaryError(Exception):
    """Base class of every error pytest-canary raises on purpose."""


class CanaryConfigError(CanaryError, ValueError):
    """A release, option or manifest that cannot be used as given.

    The message names the field, the value and what is allowed, e.g.
    ``weight=150: must be an integer from 0 to 100 (percent of traffic to the canary)``.
    """


class BackendError(CanaryError, RuntimeError):
    """A backend could not do what was asked (a process would not start, an API call failed)."""


class ConvergenceTimeout(BackendError):
    """A wait ran out of time.

    The message names the object, the condition, the last status seen, how long it waited
    and the setting that sets the deadline (``setting``, e.g. ``--canary-wait-timeout``).
    """

    def __init__(
        self, what: str, condition: str, last_seen: str, waited: float, setting: str = ""
    ) -> None:
        self.what = what
        self.condition = condition
        self.last_seen = last_seen
        self.waited = waited
        self.setting = setting
        deadline = f" ({setting})" if setting else ""
        super().__init__(
            f"timed out after {waited:.1f}s{deadline} waiting for {what} to be {condition}; "
            f"last seen: {last_seen}"
        )
