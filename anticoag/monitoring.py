"""INR and DOAC monitoring maths: Rosendaal TTR, warfarin phase, next INR test, dose suggestion, renal checks.

The executable form of ``clinical-reference.md`` §4 ("INR (warfarin) testing interval", the maintenance dose
table, "DOAC monitoring") and §6 (TTR). Pure Python, no Django import (a test proves it), so the API, the
admin, ``manage.py inr_advice`` and the tests all run the same code, with or without a database.

Every tunable number lives in :class:`MonitoringPolicy`, whose defaults are the reference. Rows the reference
marks **[verify]** (the VA practice interval rows, the INR 5.0-9.0 row, the dose nomogram, the EHRA renal
intervals) carry ``verified=False`` and say so in every output item that uses them; a clinic replaces the
policy (``dataclasses.replace(DEFAULT_POLICY, ...)``) once it has checked or changed them.

Conventions, stated once:

* **Time.** A reading's instant is its timezone-aware datetime, or midnight UTC for a plain date. Interval
  lengths are exact fractions of a day. "The date" of a reading is its calendar date in its own timezone
  (the date itself for a plain date), so callers pass clinic-local aware datetimes.
* **Same instant.** Readings at the same instant are one reading whose INR is the mean of theirs: the result
  does not depend on input order, and a zero-length interval would contribute nothing to TTR anyway.
* **Rounding.** INRs are reported to one decimal; every *table lookup* (in range, interval rows, nomogram
  bands, critical alerts) uses the INR rounded half-up to one decimal, so 3.04 is "3.0" and 3.05 is "3.1".
  TTR uses the raw values (it interpolates anyway).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from itertools import pairwise
from typing import Any, Literal

from dateutil.relativedelta import relativedelta

Phase = Literal["initiation", "maintenance", "stable"]
Severity = Literal["urgent", "warning", "info"]
HoldUntil = Literal["inr_in_range", "clinician_review"]

#: INR values outside this closed range are refused at input (issue #4): a typo, not a patient.
INR_PLAUSIBLE_MIN = 0.5
INR_PLAUSIBLE_MAX = 20.0

#: Reference §6: "Clinic quality indicators: median TTR ≥ 65 %".
TTR_QUALITY_TARGET_PERCENT = 65.0

_ONE_DAY = timedelta(days=1)
_TENTH = Decimal("0.1")


# --------------------------------------------------------------------------------------------------------------
# Tables (reference §4 and §6), gathered in one replaceable policy
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IntervalRow:
    """One row of reference §4 "INR (warfarin) testing interval": when to test next.

    ``earliest_days``/``latest_days`` count from the latest reading's date. A row that gives one number
    ("within 7 days", "next day", "12 weeks") has both equal; a row with a range ("1-3 days") has both ends.
    """

    code: str
    situation: str
    earliest_days: int
    latest_days: int
    source: str
    verified: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "situation": self.situation, "source": self.source, "verified": self.verified}


@dataclass(frozen=True)
class NomogramBand:
    """One row of reference §4 "Maintenance dose suggestion" (target 2.0-3.0).

    ``from_inr`` is the inclusive lower bound on the INR rounded to one decimal (``None``: no lower bound);
    a band ends where the next one starts. ``hold_doses`` is the number of doses to hold first (0 none);
    ``hold_until_in_range`` means "hold until the INR is back in 2-3" (an open-ended hold).
    """

    label: str
    from_inr: float | None
    weekly_change_percent: float
    hold_doses: int = 0
    hold_until_in_range: bool = False


#: Reference §4, INR testing interval table, row by row (the order here is the reference's, bottom-up; the
#: order in which :func:`inr_advice` applies them is documented there).
CRITICAL_ROW = IntervalRow(
    "inr_critical_or_bleeding",
    "INR > 9.0, or any bleeding: urgent alert now; vitamin K per protocol; retest next day",
    1,
    1,
    # Reference rev 2 corrected the citation: the "> 9" threshold is CHEST2008's; CHEST2012 (2C) is about
    # oral vitamin K above 10 without bleeding.
    "CHEST2008 (> 9); CHEST2012 (> 10 without bleeding: oral vitamin K, 2C)",
)
HIGH_ROW = IntervalRow(
    "inr_5_to_9_no_bleeding",
    "INR 5.0-9.0 without bleeding: hold; retest in 1-3 days; same-day alert to clinician",
    1,
    3,
    "CHEST2012; VA practice",
    verified=False,
)
STABLE_SMALL_EXCURSION_ROW = IntervalRow(
    "stable_single_small_excursion",
    "single INR out of range by ≤ 0.5 in a stable patient: no dose change; retest in 7-14 days",
    7,
    14,
    "CHEST2012 (2C)",
)
WITHIN_7_DAYS_ROW = IntervalRow(
    "within_7_days",
    "INR < 1.5, or 3.6-4.9, or after any dose change: within 7 days",
    7,
    7,
    "VA practice (Witt 2016)",
    verified=False,
)
INITIATION_ROW = IntervalRow(
    "initiation",
    "initiation, until 2 consecutive INRs in range: every 2-3 days",
    2,
    3,
    "CHEST2012 practice",
)
STABLE_EXTENDED_ROW = IntervalRow(
    "stable_extended",
    "stable ≥ 3 months, every INR in range: up to 12 weeks (opt-in per clinic)",
    84,
    84,
    "CHEST2012 (2B)",
)
#: Not a reference row: the reference is silent on an out-of-range INR that no row covers, which can only
#: happen with a target other than 2.0-3.0 (no nomogram, so no "dose change suggested"). We fall back to
#: the shortest routine interval of the table and mark it unverified so a clinician looks at it.
OUT_OF_RANGE_FALLBACK_ROW = IntervalRow(
    "out_of_range_not_in_table",
    "INR out of its target range and no row of the table applies (target other than 2.0-3.0): 7 days",
    7,
    7,
    "CLINIC",
    verified=False,
)

#: Reference §4, "in range, first results after initiation: 7 days, then 14, then 28 days".
IN_RANGE_LADDER_DAYS: tuple[int, ...] = (7, 14, 28)
IN_RANGE_LADDER_SOURCE = 'Coumadin label "1 to 4 weeks"'

#: Reference §4, maintenance dose table, top to bottom. Primary source [verify]; clinic-configurable.
NOMOGRAM: tuple[NomogramBand, ...] = (
    NomogramBand("< 1.5", None, +15),
    NomogramBand("1.5-1.9", 1.5, +10),
    NomogramBand("2.0-3.0", 2.0, 0),
    NomogramBand("3.1-3.9", 3.1, -10),
    NomogramBand("4.0-4.9", 4.0, -10, hold_doses=1),
    NomogramBand("≥ 5.0", 5.0, -15, hold_until_in_range=True),
)
NOMOGRAM_SOURCE = "maintenance dose nomogram (reference §4; widely reproduced, primary source [verify])"


@dataclass(frozen=True)
class MonitoringPolicy:
    """Every tunable table and threshold of this module; the defaults are ``clinical-reference.md``.

    Replace what a clinic has decided differently (``dataclasses.replace(DEFAULT_POLICY, ...)``); a row the
    clinic has checked word for word can be replaced by the same row with ``verified=True``.

    * TTR (§6): ``ttr_max_gap_days`` (an interval longer than this is not interpolated), ``ttr_inclusive``.
    * Phases (§4): ``stable_min_months`` calendar months and ``stable_min_readings`` readings, all in range.
    * INR interval table (§4): the ``*_row`` fields, the in-range ladder, and the INR thresholds the rows name
      (``critical_inr_above`` "> 9.0", ``high_inr_from`` "5.0-9.0", ``low_inr_below`` "< 1.5",
      ``moderately_high_inr_from``/``_to`` "3.6-4.9", ``stable_excursion_max`` "by ≤ 0.5").
    * Dose table (§4): ``nomogram`` for ``nomogram_target`` only [verify].
    * DOAC monitoring (§4, EHRA [verify]): every 12 months from CrCl 60, every 6 months above CrCl 30 or from
      age 75, every 3 months at CrCl ≤ 30 (rev 2); no DOAC eligible at CrCl ≤ 30.
    """

    # §6 TTR
    ttr_max_gap_days: float = 56
    ttr_inclusive: bool = True
    # §4 phases
    stable_min_months: int = 3
    stable_min_readings: int = 3
    # §4 INR testing interval
    critical_inr_above: float = 9.0
    high_inr_from: float = 5.0
    low_inr_below: float = 1.5
    moderately_high_inr_from: float = 3.6
    moderately_high_inr_to: float = 4.9
    stable_excursion_max: float = 0.5
    critical_row: IntervalRow = CRITICAL_ROW
    high_row: IntervalRow = HIGH_ROW
    stable_small_excursion_row: IntervalRow = STABLE_SMALL_EXCURSION_ROW
    within_7_days_row: IntervalRow = WITHIN_7_DAYS_ROW
    initiation_row: IntervalRow = INITIATION_ROW
    in_range_ladder_days: tuple[int, ...] = IN_RANGE_LADDER_DAYS
    in_range_ladder_source: str = IN_RANGE_LADDER_SOURCE
    in_range_ladder_verified: bool = True
    stable_extended_row: IntervalRow = STABLE_EXTENDED_ROW
    out_of_range_fallback_row: IntervalRow = OUT_OF_RANGE_FALLBACK_ROW
    # §4 maintenance dose table
    nomogram: tuple[NomogramBand, ...] = NOMOGRAM
    nomogram_target: tuple[float, float] = (2.0, 3.0)
    nomogram_source: str = NOMOGRAM_SOURCE
    nomogram_verified: bool = False
    # §4 DOAC monitoring
    doac_crcl_yearly_from: float = 60.0
    doac_crcl_six_monthly_from: float = 30.0
    doac_age_six_monthly_from: int = 75
    doac_months_yearly: int = 12
    doac_months_six_monthly: int = 6
    doac_months_three_monthly: int = 3
    doac_dabigatran_crcl_max: float = 30.0
    doac_source: str = "EHRA"
    doac_verified: bool = False

    def __post_init__(self) -> None:
        # A policy assembled from settings must fail loudly at load time, not mid-advice.
        if self.ttr_max_gap_days <= 0:
            raise ValueError("ttr_max_gap_days must be positive")
        if self.stable_min_months < 0 or self.stable_min_readings < 1:
            raise ValueError("stable_min_months must be ≥ 0 and stable_min_readings ≥ 1")
        if not self.in_range_ladder_days or any(d <= 0 for d in self.in_range_ladder_days):
            raise ValueError("in_range_ladder_days must be a non-empty tuple of positive day counts")
        for row in (
            self.critical_row,
            self.high_row,
            self.stable_small_excursion_row,
            self.within_7_days_row,
            self.initiation_row,
            self.stable_extended_row,
            self.out_of_range_fallback_row,
        ):
            if not 0 < row.earliest_days <= row.latest_days:
                raise ValueError(f"interval row {row.code}: need 0 < earliest_days ≤ latest_days")
        if not self.nomogram or self.nomogram[0].from_inr is not None:
            raise ValueError("nomogram: the first band must have no lower bound (from_inr=None)")
        bounds = [band.from_inr for band in self.nomogram[1:]]
        if any(b is None for b in bounds) or bounds != sorted(b for b in bounds if b is not None):
            raise ValueError("nomogram: bands must be in ascending order of from_inr")
        if self.nomogram_target[0] >= self.nomogram_target[1]:
            raise ValueError("nomogram_target: low must be below high")
        if not self.doac_crcl_six_monthly_from < self.doac_crcl_yearly_from:
            raise ValueError("doac_crcl_six_monthly_from must be below doac_crcl_yearly_from")


DEFAULT_POLICY = MonitoringPolicy()


# --------------------------------------------------------------------------------------------------------------
# Readings and time
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InrPoint:
    """One INR reading: when it was drawn (an aware datetime, or a date meaning midnight UTC) and the value."""

    drawn_at: date | datetime
    inr: float

    def __post_init__(self) -> None:
        if isinstance(self.drawn_at, datetime):
            if self.drawn_at.tzinfo is None or self.drawn_at.utcoffset() is None:
                raise ValueError("drawn_at must be timezone-aware when it is a datetime")
        elif not isinstance(self.drawn_at, date):
            raise TypeError(f"drawn_at must be a date or an aware datetime, not {type(self.drawn_at).__name__}")
        if isinstance(self.inr, bool) or not isinstance(self.inr, int | float):
            raise TypeError(f"inr must be a number, not {type(self.inr).__name__}")
        if not math.isfinite(self.inr) or self.inr <= 0:
            raise ValueError(f"inr must be a positive finite number, not {self.inr!r}")
        object.__setattr__(self, "inr", float(self.inr))

    @property
    def instant(self) -> datetime:
        return _instant(self.drawn_at)

    @property
    def drawn_on(self) -> date:
        return _calendar_date(self.drawn_at)


def _instant(moment: date | datetime) -> datetime:
    """An aware UTC datetime; a plain date is midnight UTC (documented convention)."""
    if isinstance(moment, datetime):
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise ValueError("datetimes must be timezone-aware")
        return moment.astimezone(UTC)
    return datetime.combine(moment, time.min, tzinfo=UTC)


def _calendar_date(moment: date | datetime) -> date:
    """The calendar date in the moment's own timezone (what the nurse wrote down)."""
    return moment.date() if isinstance(moment, datetime) else moment


