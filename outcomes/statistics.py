"""The outcome report's arithmetic (reference §6 and §7), in pure Python: no Django import.

* :func:`poisson_ci` — the exact (Garwood) confidence interval of a Poisson count, found through the
  chi-square / gamma relation: the lower bound is ``chi2(alpha/2; 2k) / 2`` and the upper bound
  ``chi2(1 - alpha/2; 2k + 2) / 2``. With even degrees of freedom the chi-square distribution function is a
  Poisson sum, so both bounds are roots of a Poisson distribution function, found here by bisection (no
  tables, no numerical library). Check: 0 events → upper bound ``-ln(0.025) = 3.689`` per unit exposure.
* :func:`event_rate` — events per 100 patient-years with that interval.
* :func:`quantile` / :func:`median_iqr` — linear interpolation between order statistics (the "inclusive"
  method of :func:`statistics.quantiles`, type 7 of Hyndman and Fan, R's and NumPy's default).
* :func:`ttr_band` and :data:`TTR_BANDS` — the TTR bands of the report.
* :func:`share` — a percentage with its numerator and denominator.
* :func:`merge_intervals`, :func:`days_within`, :func:`covers` — days on anticoagulation as half-open day
  intervals ``[start, end)``, for the patient-years of the rates.
* :func:`initiation_end` — where the warfarin initiation phase ends (the report's TTR leaves it out).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal

#: Days per year used to turn days on anticoagulation into patient-years (the Julian year: 365.25 days).
DAYS_PER_YEAR = 365.25

#: The report states rates per this many patient-years (reference §7: "per 100 patient-years").
RATE_PER_PATIENT_YEARS = 100

#: Reference §6: the clinic's TTR quality target (median TTR ≥ 65 %).
TTR_TARGET_PERCENT = 65.0

#: TTR bands of the report: (label, lower bound inclusive, upper bound exclusive). 65 % is the reference's
#: target (§6); the other cut-offs (50 %, 80 %) are the report's own presentation choice, not a guideline.
TTR_BANDS: tuple[tuple[str, float, float], ...] = (
    ("<50", 0.0, 50.0),
    ("50-<65", 50.0, 65.0),
    ("65-<80", 65.0, 80.0),
    (">=80", 80.0, math.inf),
)


def _poisson_cdf(k: int, mean: float) -> float:
    """P(X ≤ k) for X ~ Poisson(mean), summed in log space so large counts do not overflow."""
    if k < 0:
        return 0.0
    if mean <= 0:
        return 1.0
    log_mean = math.log(mean)
    total = 0.0
    for i in range(k + 1):
        total += math.exp(i * log_mean - mean - math.lgamma(i + 1))
    return min(total, 1.0)


def _root(f, low: float, high: float) -> float:
    """Bisection for a decreasing function ``f`` that crosses zero in [low, high]."""
    for _ in range(200):
        middle = (low + high) / 2
        if f(middle) > 0:
            low = middle
        else:
            high = middle
        if high - low <= 1e-12 * max(1.0, high):
            break
    return (low + high) / 2


def poisson_ci(events: int, *, confidence: float = 0.95) -> tuple[float, float]:
    """Exact two-sided confidence interval of the mean of a Poisson count ``events`` (per unit exposure).

    Lower bound L: P(X ≥ k | L) = alpha/2 (0 when k = 0); upper bound U: P(X ≤ k | U) = alpha/2.
    Equivalent to ``chi2.ppf(alpha/2, 2k)/2`` and ``chi2.ppf(1-alpha/2, 2k+2)/2``.
    """
    if isinstance(events, bool) or not isinstance(events, int) or events < 0:
        raise ValueError("events must be a whole number ≥ 0")
    if not 0 < confidence < 1:
        raise ValueError("confidence must lie between 0 and 1")
    alpha = 1 - confidence
    span = events + 20 * math.sqrt(events + 1) + 20  # far beyond any bound of interest
    upper = _root(lambda mean: _poisson_cdf(events, mean) - alpha / 2, 0.0, span)
    if events == 0:
        return 0.0, upper
    # P(X ≥ k | L) = 1 - P(X ≤ k-1 | L) rises with L: find where P(X ≤ k-1 | L) = 1 - alpha/2.
    lower = _root(lambda mean: _poisson_cdf(events - 1, mean) - (1 - alpha / 2), 0.0, span)
    return lower, upper


@dataclass(frozen=True)
class Rate:
    """An event rate per :data:`RATE_PER_PATIENT_YEARS` patient-years with its exact Poisson interval."""

    events: int
    patient_years: float
    rate: float | None
    ci_low: float | None
    ci_high: float | None
    confidence: float = 0.95

    def as_dict(self) -> dict:
        return {
            "events": self.events,
            "patient_years": round(self.patient_years, 4),
            "rate_per_100_patient_years": None if self.rate is None else round(self.rate, 4),
            "ci_low": None if self.ci_low is None else round(self.ci_low, 4),
            "ci_high": None if self.ci_high is None else round(self.ci_high, 4),
            "confidence": self.confidence,
        }


def event_rate(events: int, patient_years: float, *, confidence: float = 0.95) -> Rate:
    """Events per 100 patient-years and the exact Poisson interval; no exposure → no rate."""
    if patient_years < 0:
        raise ValueError("patient_years must be ≥ 0")
    if patient_years == 0:
        return Rate(events, 0.0, None, None, None, confidence)
    low, high = poisson_ci(events, confidence=confidence)
    scale = RATE_PER_PATIENT_YEARS / patient_years
    return Rate(events, patient_years, events * scale, low * scale, high * scale, confidence)


def patient_years(days: float) -> float:
    return days / DAYS_PER_YEAR


def quantile(values: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile (0–1) by linear interpolation between order statistics (type 7)."""
    if not 0 <= q <= 1:
        raise ValueError("q must lie between 0 and 1")
    data = sorted(values)
    if not data:
        return None
    position = (len(data) - 1) * q
    below = math.floor(position)
    above = min(below + 1, len(data) - 1)
    return data[below] + (data[above] - data[below]) * (position - below)


