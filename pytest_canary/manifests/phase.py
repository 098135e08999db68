"""Where a release is in its life; every renderer draws the objects of one phase."""

from __future__ import annotations

import enum


class Phase(enum.Enum):
    """The phases of a canary release."""

    CANARY = "canary"  # stable and canary side by side, routing as configured
    PROMOTED = "promoted"  # the new version serves 100%, canary objects deleted
    ROLLED_BACK = "rolled back"  # the old version serves 100%, canary objects deleted