def _usable_readings(points: Iterable[InrPoint]) -> list[InrPoint]:
    """Sorted by instant; readings at the same instant merged into one with the mean INR (order-independent)."""
    by_instant: dict[datetime, list[InrPoint]] = {}
    for point in points:
        if not isinstance(point, InrPoint):
            raise TypeError(f"expected InrPoint, got {type(point).__name__}")
        by_instant.setdefault(point.instant, []).append(point)
    merged: list[InrPoint] = []
    for instant in sorted(by_instant):
        group = by_instant[instant]
        if len(group) == 1:
            merged.append(group[0])
        else:
            # Any fixed choice of label among equal instants keeps the result independent of input order.
            label = min((p.drawn_at for p in group), key=lambda m: (isinstance(m, datetime), str(m)))
            merged.append(InrPoint(label, statistics.fmean(p.inr for p in group)))
    return merged


def _d1(value: float) -> Decimal:
    """The value rounded half-up to one decimal, exactly (``repr`` avoids binary-float surprises: 3.05 → 3.1)."""
    return Decimal(repr(float(value))).quantize(_TENTH, rounding=ROUND_HALF_UP)


def _dec(value: float) -> Decimal:
    return Decimal(repr(float(value)))


def _in_range(inr: float, low: float, high: float) -> bool:
    """Reference §4 "in range": the reported (one-decimal) INR within the target, bounds inclusive."""
    return _dec(low) <= _d1(inr) <= _dec(high)


