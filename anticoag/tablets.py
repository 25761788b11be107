"""Warfarin tablets: a weekly dose as a day-by-day schedule of the tablets a clinic stocks.

Pure Python, no Django import (like :mod:`anticoag.monitoring`). The rules are the clinic practice of the
clinical reference, §4 "Warfarin tablets and the patient's dosing schedule (rev 2)":

* whole tablets, or half tablets where the clinic allows them, of the strengths the clinic stocks only;
* the daily doses of a week differ by at most one **step**;
* at most two strengths on any day;
* the larger doses spread through the week, not bunched;
* when the weekly dose cannot be made exactly, the nearest achievable weekly dose is proposed and the
  difference shown;
* a suggestion never changes the weekly dose by more than the clinic's guardrail (20 % by default).

Choices made here where the reference is silent (each is clinic practice, not a guideline):

* A **step** is the smallest piece the clinic can hand out: its smallest strength, or half of it when halves
  are allowed (UK 0.5/1/3/5 mg: 0.5 mg, or 0.25 mg with halves; US 1…10 mg: 1 mg, or 0.5 mg with halves).
  Daily doses are whole multiples of the step.
* A day uses the fewest tablets that make its dose, then the fewest halves, then the larger strengths; never
  more than one half tablet of a strength, and never more than :data:`MAX_PIECES_PER_DAY` tablets.
* A day without warfarin (0 mg) is allowed when the weekly dose is too small for a tablet every day.
* Between two achievable weekly doses equally near the suggestion, the lower one is proposed.
* The week starts on Monday; the larger days fall on the days Bresenham's line would pick (one larger day:
  Sunday; three: Wednesday, Friday, Sunday), so they are spread evenly.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from functools import lru_cache
from itertools import combinations

#: Where these rules come from (shown with every schedule).
SOURCE = 'clinical reference §4 "Warfarin tablets and the patient\'s dosing schedule" (rev 2): clinic practice'

#: Strength sets named in the reference (mg).
UK_STRENGTHS: tuple[Decimal, ...] = (Decimal("0.5"), Decimal("1"), Decimal("3"), Decimal("5"))
US_STRENGTHS: tuple[Decimal, ...] = tuple(Decimal(s) for s in ("1", "2", "2.5", "3", "4", "5", "6", "7.5", "10"))

#: The manufacturers' tablet colours of those strengths (clinic setting; shown on the patient's letter).
UK_COLOURS: dict[str, str] = {"0.5": "white", "1": "brown", "3": "blue", "5": "pink"}
US_COLOURS: dict[str, str] = {
    "1": "pink",
    "2": "lavender",
    "2.5": "green",
    "3": "tan",
    "4": "blue",
    "5": "peach",
    "6": "teal",
    "7.5": "yellow",
    "10": "white",
}

#: Default guardrail: a suggestion never changes the weekly dose by more than this (reference §4).
DEFAULT_GUARDRAIL_PERCENT = 20

#: A day never asks for more tablets than this (halves count as one tablet). Clinic practice.
MAX_PIECES_PER_DAY = 6

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


@dataclass(frozen=True)
class Tablets:
    """The tablets a clinic stocks: strengths in mg, and whether a tablet may be halved."""

    strengths: tuple[Decimal, ...]
    halves_allowed: bool = False

    def __post_init__(self) -> None:
        strengths = tuple(sorted({Decimal(str(s)) for s in self.strengths}))
        if not strengths or any(s <= 0 for s in strengths):
            raise ValueError("At least one tablet strength, each above 0 mg.")
        if any((s * 100) % 1 for s in strengths):
            raise ValueError("Tablet strengths are given to 0.01 mg at most.")
        object.__setattr__(self, "strengths", strengths)

    @property
    def step(self) -> Decimal:
        """The smallest piece: the smallest strength, halved when halves are allowed."""
        smallest = self.strengths[0]
        return smallest / 2 if self.halves_allowed else smallest


@dataclass(frozen=True)
class DayDose:
    """One day: its dose in mg and the tablets that make it, as (strength mg, count) with count 0.5 steps."""

    weekday: int  # 0 = Monday
    dose_mg: Decimal
    tablets: tuple[tuple[Decimal, Decimal], ...]

    @property
    def pieces(self) -> int:
        return sum(int(count) + (1 if count % 1 else 0) for _, count in self.tablets)

    def as_dict(self) -> dict:
        return {
            "weekday": self.weekday,
            "day": WEEKDAYS[self.weekday],
            "dose_mg": mg_text(self.dose_mg),
            "tablets": [{"strength_mg": mg_text(s), "count": mg_text(c)} for s, c in self.tablets],
        }


@dataclass(frozen=True)
class WeeklySchedule:
    """A week of doses: what was asked, what the tablets make, and the difference (achieved − requested)."""

    requested_mg: Decimal
    weekly_mg: Decimal
    days: tuple[DayDose, ...]
    step_mg: Decimal
    source: str = SOURCE

    @property
    def difference_mg(self) -> Decimal:
        return self.weekly_mg - self.requested_mg

    @property
    def exact(self) -> bool:
        return self.difference_mg == 0

    def as_dict(self) -> dict:
        return {
            "requested_mg": mg_text(self.requested_mg),
            "weekly_mg": mg_text(self.weekly_mg),
            "difference_mg": mg_text(self.difference_mg),
            "exact": self.exact,
            "step_mg": mg_text(self.step_mg),
            "days": [d.as_dict() for d in self.days],
            "source": self.source,
        }


def mg_text(value: Decimal) -> str:
    """A Decimal without trailing zeros or exponent ("2.5", "5", "0.25")."""
    text = format(value.normalize(), "f")
    return text


#: Internal unit: 1/200 mg, so that any strength to 0.01 mg and its half are whole numbers of units.
_SCALE = 200


def _units(value: Decimal) -> int:
    return int((value * _SCALE).to_integral_value(rounding=ROUND_HALF_EVEN))


def _mg(units: int) -> Decimal:
    """Units → mg without trailing zeros or exponent (10, not 1E+1; 2.5, not 2.500)."""
    return Decimal(format((Decimal(units) / _SCALE).normalize(), "f"))


@lru_cache(maxsize=512)
def _day_options(tablets: Tablets, max_dose: int) -> dict[int, tuple[tuple[int, int], ...]]:
    """Every daily dose (units) up to ``max_dose`` that ≤ 2 strengths make, with its best combination as
    (strength units, count in halves).

    Best = fewest tablets, then fewest halves, then the larger strengths. A count is in halves when halves are
    allowed; at most one half tablet per strength (a patient never takes two halves of the same tablet)."""
    halves_step = 1 if tablets.halves_allowed else 2  # counts are in half tablets
    strengths = [_units(s) for s in tablets.strengths]
    best: dict[int, tuple[tuple, tuple[tuple[int, int], ...]]] = {0: ((0, 0, ()), ())}

    def counts(strength: int) -> list[tuple[int, int, int]]:
        """(halves, pieces, amount) for 1, 2, … tablets (or halves) of a strength, within the limits."""
        found = []
        halves = halves_step
        while True:
            pieces = halves // 2 + halves % 2
            amount = halves * strength // 2
            if pieces > MAX_PIECES_PER_DAY or amount > max_dose:
                return found
            found.append((halves, pieces, amount))
            halves += halves_step

    options = {strength: counts(strength) for strength in strengths}
    for pair_size in (1, 2):
        for pair in combinations(sorted(strengths, reverse=True), pair_size):
            stack: list[tuple[int, int, int, int, tuple]] = [(0, 0, 0, 0, ())]
            while stack:
                index, dose, pieces, halves_used, used = stack.pop()
                if index == len(pair):
                    key = (pieces, halves_used, tuple(-strength for strength, _ in used))
                    known = best.get(dose)
                    if known is None or key < known[0]:
                        best[dose] = (key, used)
                    continue
                strength = pair[index]
                for halves, count_pieces, amount in options[strength]:
                    if pieces + count_pieces > MAX_PIECES_PER_DAY:
                        break
                    stack.append(
                        (
                            index + 1,
                            dose + amount,
                            pieces + count_pieces,
                            halves_used + halves % 2,
                            (*used, (strength, halves)),
                        )
                    )
    return {dose: used for dose, (_, used) in best.items()}


def _larger_days(count: int) -> list[int]:
    """Which weekdays (0 = Monday) take the larger dose: ``count`` of 7, spread evenly, Sunday first."""
    return [i for i in range(7) if ((i + 1) * count) // 7 > (i * count) // 7]


def weekly_schedule(
    *,
    weekly_mg: Decimal | float | str,
    tablets: Tablets,
    lowest_mg: Decimal | float | str | None = None,
    highest_mg: Decimal | float | str | None = None,
) -> WeeklySchedule:
    """The week of tablets nearest to ``weekly_mg``.

    ``lowest_mg``/``highest_mg`` (optional) bound the weekly doses that may be proposed (the guardrail: see
    :func:`guardrail_bounds`); when nothing achievable lies between them, the nearest achievable dose to the
    bounds is proposed all the same, and its difference shows. Raises ``ValueError`` for a negative dose.
    """
    requested = Decimal(str(weekly_mg))
    if not requested.is_finite() or requested < 0:
        raise ValueError("The weekly dose cannot be negative.")
    target = _units(requested)
    step = _units(tablets.step)
    low = _units(Decimal(str(lowest_mg))) if lowest_mg is not None else None
    high = _units(Decimal(str(highest_mg))) if highest_mg is not None else None
    # Daily doses up to a little above the daily average (of the request or the upper bound) reach every
    # candidate week. Rounded up to a multiple of 5 mg so that nearby requests share the cached day options.
    reach = max(target, high or 0) // 7 + 2 * step + _units(tablets.strengths[-1])
    reach = -(-reach // (5 * _SCALE)) * (5 * _SCALE)
    options = _day_options(tablets, reach)

    candidates: list[tuple[int, int, int]] = []  # (weekly, base daily, larger days)
    for base in range(0, reach + 1, step):
        if base in options:
            candidates.append((7 * base, base, 0))
            if base + step in options:
                candidates.extend((7 * base + k * step, base, k) for k in range(1, 7))

    def distance(candidate: tuple[int, int, int]) -> tuple:
        weekly = candidate[0]
        gap = 0
        if low is not None and weekly < low:
            gap = low - weekly
        if high is not None and weekly > high:
            gap = weekly - high
        # Inside the bounds first, then nearest the request, then the lower dose.
        return (gap, abs(weekly - target), weekly)

    weekly, base, larger = min(candidates, key=distance)
    larger_days = set(_larger_days(larger))
    days = []
    for weekday in range(7):
        dose = base + step if weekday in larger_days else base
        used = tuple(sorted(((_mg(strength), Decimal(halves) / 2) for strength, halves in options[dose]), reverse=True))
        days.append(DayDose(weekday=weekday, dose_mg=_mg(dose), tablets=used))
    return WeeklySchedule(requested_mg=requested, weekly_mg=_mg(weekly), days=tuple(days), step_mg=_mg(step))


def guardrail_bounds(
    *, current_mg: Decimal | float | str, percent: Decimal | float | int = DEFAULT_GUARDRAIL_PERCENT
) -> tuple[Decimal, Decimal]:
    """The weekly doses a suggestion may reach from ``current_mg``: ± ``percent`` (reference §4, 20 %)."""
    current = Decimal(str(current_mg))
    share = Decimal(str(percent)) / 100
    return current * (1 - share), current * (1 + share)


def change_percent(*, current_mg: Decimal | float | str | None, new_mg: Decimal | float | str) -> Decimal | None:
    """The change from the current weekly dose, in percent to one decimal; ``None`` without a current dose."""
    if current_mg in (None, "") or Decimal(str(current_mg)) == 0:
        return None
    current = Decimal(str(current_mg))
    return ((Decimal(str(new_mg)) - current) * 100 / current).quantize(Decimal("0.1"))


def within_guardrail(
    *,
    current_mg: Decimal | float | str | None,
    new_mg: Decimal | float | str,
    percent: Decimal | float | int = DEFAULT_GUARDRAIL_PERCENT,
) -> bool:
    """True when ``new_mg`` is within ± ``percent`` of the current dose (always true without a current dose)."""
    if current_mg in (None, "") or Decimal(str(current_mg)) == 0:
        return True
    low, high = guardrail_bounds(current_mg=current_mg, percent=percent)
    return low <= Decimal(str(new_mg)) <= high
