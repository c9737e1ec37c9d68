"""How long a message may stay claimed or queued before the sweeper takes it back."""

from __future__ import annotations

import datetime as dt

from django.conf import settings


def sending_lease() -> dt.timedelta:
    """How long a claimed message may stay `sending` before the sweeper assumes its worker died."""
    return dt.timedelta(seconds=settings.DISPATCH_SENDING_LEASE_SECONDS)


def lease_start(lease_until: dt.datetime) -> dt.datetime:
    """When the attempt holding this `sending` lease was claimed: its lease less the lease's length
    (exact while DISPATCH_SENDING_LEASE_SECONDS is unchanged)."""
    return lease_until - sending_lease()


def queued_lease() -> dt.timedelta:
    """A queued message whose task the broker lost is found by the sweeper once this runs out."""
    return dt.timedelta(seconds=settings.DISPATCH_QUEUED_LEASE_SECONDS)