# --------------------------------------------------------------------------------------------------------------
# §6 Time in therapeutic range (Rosendaal)
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TtrResult:
    """Rosendaal TTR: ``ttr_percent`` is ``None`` when no interval could be interpolated (< 2 usable readings,
    or every interval longer than the gap limit)."""

    ttr_percent: float | None
    days_in_range: float
    days_total: float
    intervals_used: int
    intervals_skipped: int


def _days_in_range(v0: float, v1: float, days: float, low: float, high: float, inclusive: bool) -> float:
    """Days of one interval during which the linearly interpolated INR lies in [low, high].

    For a changing INR the bounds are single instants (measure zero), so inclusive and exclusive agree; they
    differ only for a constant INR sitting exactly on a bound.
    """
    if v0 == v1:
        inside = low <= v0 <= high if inclusive else low < v0 < high
        return days if inside else 0.0
    # Fractions s ∈ [0, 1] of the interval where v0 + (v1 - v0)·s crosses each bound.
    s_low = (low - v0) / (v1 - v0)
    s_high = (high - v0) / (v1 - v0)
    start = max(0.0, min(s_low, s_high))
    end = min(1.0, max(s_low, s_high))
    return max(0.0, end - start) * days


def rosendaal_ttr(
    points: Iterable[InrPoint],
    low: float,
    high: float,
    *,
    max_gap_days: float = 56,
    inclusive: bool = True,
) -> TtrResult:
    """Time in therapeutic range by the Rosendaal method (ROSENDAAL1993; reference §6).

    The INR is assumed to change linearly between consecutive readings, on continuous time (exact fractions
    of a day, never whole days). An interval longer than ``max_gap_days`` is not interpolated and counts in
    neither numerator nor denominator (exactly ``max_gap_days`` is still used). Input order does not matter;
    readings at the same instant are merged (mean INR), so they add no zero-length interval. With fewer than
    two usable readings, or no usable interval, ``ttr_percent`` is ``None``.

    Worked example (target 2.0-3.0): day 0 INR 1.5, day 10 2.5, day 20 3.5, day 30 2.8 → 300/7 = 42.857 %.
    """
    if low >= high:
        raise ValueError("low must be below high")
    if max_gap_days <= 0:
        raise ValueError("max_gap_days must be positive")
    readings = _usable_readings(points)
    in_range = total = 0.0
    used = skipped = 0
    for before, after in pairwise(readings):
        days = (after.instant - before.instant) / _ONE_DAY
        if days > max_gap_days:
            skipped += 1
            continue
        used += 1
        total += days
        in_range += _days_in_range(before.inr, after.inr, days, low, high, inclusive)
    percent = 100.0 * in_range / total if total > 0 else None
    return TtrResult(percent, in_range, total, used, skipped)