def median_iqr(values: Iterable[float]) -> dict:
    """n, median, first and third quartile (type 7) of ``values``; None for each with no value."""
    data = sorted(values)
    return {
        "n": len(data),
        "median": quantile(data, 0.5),
        "q1": quantile(data, 0.25),
        "q3": quantile(data, 0.75),
    }


def ttr_band(ttr_percent: float) -> str:
    """The :data:`TTR_BANDS` label of a TTR."""
    for label, low, high in TTR_BANDS:
        if low <= ttr_percent < high:
            return label
    raise ValueError(f"TTR {ttr_percent} is outside 0–100 %")


def share(numerator: int, denominator: int) -> dict:
    """``{"n": numerator, "of": denominator, "percent": …}`` (percent None when the denominator is 0)."""
    percent = None if denominator == 0 else 100.0 * numerator / denominator
    return {"n": numerator, "of": denominator, "percent": None if percent is None else round(percent, 2)}


def _reported(inr: float) -> Decimal:
    """The INR as reported, half-up to one decimal (reference §4 "in range" reads the reported value)."""
    return Decimal(repr(float(inr))).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)


def initiation_end(inrs: Sequence[float], low: float = 2.0, high: float = 3.0) -> int | None:
    """Index (in time order) of the reading that ends the initiation phase: the second of the first two
    consecutive readings in range (reference §4 "initiation, until 2 consecutive INRs in range"). None
    while the series is still in initiation. The report's TTR counts from this reading on."""
    low_d, high_d = Decimal(repr(float(low))), Decimal(repr(float(high)))
    previous = False
    for index, inr in enumerate(inrs):
        current = low_d <= _reported(inr) <= high_d
        if previous and current:
            return index
        previous = current
    return None


def merge_intervals(intervals: Iterable[tuple[date, date | None]]) -> list[tuple[date, date | None]]:
    """Union of half-open day intervals ``[start, end)`` (``end`` None: still open), sorted."""
    merged: list[tuple[date, date | None]] = []
    for start, end in sorted(intervals, key=lambda pair: pair[0]):
        if end is not None and end <= start:
            continue
        if merged:
            last_start, last_end = merged[-1]
            if last_end is None or start <= last_end:
                new_end = None if last_end is None or end is None else max(last_end, end)
                merged[-1] = (last_start, new_end)
                continue
        merged.append((start, end))
    return merged


def days_within(intervals: Iterable[tuple[date, date | None]], start: date, end: date) -> int:
    """Days of the (merged) intervals inside the period from ``start`` to ``end``, both days included."""
    stop = end + timedelta(days=1)
    total = 0
    for low, high in merge_intervals(intervals):
        high = stop if high is None else min(high, stop)
        low = max(low, start)
        if high > low:
            total += (high - low).days
    return total


def covers(intervals: Iterable[tuple[date, date | None]], day: date) -> bool:
    """True when ``day`` lies in one of the half-open intervals."""
    return any(low <= day and (high is None or day < high) for low, high in intervals)
