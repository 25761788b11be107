"""Pure date maths for reminders: when a clinic's digest is due, the digest's windows, escalation weeks.

No Django import: these functions take aware datetimes, IANA zone names and dates, and are tested without a
database, across daylight-saving changes (healthchecks ``hc/lib/date.py`` is the model).

Wall-clock rules, decided once here:

* A digest set for a local time that does not exist on a spring-forward day (02:30 in Paris on
  2026-03-29) is due at the first instant whose local time is at or after it: the end of the gap, 03:00.
* A local time that happens twice on a fall-back day (02:30 in Paris on 2026-10-25) is due at its first
  occurrence. It is due "once" because the digest is keyed by the local *date*, not by the instant.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from dateutil.relativedelta import relativedelta

#: The digest lists items due today, in the next this-many days, and overdue.
UPCOMING_DAYS = 7


def _exists(local: datetime) -> bool:
    """True when the wall-clock time ``local`` (aware, zoneinfo) happens in its zone."""
    round_trip = local.astimezone(UTC).astimezone(local.tzinfo)
    return round_trip.replace(tzinfo=None) == local.replace(tzinfo=None)


def local_moment(on: date, at: time, tz_name: str) -> datetime:
    """The first instant (aware, UTC) at which the local clock in ``tz_name`` reads ``at`` or later on ``on``.

    An ambiguous time (fall-back) resolves to its first occurrence; a skipped time (spring-forward) to the
    instant the clock jumps, i.e. the end of the gap.
    """
    zone = ZoneInfo(tz_name)
    wanted = datetime.combine(on, at.replace(tzinfo=None), tzinfo=zone)  # fold=0: the first occurrence
    if _exists(wanted):
        return wanted.astimezone(UTC)
    # In a gap. fold=1 reads the wall time with the offset after the jump, fold=0 with the offset before it;
    # the jump lies between the two instants. Bisect to the second on the first instant past ``wanted``.
    low = wanted.replace(fold=1).astimezone(UTC)
    high = wanted.replace(fold=0).astimezone(UTC)
    if low > high:
        low, high = high, low
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        middle = middle.replace(microsecond=0)
        if middle.astimezone(zone).replace(tzinfo=None) >= wanted.replace(tzinfo=None):
            high = middle
        else:
            low = middle
    return high


def local_date(now: datetime, tz_name: str) -> date:
    """The calendar date on the clinic's wall at the instant ``now`` (aware)."""
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    return now.astimezone(ZoneInfo(tz_name)).date()


def digest_due(now: datetime, tz_name: str, digest_time: time) -> date | None:
    """The local date whose digest is due at ``now``, or None while the local digest time has not come yet.

    After the digest moment it keeps returning the same date until local midnight: a late sweep (the
    server was down at 07:00) still sends today's digest, and the per-date idempotency key sends it once.
    """
    today = local_date(now, tz_name)
    if now >= local_moment(today, digest_time, tz_name):
        return today
    return None


@dataclass(frozen=True)
class DigestWindow:
    """What a digest for ``today`` covers: overdue (before today), due today, and the days up to ``week_end``."""

    today: date
    week_end: date

    def section(self, due_on: date) -> str | None:
        """``overdue``, ``today``, ``week`` or None (beyond the window)."""
        if due_on < self.today:
            return "overdue"
        if due_on == self.today:
            return "today"
        if due_on <= self.week_end:
            return "week"
        return None


def digest_window(today: date, days: int = UPCOMING_DAYS) -> DigestWindow:
    return DigestWindow(today=today, week_end=today + relativedelta(days=days))


def escalation_week(due_on: date, today: date, after_days: int) -> int:
    """Which escalation week an open item due on ``due_on`` is in on ``today``; 0 before it escalates.

    An item escalates once it is overdue by *more than* ``after_days`` days (day ``after_days + 1`` is
    week 1), and once again every 7 days after that: weeks are counted from the escalation threshold, so
    the e-mails come exactly a week apart whatever the threshold.
    """
    overdue_days = (today - due_on).days
    if overdue_days <= after_days:
        return 0
    return (overdue_days - after_days - 1) // 7 + 1


def escalation_cutoff(today: date, after_days: int) -> date:
    """Items due strictly before this date are overdue by more than ``after_days`` on ``today``."""
    return today - relativedelta(days=after_days)


def retry_delay(attempts: int, *, base_seconds: float, max_seconds: float) -> timedelta:
    """Exponential backoff after the ``attempts``-th failed attempt: base, 2×base, 4×base…, capped."""
    exponent = max(attempts - 1, 0)
    seconds = base_seconds * (2 ** min(exponent, 32))
    return timedelta(seconds=min(seconds, max_seconds))