def clinic_ttr_summary(ttrs: Iterable[float | None]) -> dict[str, Any]:
    """Clinic quality indicator of reference §6 ("median TTR ≥ 65 %") over per-patient TTRs.

    ``None`` entries (patients without a computable TTR) are left out of the median and the share, and
    counted in ``patients_without_ttr``. ``share_at_or_above_65_percent`` is a *percentage* (0-100, one
    decimal) of patients with a TTR whose TTR is ≥ 65 %. ``median_meets_target`` says whether the median
    reaches 65 %. With no TTR at all, median, share and ``median_meets_target`` are ``None``.
    """
    values: list[float] = []
    without = 0
    for ttr in ttrs:
        if ttr is None:
            without += 1
        else:
            values.append(float(ttr))
    if not values:
        return {
            "median_ttr_percent": None,
            "patients_with_ttr": 0,
            "patients_without_ttr": without,
            "share_at_or_above_65_percent": None,
            "median_meets_target": None,
        }
    median = statistics.median(values)
    at_or_above = sum(1 for v in values if v >= TTR_QUALITY_TARGET_PERCENT)
    return {
        "median_ttr_percent": round(median, 3),
        "patients_with_ttr": len(values),
        "patients_without_ttr": without,
        "share_at_or_above_65_percent": round(100.0 * at_or_above / len(values), 1),
        "median_meets_target": median >= TTR_QUALITY_TARGET_PERCENT,
    }


def is_lost_to_follow_up(last_inr_at: date | datetime | None, as_of: date | datetime, max_gap_days: float = 56) -> bool:
    """Reference §6: a warfarin patient with no INR for more than ``max_gap_days`` days is lost to follow-up.

    Exactly 56 days is not yet lost. No INR at all (``None``) counts as lost: there is no follow-up to show.
    Dates count as midnight UTC, like readings.
    """
    if last_inr_at is None:
        return True
    return (_instant(as_of) - _instant(last_inr_at)) / _ONE_DAY > max_gap_days


# --------------------------------------------------------------------------------------------------------------
# §4 Phases
# --------------------------------------------------------------------------------------------------------------


def _trailing_in_range(readings: Sequence[InrPoint], low: float, high: float) -> list[InrPoint]:
    run: list[InrPoint] = []
    for point in reversed(readings):
        if not _in_range(point.inr, low, high):
            break
        run.append(point)
    run.reverse()
    return run


def _classify_usable(readings: Sequence[InrPoint], low: float, high: float, policy: MonitoringPolicy) -> Phase:
    left_initiation = any(_in_range(a.inr, low, high) and _in_range(b.inr, low, high) for a, b in pairwise(readings))
    if not left_initiation:
        return "initiation"
    run = _trailing_in_range(readings, low, high)
    if (
        len(run) >= policy.stable_min_readings
        and run[0].drawn_on + relativedelta(months=policy.stable_min_months) <= run[-1].drawn_on
    ):
        return "stable"
    return "maintenance"


def classify_phase(
    points: Iterable[InrPoint], low: float, high: float, *, policy: MonitoringPolicy = DEFAULT_POLICY
) -> Phase:
    """The warfarin phase of reference §4.

    * ``initiation`` until two consecutive readings are in range (no readings: initiation). Once left, the
      series never returns to initiation: a restarted course is a new series, passed by the caller.
    * ``stable`` once the in-range readings at the end of the series are at least ``stable_min_readings``
      (3) and span at least ``stable_min_months`` (3) calendar months, from the first of them to the latest
      reading: every INR of at least the last 3 months in range. (We measure from the first in-range
      reading, not from "latest - 3 months", because before it the patient was last seen out of range.)
    * otherwise ``maintenance``.

    "In range" is the INR rounded to one decimal within [low, high], bounds inclusive.
    """
    return _classify_usable(_usable_readings(points), low, high, policy)


# --------------------------------------------------------------------------------------------------------------
# Alerts
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Alert:
    """One alert for the clinician. ``severity`` is ``urgent`` (now, not in a digest), ``warning`` or ``info``."""

    code: str
    severity: Severity
    message: str
    source: str
    verified: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "severity": self.severity,
            "message": self.message,
            "source": self.source,
            "verified": self.verified,
        }


def _fmt(value: float | Decimal) -> str:
    return f"{float(value):.1f}"


def _critical_alert(inr: float, bleeding: bool, policy: MonitoringPolicy) -> Alert | None:
    reported = _d1(inr)
    if bleeding or reported > _dec(policy.critical_inr_above):
        why = "with bleeding" if bleeding else f"above {_fmt(policy.critical_inr_above)}"
        return Alert(
            "inr_critical",
            "urgent",
            f"INR {_fmt(reported)} {why}: alert the clinician now; hold warfarin; vitamin K per protocol; "
            "retest next day.",
            policy.critical_row.source,
            policy.critical_row.verified,
        )
    if reported >= _dec(policy.high_inr_from):
        return Alert(
            "inr_high",
            "urgent",
            f"INR {_fmt(reported)} ({_fmt(policy.high_inr_from)}-{_fmt(policy.critical_inr_above)}, no bleeding "
            "noted): alert the clinician today; hold warfarin until the INR is back in range; retest in "
            f"{policy.high_row.earliest_days}-{policy.high_row.latest_days} days.",
            policy.high_row.source,
            policy.high_row.verified,
        )
    return None


def critical_inr_alert(
    inr: float, *, bleeding: bool = False, policy: MonitoringPolicy = DEFAULT_POLICY
) -> dict[str, Any] | None:
    """The immediate alert for one reading (reference §4, last two interval rows; issue #4 "critical INR").

    ``inr_critical`` when bleeding is noted or the INR (one decimal) is above 9.0 — CHEST2008 (> 9);
    ``inr_high`` when it is 5.0-9.0 without bleeding — CHEST2012; VA practice, ``verified: false``.
    Both are ``severity: "urgent"``. Otherwise ``None``.
    """
    alert = _critical_alert(inr, bleeding, policy)
    return alert.as_dict() if alert else None


# --------------------------------------------------------------------------------------------------------------
# §4 Next INR test and dose suggestion
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DoseSuggestion:
    """What to do with the weekly warfarin dose, and which table row said so."""

    change_percent: float | None
    hold_doses: int | None
    hold_until: HoldUntil | None
    rule: dict[str, Any] | None


@dataclass(frozen=True)
class InrAdvice:
    """The result of :func:`inr_advice`; :meth:`as_dict` is the JSON shape of the API and the command."""

    ttr: TtrResult
    phase: Phase
    next_test_on: date
    next_test_latest_on: date
    next_test_rule: IntervalRow
    dose_change_percent: float | None
    hold_doses: int | None
    hold_until: HoldUntil | None
    suggested_weekly_dose_mg: float | None
    dose_rule: dict[str, Any] | None
    alerts: tuple[Alert, ...]
    sources: tuple[str, ...]
    ttr_method: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready. TTR to 3 decimals (percent), days to 3 decimals, dose to 0.1 mg; dates ISO 8601.

        Keys required by issue #4: ``ttr_percent``, ``days_in_range``, ``days_total``, ``phase``,
        ``next_test_on``, ``next_test_latest_on``, ``dose_change_percent``, ``hold_doses``,
        ``suggested_weekly_dose_mg``, ``alerts``, ``sources``. Documented extras: ``hold_until``
        (``"inr_in_range"``, ``"clinician_review"`` or null), ``next_test_rule`` and ``dose_rule`` (the table
        row used, with ``source`` and ``verified``), ``ttr_method`` (the TTR settings, stated in reports).
        """
        return {
            "ttr_percent": None if self.ttr.ttr_percent is None else round(self.ttr.ttr_percent, 3),
            "days_in_range": round(self.ttr.days_in_range, 3),
            "days_total": round(self.ttr.days_total, 3),
            "phase": self.phase,
            "next_test_on": self.next_test_on.isoformat(),
            "next_test_latest_on": self.next_test_latest_on.isoformat(),
            "next_test_rule": self.next_test_rule.as_dict(),
            "dose_change_percent": self.dose_change_percent,
            "hold_doses": self.hold_doses,
            "hold_until": self.hold_until,
            "suggested_weekly_dose_mg": self.suggested_weekly_dose_mg,
            "dose_rule": self.dose_rule,
            "alerts": [alert.as_dict() for alert in self.alerts],
            "sources": list(self.sources),
            "ttr_method": dict(self.ttr_method),
        }


def _nomogram_band(inr: float, policy: MonitoringPolicy) -> NomogramBand:
    reported = _d1(inr)
    chosen = policy.nomogram[0]
    for band in policy.nomogram[1:]:
        if band.from_inr is not None and reported >= _dec(band.from_inr):
            chosen = band
    return chosen


def _out_of_range_by(inr: float, low: float, high: float) -> Decimal:
    reported = _d1(inr)
    if reported < _dec(low):
        return _dec(low) - reported
    if reported > _dec(high):
        return reported - _dec(high)
    return Decimal(0)


def _dose_changed_since_previous(dose_changed_at: date | datetime | None, readings: Sequence[InrPoint]) -> bool:
    """Reference §4 "after any dose change": the dose changed after the reading before the latest one.

    A plain date counts as "after" from the previous reading's calendar date on (doses are adjusted on the
    day of the INR that prompted it); an aware datetime must be strictly after the previous reading's instant.
    With a single reading, any recorded dose change counts.
    """
    if dose_changed_at is None:
        return False
    if len(readings) < 2:
        return True
    previous = readings[-2]
    if isinstance(dose_changed_at, datetime):
        return _instant(dose_changed_at) > previous.instant
    return dose_changed_at >= previous.drawn_on


def _suggest_dose(
    readings: Sequence[InrPoint],
    *,
    low: float,
    high: float,
    phase: Phase,
    bleeding: bool,
    stable_override: bool,
    policy: MonitoringPolicy,
) -> tuple[DoseSuggestion, list[Alert]]:
    latest = readings[-1].inr
    reported = _d1(latest)
    critical = bleeding or reported > _dec(policy.critical_inr_above)
    high_row = not critical and reported >= _dec(policy.high_inr_from)
    # The interval table itself says "hold" for INR ≥ 5.0 and for bleeding, in every phase.
    hold_until: HoldUntil | None = (
        "clinician_review" if bleeding else ("inr_in_range" if critical or high_row else None)
    )

    if bleeding:
        # The nomogram is for maintenance without bleeding; with bleeding the clinician decides (vitamin K
        # per protocol), so we suggest no number rather than "no change".
        return DoseSuggestion(None, None, hold_until, None), []
    if stable_override:
        row = policy.stable_small_excursion_row
        return DoseSuggestion(0, 0, None, row.as_dict()), []
    if phase == "initiation":
        note = Alert(
            "nomogram_initiation",
            "info",
            "No maintenance dose suggestion during initiation: the maintenance nomogram applies after two "
            "consecutive INRs in range; dose per the initiation protocol.",
            policy.nomogram_source,
            policy.nomogram_verified,
        )
        return DoseSuggestion(None, None, hold_until, None), [note]
    if (_dec(low), _dec(high)) != (_dec(policy.nomogram_target[0]), _dec(policy.nomogram_target[1])):
        target = f"{_fmt(policy.nomogram_target[0])}-{_fmt(policy.nomogram_target[1])}"
        note = Alert(
            "nomogram_not_applicable",
            "info",
            f"The maintenance dose nomogram is defined for target {target} only; this patient's target is "
            f"{_fmt(low)}-{_fmt(high)}: no dose suggestion.",
            policy.nomogram_source,
            policy.nomogram_verified,
        )
        return DoseSuggestion(None, None, hold_until, None), [note]
    band = _nomogram_band(latest, policy)
    rule = {
        "code": "nomogram",
        "band": band.label,
        "weekly_change_percent": band.weekly_change_percent,
        "source": policy.nomogram_source,
        "verified": policy.nomogram_verified,
    }
    if band.hold_until_in_range or hold_until is not None:
        return DoseSuggestion(band.weekly_change_percent, None, hold_until or "inr_in_range", rule), []
    return DoseSuggestion(band.weekly_change_percent, band.hold_doses, None, rule), []


def _ladder_row(run_length: int, policy: MonitoringPolicy) -> IntervalRow:
    ladder = policy.in_range_ladder_days
    # Two consecutive in range (the end of initiation) → first step; one more in range → next step. A single
    # in-range result after an out-of-range one restarts the ladder at its first step.
    days = ladder[min(max(run_length - 2, 0), len(ladder) - 1)]
    steps = ", then ".join(str(d) for d in ladder)
    return IntervalRow(
        "in_range_after_initiation",
        f"in range, first results after initiation: {steps} days ({run_length} consecutive in range)",
        days,
        days,
        policy.in_range_ladder_source,
        policy.in_range_ladder_verified,
    )


def _next_test_row(
    readings: Sequence[InrPoint],
    *,
    low: float,
    high: float,
    phase: Phase,
    bleeding: bool,
    stable_override: bool,
    dose_change_percent: float | None,
    dose_changed_at: date | datetime | None,
    extended_interval_allowed: bool,
    policy: MonitoringPolicy,
) -> IntervalRow:
    reported = _d1(readings[-1].inr)
    if bleeding or reported > _dec(policy.critical_inr_above):
        return policy.critical_row
    if reported >= _dec(policy.high_inr_from):
        return policy.high_row
    if stable_override:
        return policy.stable_small_excursion_row
    # Initiation is checked before "within 7 days": that row is a ceiling, and the initiation row's 2-3 days
    # already meets it; otherwise a low INR early in initiation (the usual case) would stretch testing to 7.
    if phase == "initiation":
        return policy.initiation_row
    if (
        reported < _dec(policy.low_inr_below)
        or _dec(policy.moderately_high_inr_from) <= reported <= _dec(policy.moderately_high_inr_to)
        or (dose_change_percent not in (None, 0))
        or _dose_changed_since_previous(dose_changed_at, readings)
    ):
        return policy.within_7_days_row
    if not _in_range(readings[-1].inr, low, high):
        return policy.out_of_range_fallback_row
    # "Up to 12 weeks" is checked before the 7/14/28 ladder, which would otherwise always match first.
    if phase == "stable" and extended_interval_allowed:
        return policy.stable_extended_row
    return _ladder_row(len(_trailing_in_range(readings, low, high)), policy)


def _dose_mg(weekly_dose_mg: float, change_percent: float) -> float:
    exact = _dec(weekly_dose_mg) * (Decimal(100) + _dec(change_percent)) / Decimal(100)
    return float(exact.quantize(_TENTH, rounding=ROUND_HALF_UP))


def inr_advice(
    points: Iterable[InrPoint],
    *,
    target_low: float,
    target_high: float,
    weekly_dose_mg: float | None = None,
    extended_interval_allowed: bool = False,
    bleeding: bool = False,
    dose_changed_at: date | datetime | None = None,
    policy: MonitoringPolicy = DEFAULT_POLICY,
) -> InrAdvice:
    """TTR, phase, next INR test and dose suggestion from a patient's readings (reference §4 and §6).

    **Next test** — the first matching row, counted from the latest reading's date; a row with a range gives
    ``next_test_on`` (earliest) and ``next_test_latest_on`` (latest), otherwise both are equal:

    1. bleeding, or INR > 9.0 → next day; alert ``inr_critical`` (urgent); hold (CHEST2008 (> 9); CHEST2012 (2C)).
    2. INR 5.0-9.0 without bleeding → 1-3 days; alert ``inr_high`` (urgent, same day); hold until in range
       (CHEST2012; VA practice [verify]).
    3. stable patient (phase of the readings *before* the latest) whose latest INR is out of range by ≤ 0.5
       → 7-14 days, no dose change (CHEST2012 (2C)); this wins over the nomogram.
    4. initiation (phase of all readings) → 2-3 days (CHEST2012 practice). Checked before row 5 because
       "within 7 days" is a ceiling that 2-3 days meets: a low INR is the rule early in initiation.
    5. INR < 1.5, or 3.6-4.9, or a dose change suggested now, or a dose change recorded after the previous
       reading (``dose_changed_at``) → 7 days (VA practice (Witt 2016) [verify]).
    6. stable, every INR in range, and ``extended_interval_allowed`` → 84 days (CHEST2012 (2B)).
    7. in range after initiation → by the number of consecutive in-range results at the end of the series:
       ≤ 2 → 7 days, 3 → 14, ≥ 4 → 28 (Coumadin label "1 to 4 weeks").
    8. anything else (out of range with a target other than 2.0-3.0, where no nomogram applies) → 7 days,
       ``source: CLINIC``, ``verified: false`` (the reference is silent).

    **Dose** (``dose_change_percent``, ``hold_doses``, ``hold_until``, ``suggested_weekly_dose_mg``):

    * bleeding → no suggestion (all null), ``hold_until: "clinician_review"``.
    * row 3 applies → 0 %, ``hold_doses: 0``.
    * initiation → no suggestion, info alert ``nomogram_initiation``.
    * target other than 2.0-3.0 → no suggestion, info alert ``nomogram_not_applicable``.
    * otherwise the nomogram band of the INR (one decimal) [verify]: ``hold_doses`` 0 or 1; for ≥ 5.0
      ``hold_doses: null`` and ``hold_until: "inr_in_range"`` (hold until INR 2-3, then -15 %).

    Whatever the dose branch, rows 1-2 set ``hold_until`` (the interval table says "hold" in every phase).
    ``suggested_weekly_dose_mg`` = ``weekly_dose_mg`` x (1 + change/100), to 0.1 mg (half up), the dose to use
    after any hold; null without a weekly dose or without a change suggestion. Turning it into tablets is the
    clinician's call. ``phase`` in the output is that of all readings.
    """
    if target_low >= target_high:
        raise ValueError("target_low must be below target_high")
    readings = _usable_readings(points)
    if not readings:
        raise ValueError("at least one INR reading is required")
    if weekly_dose_mg is not None and (isinstance(weekly_dose_mg, bool) or weekly_dose_mg <= 0):
        raise ValueError("weekly_dose_mg must be a positive number")

    ttr = rosendaal_ttr(
        readings, target_low, target_high, max_gap_days=policy.ttr_max_gap_days, inclusive=policy.ttr_inclusive
    )
    phase = _classify_usable(readings, target_low, target_high, policy)
    phase_before_latest = _classify_usable(readings[:-1], target_low, target_high, policy)
    excursion = _out_of_range_by(readings[-1].inr, target_low, target_high)
    # Rows 1-2 (bleeding, INR ≥ 5.0) outrank the stable-patient row even with an unusual high target.
    urgent = bleeding or _d1(readings[-1].inr) >= _dec(policy.high_inr_from)
    stable_override = (
        not urgent and phase_before_latest == "stable" and Decimal(0) < excursion <= _dec(policy.stable_excursion_max)
    )

    dose, notes = _suggest_dose(
        readings,
        low=target_low,
        high=target_high,
        phase=phase,
        bleeding=bleeding,
        stable_override=stable_override,
        policy=policy,
    )
    row = _next_test_row(
        readings,
        low=target_low,
        high=target_high,
        phase=phase,
        bleeding=bleeding,
        stable_override=stable_override,
        dose_change_percent=dose.change_percent,
        dose_changed_at=dose_changed_at,
        extended_interval_allowed=extended_interval_allowed,
        policy=policy,
    )
    alerts: list[Alert] = []
    critical = _critical_alert(readings[-1].inr, bleeding, policy)
    if critical:
        alerts.append(critical)
    alerts.extend(notes)

    suggested = None
    if weekly_dose_mg is not None and dose.change_percent is not None:
        suggested = _dose_mg(weekly_dose_mg, dose.change_percent)

    sources: list[str] = []
    for source in (
        "ROSENDAAL1993",
        row.source,
        dose.rule["source"] if dose.rule else None,
        *(alert.source for alert in alerts),
    ):
        if source and source not in sources:
            sources.append(source)

    latest_on = readings[-1].drawn_on
    return InrAdvice(
        ttr=ttr,
        phase=phase,
        next_test_on=latest_on + timedelta(days=row.earliest_days),
        next_test_latest_on=latest_on + timedelta(days=row.latest_days),
        next_test_rule=row,
        dose_change_percent=dose.change_percent,
        hold_doses=dose.hold_doses,
        hold_until=dose.hold_until,
        suggested_weekly_dose_mg=suggested,
        dose_rule=dose.rule,
        alerts=tuple(alerts),
        sources=tuple(sources),
        ttr_method={
            "method": "Rosendaal linear interpolation, continuous time",
            "bounds": "inclusive" if policy.ttr_inclusive else "exclusive",
            "max_gap_days": policy.ttr_max_gap_days,
            "source": "ROSENDAAL1993",
        },
    )


# --------------------------------------------------------------------------------------------------------------
# §4 DOAC monitoring
# --------------------------------------------------------------------------------------------------------------

#: Oral agents the DOAC rules apply to. Reference §3: "A DOAC is not eligible when ... CrCl ≤ 30 mL/min".
DOAC_AGENTS: frozenset[str] = frozenset({"dabigatran", "rivaroxaban", "apixaban", "edoxaban"})


def doac_renal_interval_months(*, crcl_ml_min: float, age: int, policy: MonitoringPolicy = DEFAULT_POLICY) -> int:
    """Months between creatinine/CrCl checks on a DOAC (reference §4 "DOAC monitoring", EHRA [verify]).

    | CrCl (mL/min) | age   | every     |
    |---------------|-------|-----------|
    | ≥ 60          | < 75  | 12 months |
    | > 30 to < 60  | any   | 6 months  |
    | any > 30      | ≥ 75  | 6 months  |
    | ≤ 30          | any   | 3 months  |

    Revision 2 of the reference says "≤ 30 everywhere, as in §3": CrCl exactly 30 is in the 3-month row
    (and no DOAC is eligible: see :func:`doac_alerts`); the "30-59" row starts above 30. A CrCl between 59
    and 60 (e.g. 59.5) is below 60. When age and CrCl point to different rows, the shorter interval wins.
    """
    if isinstance(crcl_ml_min, bool) or not math.isfinite(crcl_ml_min) or crcl_ml_min < 0:
        raise ValueError("crcl_ml_min must be a non-negative number")
    if crcl_ml_min >= policy.doac_crcl_yearly_from:
        months = policy.doac_months_yearly
    elif crcl_ml_min > policy.doac_crcl_six_monthly_from:
        months = policy.doac_months_six_monthly
    else:
        months = policy.doac_months_three_monthly
    if age >= policy.doac_age_six_monthly_from:
        months = min(months, policy.doac_months_six_monthly)
    return months


def doac_renal_next_due(
    *, last_drawn_on: date, crcl_ml_min: float, age: int, policy: MonitoringPolicy = DEFAULT_POLICY
) -> date:
    """The date the next creatinine/CrCl is due: last draw + the interval in calendar months (relativedelta)."""
    months = doac_renal_interval_months(crcl_ml_min=crcl_ml_min, age=age, policy=policy)
    return last_drawn_on + relativedelta(months=months)


def doac_alerts(
    *, agent: str, crcl_ml_min: float | None, policy: MonitoringPolicy = DEFAULT_POLICY
) -> list[dict[str, Any]]:
    """Renal alerts for a patient on ``agent`` (reference §4 "DOAC monitoring", §5 ``renal_doac_contraindicated``).

    CrCl ≤ 30 mL/min on dabigatran → ``renal_doac_contraindicated``, severity ``urgent`` (EHRA [verify]).
    Reference §3 makes *every* DOAC ineligible at CrCl ≤ 30, so the same alert is raised for the other DOACs
    of :data:`DOAC_AGENTS`. Warfarin/other agents, or an unknown CrCl (``None``), give no alert.
    """
    name = agent.strip().lower()
    if name not in DOAC_AGENTS or crcl_ml_min is None or crcl_ml_min > policy.doac_dabigatran_crcl_max:
        return []
    return [
        Alert(
            "renal_doac_contraindicated",
            "urgent",
            f"CrCl {crcl_ml_min:.0f} mL/min (≤ {policy.doac_dabigatran_crcl_max:.0f}) on {name}: "
            f"{name} is not eligible; review the anticoagulant with the clinician.",
            policy.doac_source,
            policy.doac_verified,
        ).as_dict()
    ]


# --------------------------------------------------------------------------------------------------------------
# Input parsing shared by `manage.py inr_advice` and the API
# --------------------------------------------------------------------------------------------------------------


class MonitoringInputError(ValueError):
    """Bad advice input. ``field`` names the offending field (``readings[3].inr``); ``str()`` is one line."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = " ".join(message.split())  # always one line
        super().__init__(f"{field}: {self.message}")


@dataclass(frozen=True)
class AdviceRequest:
    """A validated :func:`inr_advice` request (see :func:`advice_request_from_mapping`)."""

    target_low: float
    target_high: float
    readings: tuple[InrPoint, ...]
    weekly_dose_mg: float | None = None
    extended_interval_allowed: bool = False
    bleeding: bool = False
    dose_changed_on: date | None = None

    def advise(self, *, policy: MonitoringPolicy = DEFAULT_POLICY) -> InrAdvice:
        return inr_advice(
            self.readings,
            target_low=self.target_low,
            target_high=self.target_high,
            weekly_dose_mg=self.weekly_dose_mg,
            extended_interval_allowed=self.extended_interval_allowed,
            bleeding=self.bleeding,
            dose_changed_at=self.dose_changed_on,
            policy=policy,
        )


_REQUEST_KEYS = (
    "target_low",
    "target_high",
    "readings",
    "weekly_dose_mg",
    "extended_interval_allowed",
    "bleeding",
    "dose_changed_on",
)
_READING_KEYS = ("drawn_on", "inr")


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


def _number(value: object, name: str) -> float:
    # bool is an int subclass in Python; JSON true is not a number.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MonitoringInputError(name, f"expected a number, got {_json_type(value)}")
    if not math.isfinite(value):
        raise MonitoringInputError(name, f"expected a finite number, got {value!r}")
    return float(value)


def _inr_value(value: object, name: str) -> float:
    number = _number(value, name)
    if not INR_PLAUSIBLE_MIN <= number <= INR_PLAUSIBLE_MAX:
        raise MonitoringInputError(name, f"{number!r} is outside {INR_PLAUSIBLE_MIN:g}-{INR_PLAUSIBLE_MAX:g}")
    return number


def _boolean(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise MonitoringInputError(name, f"expected true or false, got {_json_type(value)}")
    return value


def _iso_date(value: object, name: str) -> date:
    # Strictly YYYY-MM-DD: date.fromisoformat also takes "20240105" and week dates, which are typos here.
    if not isinstance(value, str):
        raise MonitoringInputError(name, f"expected a date YYYY-MM-DD, got {_json_type(value)}")
    if len(value) != 10 or value[4] != "-" or value[7] != "-" or not value.replace("-", "").isdigit():
        raise MonitoringInputError(name, f"{value!r} is not a date YYYY-MM-DD")
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise MonitoringInputError(name, f"{value!r} is not a valid date ({exc})") from exc


def _unknown_keys(data: Mapping[str, Any], allowed: Sequence[str], prefix: str) -> None:
    for key in data:
        if key not in allowed:
            raise MonitoringInputError(f"{prefix}{key}", f"unknown field (allowed: {', '.join(allowed)})")


def advice_request_from_mapping(data: object) -> AdviceRequest:
    """Validate decoded JSON into an :class:`AdviceRequest`, or raise :class:`MonitoringInputError`.

    Shape: ``{"target_low": 2.0, "target_high": 3.0, "readings": [{"drawn_on": "2026-01-05", "inr": 2.4},
    ...], "weekly_dose_mg": 35, "extended_interval_allowed": false, "bleeding": false}``; the last three are
    optional, and so is ``dose_changed_on`` (a date, for the "after any dose change" row). Strict: unknown
    keys, wrong types (``true`` is not a number), non-finite numbers, INRs or targets outside 0.5-20, a target
    whose low is not below its high, malformed dates and an empty ``readings`` are all refused, the first
    problem found being reported with its field (``readings[3].inr: 25.0 is outside 0.5-20``).
    """
    if not isinstance(data, Mapping):
        raise MonitoringInputError("(root)", f"expected a JSON object, got {_json_type(data)}")
    _unknown_keys(data, _REQUEST_KEYS, "")
    for required in ("target_low", "target_high", "readings"):
        if required not in data:
            raise MonitoringInputError(required, "required field is missing")
    target_low = _inr_value(data["target_low"], "target_low")
    target_high = _inr_value(data["target_high"], "target_high")
    if target_low >= target_high:
        raise MonitoringInputError("target_low", f"{target_low!r} must be below target_high {target_high!r}")

    raw_readings = data["readings"]
    if not isinstance(raw_readings, list):
        raise MonitoringInputError("readings", f"expected an array, got {_json_type(raw_readings)}")
    if not raw_readings:
        raise MonitoringInputError("readings", "at least one reading is required")
    readings: list[InrPoint] = []
    for index, raw in enumerate(raw_readings):
        prefix = f"readings[{index}]"
        if not isinstance(raw, Mapping):
            raise MonitoringInputError(prefix, f"expected an object, got {_json_type(raw)}")
        _unknown_keys(raw, _READING_KEYS, f"{prefix}.")
        for required in _READING_KEYS:
            if required not in raw:
                raise MonitoringInputError(f"{prefix}.{required}", "required field is missing")
        drawn_on = _iso_date(raw["drawn_on"], f"{prefix}.drawn_on")
        inr = _inr_value(raw["inr"], f"{prefix}.inr")
        readings.append(InrPoint(drawn_on, inr))

    weekly_dose_mg = None
    if data.get("weekly_dose_mg") is not None:
        weekly_dose_mg = _number(data["weekly_dose_mg"], "weekly_dose_mg")
        if weekly_dose_mg <= 0:
            raise MonitoringInputError("weekly_dose_mg", f"{weekly_dose_mg!r} must be above 0")
    dose_changed_on = None
    if data.get("dose_changed_on") is not None:
        dose_changed_on = _iso_date(data["dose_changed_on"], "dose_changed_on")
    return AdviceRequest(
        target_low=target_low,
        target_high=target_high,
        readings=tuple(readings),
        weekly_dose_mg=weekly_dose_mg,
        extended_interval_allowed=_boolean(data.get("extended_interval_allowed", False), "extended_interval_allowed"),
        bleeding=_boolean(data.get("bleeding", False), "bleeding"),
        dose_changed_on=dose_changed_on,
    )
