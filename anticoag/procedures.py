"""Stopping and restarting anticoagulation around an elective procedure (clinical reference §8, rev 2).

Pure Python, no Django import (a test proves it), like :mod:`anticoag.rules`. The planner turns the agent, the
latest creatinine clearance, the procedure date, the bleed risk chosen by the clinician, the time since the
CVT diagnosis and the risk category into a *dated* day-by-day calendar (dates, never "day −2"): the last dose,
the days without, the INR check the day before (warfarin), the restart day and dose, and warnings. Every line
carries its source: PAUSE (atrial fibrillation patients: for CVT an extrapolation, and the output says so) or
CHEST2022 (marked [verify], ``verified: false``). The software proposes; a clinician confirms.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from dateutil.relativedelta import relativedelta

from anticoag.rules import CATEGORIES, FactsError

PROCEDURE_RULES_VERSION = "2026.12.1"

PAUSE_SOURCE = "PAUSE"
CHEST2022_SOURCE = "CHEST2022 [verify]"
SOURCES: dict[str, str] = {
    "PAUSE": "Douketis et al., JAMA Intern Med 2019;179:1469-1478 (atrial fibrillation patients: applying it to "
    "CVT is an extrapolation).",
    "CHEST2022": "Douketis et al., perioperative management of antithrombotic therapy, Chest 2022 [verify].",
    "EHRA": "European Heart Rhythm Association practical guide on NOAC use [verify].",
    "CLINIC": "Clinic practice (no external guideline).",
}

AGENTS: tuple[str, ...] = ("warfarin", "dabigatran", "rivaroxaban", "apixaban")
DOAC_AGENTS = frozenset({"dabigatran", "rivaroxaban", "apixaban"})
LOW, HIGH = "low", "high"
BLEED_RISKS: tuple[str, ...] = (LOW, HIGH)

#: Procedure kinds. §8 names neuraxial procedures and lumbar puncture as high bleed risk: for those the
#: clinician cannot choose "low". For every other kind the clinician chooses the bleed risk.
PROCEDURE_KINDS: dict[str, str] = {
    "lumbar_puncture": "Lumbar puncture",
    "neuraxial_anaesthesia": "Neuraxial (spinal or epidural) anaesthesia or injection",
    "dental": "Dental procedure",
    "endoscopy": "Endoscopy",
    "surgery": "Surgery",
    "other": "Other procedure",
}
ALWAYS_HIGH_BLEED_RISK = frozenset({"lumbar_puncture", "neuraxial_anaesthesia"})

#: §8 dabigatran rows: CrCl ≥ 50 mL/min or < 50 mL/min.
DABIGATRAN_CRCL_THRESHOLD = 50.0
#: §8 "CVT within the last 3 months": a diagnosis less than 3 calendar months before the procedure.
RECENT_CVT_MONTHS = 3.0
#: Reference §3: a DOAC is not eligible when CrCl ≤ 30 mL/min.
DOAC_MAX_INELIGIBLE_CRCL = 30.0

INFO, CAUTION = "info", "caution"

#: Plausibility bounds of a procedure date (not clinical: they keep the calendar arithmetic inside Python's dates).
EARLIEST_DATE, LATEST_DATE = date(1900, 1, 1), date(9998, 12, 31)


class ProcedureInputError(FactsError):
    """Invalid planner input. ``str(err)`` is one line: ``<field>: <what is wrong>``."""


@dataclass(frozen=True)
class IntervalRow:
    """One row of the §8 table: how many whole days without the drug before the procedure, and when to restart.

    ``skip_days`` days without a dose before the procedure day (the last dose is ``skip_days + 1`` days before);
    ``restart_after`` is (earliest, latest) days after the procedure (0: the evening of the procedure day).
    """

    agents: frozenset[str]
    applies: Any  # (crcl: float | None) -> bool
    bleed_risk: str
    skip_days: int
    restart_after: tuple[int, int]
    restart_dose: str
    inr_check_day_before: bool
    source: str
    label: str


def _any_crcl(crcl: float | None) -> bool:
    return True


def _crcl_50_or_more(crcl: float | None) -> bool:
    return crcl is not None and crcl >= DABIGATRAN_CRCL_THRESHOLD


def _crcl_below_50(crcl: float | None) -> bool:
    return crcl is not None and crcl < DABIGATRAN_CRCL_THRESHOLD


_XA = frozenset({"apixaban", "rivaroxaban"})
_DABI = frozenset({"dabigatran"})
_WARF = frozenset({"warfarin"})
_USUAL_DOSE = "the usual dose"
_WARFARIN_RESTART = "the usual warfarin dose"

#: Reference §8, row by row and bleed risk by bleed risk. The DOAC restart is "1 day after (low); 2-3 days
#: after (high)" for every DOAC row ("as above"). Warfarin: "evening of the procedure or next day, usual dose".
# fmt: off
INTERVAL_TABLE: tuple[IntervalRow, ...] = (
    #           agents  CrCl               bleed  skip  restart  dose               INR    source             label
    IntervalRow(_XA,    _any_crcl,         LOW,   1,    (1, 1),  _USUAL_DOSE,       False, PAUSE_SOURCE,      "apixaban/rivaroxaban, low bleed risk"),
    IntervalRow(_XA,    _any_crcl,         HIGH,  2,    (2, 3),  _USUAL_DOSE,       False, PAUSE_SOURCE,      "apixaban/rivaroxaban, high bleed risk"),
    IntervalRow(_DABI,  _crcl_50_or_more,  LOW,   1,    (1, 1),  _USUAL_DOSE,       False, PAUSE_SOURCE,      "dabigatran, CrCl ≥ 50, low bleed risk"),
    IntervalRow(_DABI,  _crcl_50_or_more,  HIGH,  2,    (2, 3),  _USUAL_DOSE,       False, PAUSE_SOURCE,      "dabigatran, CrCl ≥ 50, high bleed risk"),
    IntervalRow(_DABI,  _crcl_below_50,    LOW,   2,    (1, 1),  _USUAL_DOSE,       False, PAUSE_SOURCE,      "dabigatran, CrCl < 50, low bleed risk"),
    IntervalRow(_DABI,  _crcl_below_50,    HIGH,  4,    (2, 3),  _USUAL_DOSE,       False, PAUSE_SOURCE,      "dabigatran, CrCl < 50, high bleed risk"),
    IntervalRow(_WARF,  _any_crcl,         LOW,   5,    (0, 1),  _WARFARIN_RESTART, True,  CHEST2022_SOURCE,  "warfarin"),
    IntervalRow(_WARF,  _any_crcl,         HIGH,  5,    (0, 1),  _WARFARIN_RESTART, True,  CHEST2022_SOURCE,  "warfarin"),
)
# fmt: on


# =====================================================================================================
# Input
# =====================================================================================================


@dataclass(frozen=True)
class ProcedureFacts:
    """What the planner reads. ``months_since_diagnosis`` is in calendar months (see :func:`months_between`).

    ``severe_thrombophilia`` None means "as the category says" (category ``severe_thrombophilia``); the
    category comes first in §2, so a recurrent CVT with protein C deficiency is category ``recurrent``: pass
    True then.
    """

    agent: str
    procedure_on: date
    bleed_risk: str
    months_since_diagnosis: float
    category: str
    crcl_ml_min: float | None = None
    procedure_kind: str = "other"
    severe_thrombophilia: bool | None = None

    def __post_init__(self) -> None:
        if self.agent not in AGENTS:
            raise ProcedureInputError("agent", f"unknown agent {self.agent!r}; allowed: {', '.join(AGENTS)}")
        if not isinstance(self.procedure_on, date) or isinstance(self.procedure_on, datetime):
            raise ProcedureInputError("procedure_on", "must be a date (YYYY-MM-DD)")
        if not EARLIEST_DATE <= self.procedure_on <= LATEST_DATE:
            raise ProcedureInputError(
                "procedure_on", f"must be between {EARLIEST_DATE.isoformat()} and {LATEST_DATE.isoformat()}"
            )
        if self.procedure_kind not in PROCEDURE_KINDS:
            raise ProcedureInputError(
                "procedure_kind", f"unknown kind {self.procedure_kind!r}; allowed: {', '.join(PROCEDURE_KINDS)}"
            )
        if self.bleed_risk not in BLEED_RISKS:
            raise ProcedureInputError("bleed_risk", f"unknown value {self.bleed_risk!r}; allowed: low, high")
        if self.bleed_risk == LOW and self.procedure_kind in ALWAYS_HIGH_BLEED_RISK:
            raise ProcedureInputError(
                "bleed_risk", f"a {PROCEDURE_KINDS[self.procedure_kind].lower()} is a high bleed-risk procedure (§8)"
            )
        if self.category not in CATEGORIES:
            raise ProcedureInputError(
                "category", f"unknown category {self.category!r}; allowed: {', '.join(CATEGORIES)}"
            )
        _check_number("months_since_diagnosis", self.months_since_diagnosis, 0, 1200, required=True)
        _check_number("crcl_ml_min", self.crcl_ml_min, 0, 500, required=False)
        if self.agent == "dabigatran" and self.crcl_ml_min is None:
            raise ProcedureInputError(
                "crcl_ml_min", "dabigatran needs the latest creatinine clearance (the §8 rows differ at 50 mL/min)"
            )
        if self.severe_thrombophilia is not None and not isinstance(self.severe_thrombophilia, bool):
            raise ProcedureInputError("severe_thrombophilia", "must be true or false")

    @property
    def high_thrombotic_risk_thrombophilia(self) -> bool:
        if self.severe_thrombophilia is None:
            return self.category == "severe_thrombophilia"
        return self.severe_thrombophilia

    @property
    def recent_cvt(self) -> bool:
        return self.months_since_diagnosis < RECENT_CVT_MONTHS


def _check_number(name: str, value: object, low: float, high: float, *, required: bool) -> None:
    if value is None:
        if required:
            raise ProcedureInputError(name, "is required")
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ProcedureInputError(name, f"must be a number, got {value!r}")
    if not low <= value <= high:
        raise ProcedureInputError(name, f"must be between {low:g} and {high:g}, got {value:g}")


def months_between(start: date, end: date) -> float:
    """Calendar months from ``start`` to ``end``: whole months by ``relativedelta``, then the fraction of the next
    month that has passed (so ``end`` = ``start`` + 3 months is exactly 3.0). Negative spans count as 0."""
    if end <= start:
        return 0.0
    whole = relativedelta(end, start)
    months = whole.years * 12 + whole.months
    base = start + relativedelta(months=months)
    following = start + relativedelta(months=months + 1)
    return round(months + (end - base).days / (following - base).days, 3)


INPUT_FIELDS: tuple[str, ...] = (
    "agent",
    "procedure_on",
    "procedure_kind",
    "bleed_risk",
    "crcl_ml_min",
    "months_since_diagnosis",
    "diagnosed_on",
    "category",
    "severe_thrombophilia",
)


def _parse_date(name: str, value: object) -> date:
    if not isinstance(value, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise ProcedureInputError(name, f"must be an ISO date (YYYY-MM-DD), got {value!r}")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ProcedureInputError(name, f"is not a calendar date, got {value!r}") from None


def facts_from_mapping(data: Mapping[str, object]) -> ProcedureFacts:
    """Parse the JSON input of ``manage.py procedure_plan``. Give ``months_since_diagnosis`` or ``diagnosed_on``."""
    for key in data:
        if key not in INPUT_FIELDS:
            raise ProcedureInputError(str(key)[:60], f"unknown field; allowed: {', '.join(INPUT_FIELDS)}")
    for required in ("agent", "procedure_on", "bleed_risk", "category"):
        if data.get(required) is None:
            raise ProcedureInputError(required, "is required")
    for name in ("agent", "bleed_risk", "category", "procedure_kind"):
        if name in data and not isinstance(data[name], str):
            raise ProcedureInputError(name, f"must be a string, got {data[name]!r}")
    procedure_on = _parse_date("procedure_on", data["procedure_on"])
    months = data.get("months_since_diagnosis")
    if data.get("diagnosed_on") is not None:
        if months is not None:
            raise ProcedureInputError("diagnosed_on", "give diagnosed_on or months_since_diagnosis, not both")
        diagnosed_on = _parse_date("diagnosed_on", data["diagnosed_on"])
        if diagnosed_on > procedure_on:
            raise ProcedureInputError("diagnosed_on", "is after the procedure date")
        months = months_between(diagnosed_on, procedure_on)
    elif months is None:
        raise ProcedureInputError("months_since_diagnosis", "is required (or give diagnosed_on)")
    return ProcedureFacts(
        agent=data["agent"],  # type: ignore[arg-type]
        procedure_on=procedure_on,
        bleed_risk=data["bleed_risk"],  # type: ignore[arg-type]
        months_since_diagnosis=months,  # type: ignore[arg-type]
        category=data["category"],  # type: ignore[arg-type]
        crcl_ml_min=data.get("crcl_ml_min"),  # type: ignore[arg-type]
        procedure_kind=data.get("procedure_kind") or "other",  # type: ignore[arg-type]
        severe_thrombophilia=data.get("severe_thrombophilia"),  # type: ignore[arg-type]
    )


# =====================================================================================================
# Output
# =====================================================================================================


@dataclass(frozen=True)
class PlanWarning:
    """A warning shown with the plan; ``caution`` ones need a clinician's acknowledgement."""

    code: str
    severity: str
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


@dataclass(frozen=True)
class CalendarDay:
    """One dated day of the plan: take the drug or not, and what else happens that day."""

    on: date
    offset: int
    take: bool
    what: str
    events: tuple[str, ...]
    source: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "date": self.on.isoformat(),
            "weekday": self.on.strftime("%A"),
            "offset": self.offset,
            "take": self.take,
            "what": self.what,
            "events": list(self.events),
            "source": self.source,
        }


@dataclass(frozen=True)
class Intervals:
    """The decided (or proposed) intervals; the calendar follows from them and the procedure date."""

    skip_days: int
    restart_after: int
    inr_check: bool

    def as_dict(self) -> dict[str, Any]:
        return {"skip_days": self.skip_days, "restart_after": self.restart_after, "inr_check": self.inr_check}


@dataclass(frozen=True)
class ProcedurePlan:
    """The dated plan. Decision support: a clinician confirms it."""

    facts: ProcedureFacts
    row: IntervalRow
    intervals: Intervals
    days: tuple[CalendarDay, ...]
    warnings: tuple[PlanWarning, ...] = field(default=())

    @property
    def last_dose_on(self) -> date:
        return self.facts.procedure_on - timedelta(days=self.intervals.skip_days + 1)

    @property
    def restart_on(self) -> date:
        return self.facts.procedure_on + timedelta(days=self.intervals.restart_after)

    @property
    def inr_check_on(self) -> date | None:
        return self.facts.procedure_on - timedelta(days=1) if self.intervals.inr_check else None

    def as_dict(self) -> dict[str, Any]:
        f, row = self.facts, self.row
        return {
            "rules_version": PROCEDURE_RULES_VERSION,
            "agent": f.agent,
            "procedure_on": f.procedure_on.isoformat(),
            "procedure_kind": f.procedure_kind,
            "bleed_risk": f.bleed_risk,
            "crcl_ml_min": f.crcl_ml_min,
            "months_since_diagnosis": f.months_since_diagnosis,
            "category": f.category,
            "row": row.label,
            "source": row.source,
            "verified": "[verify]" not in row.source,
            "last_dose_on": self.last_dose_on.isoformat(),
            "days_without": self.intervals.skip_days,
            "days_without_dates": [d.on.isoformat() for d in self.days if d.offset < 0 and not d.take],
            "inr_check_on": self.inr_check_on.isoformat() if self.inr_check_on else None,
            "restart_on": self.restart_on.isoformat(),
            "restart_latest_on": (f.procedure_on + timedelta(days=row.restart_after[1])).isoformat(),
            "restart_dose": row.restart_dose,
            "restart_range_days": list(row.restart_after),
            "intervals": self.intervals.as_dict(),
            "proposed_intervals": proposed_intervals(row).as_dict(),
            "calendar": [d.as_dict() for d in self.days],
            "warnings": [w.as_dict() for w in self.warnings],
            "sources": [{"name": n, "citation": c} for n, c in SOURCES.items() if n in self._cited()],
        }

    def _cited(self) -> set[str]:
        text = " ".join([self.row.source, *(w.source for w in self.warnings), *(d.source for d in self.days)])
        return {name for name in SOURCES if name in text}


def interval_row(facts: ProcedureFacts) -> IntervalRow:
    """The §8 row for the agent, CrCl and bleed risk."""
    for row in INTERVAL_TABLE:
        if facts.agent in row.agents and row.bleed_risk == facts.bleed_risk and row.applies(facts.crcl_ml_min):
            return row
    raise AssertionError("every agent, CrCl and bleed risk has a §8 row")  # pragma: no cover


def proposed_intervals(row: IntervalRow) -> Intervals:
    """The row's intervals; the restart is the earliest day of its range."""
    return Intervals(skip_days=row.skip_days, restart_after=row.restart_after[0], inr_check=row.inr_check_day_before)


def _calendar(facts: ProcedureFacts, row: IntervalRow, intervals: Intervals) -> tuple[CalendarDay, ...]:
    """Every date from the last dose to the restart, each with "take" or "don't take" and its events."""
    drug = facts.agent.capitalize()
    procedure = PROCEDURE_KINDS[facts.procedure_kind]
    first, last = -(intervals.skip_days + 1), intervals.restart_after
    days = []
    for offset in range(first, max(last, 0) + 1):
        on = facts.procedure_on + timedelta(days=offset)
        events: list[str] = []
        if offset == 0:
            events.append(f"{procedure} (procedure day)")
        if intervals.inr_check and offset == -1:
            events.append("INR check")
        if offset == first:
            take, what = True, f"Take {drug} as usual: this is the last dose before the procedure"
        elif offset == last:
            when = "in the evening, after the procedure" if offset == 0 else "again"
            take, what = True, f"Restart {drug} {when}: {row.restart_dose}"
        else:
            take, what = False, f"Do not take {drug}"
        days.append(CalendarDay(on=on, offset=offset, take=take, what=what, events=tuple(events), source=row.source))
    return tuple(days)


def _warnings(facts: ProcedureFacts, row: IntervalRow) -> tuple[PlanWarning, ...]:
    out: list[PlanWarning] = []
    doac = facts.agent in DOAC_AGENTS
    if doac:
        out.append(
            PlanWarning(
                "pause_extrapolation",
                INFO,
                "The PAUSE intervals come from patients with atrial fibrillation: applying them to CVT is an "
                "extrapolation.",
                PAUSE_SOURCE,
            )
        )
        out.append(PlanWarning("no_bridging_doac", INFO, "No heparin bridging for DOACs.", PAUSE_SOURCE))
    else:
        out.append(
            PlanWarning(
                "bridging_not_routine",
                INFO,
                "Heparin bridging is not routine for warfarin.",
                CHEST2022_SOURCE,
                verified=False,
            )
        )
    high_risk_text = (
        "Consider postponing the procedure; if it cannot wait, discuss bridging with LMWH. Bridging needs a "
        "clinician's decision."
    )
    if doac:
        high_risk_text += " (PAUSE gave no heparin bridging for DOACs.)"
    if facts.recent_cvt:
        out.append(
            PlanWarning(
                "recent_cvt",
                CAUTION,
                f"CVT within the last 3 months ({facts.months_since_diagnosis:.1f} months before the procedure): "
                f"high thrombotic risk. {high_risk_text}",
                CHEST2022_SOURCE,
                verified=False,
            )
        )
    if facts.high_thrombotic_risk_thrombophilia:
        out.append(
            PlanWarning(
                "severe_thrombophilia",
                CAUTION,
                f"Severe thrombophilia: high thrombotic risk. {high_risk_text}",
                CHEST2022_SOURCE,
                verified=False,
            )
        )
    if doac and facts.crcl_ml_min is not None and facts.crcl_ml_min <= DOAC_MAX_INELIGIBLE_CRCL:
        out.append(
            PlanWarning(
                "renal_doac_contraindicated",
                CAUTION,
                f"Creatinine clearance {facts.crcl_ml_min:g} mL/min: a DOAC is not eligible at 30 mL/min or less "
                "(reference §3); review the anticoagulant before planning the interruption.",
                "EHRA [verify]",
                verified=False,
            )
        )
    return tuple(out)


def _calendar_warnings(facts: ProcedureFacts, intervals: Intervals) -> tuple[PlanWarning, ...]:
    if not intervals.inr_check:
        return ()
    check_on = facts.procedure_on - timedelta(days=1)
    if check_on.weekday() < 5:
        return ()
    return (
        PlanWarning(
            "inr_check_on_weekend",
            INFO,
            f"The INR check falls on a {check_on:%A} ({check_on.isoformat()}): make sure a laboratory or a "
            "point-of-care test is available that day.",
            "CLINIC",
        ),
    )


def procedure_plan(facts: ProcedureFacts, intervals: Intervals | None = None) -> ProcedurePlan:
    """The §8 plan for ``facts``: the proposal, or (with ``intervals``) the calendar a clinician decided."""
    row = interval_row(facts)
    chosen = intervals or proposed_intervals(row)
    if chosen.skip_days < 0 or chosen.skip_days > 14:
        raise ProcedureInputError("skip_days", "must be between 0 and 14 days")
    if chosen.restart_after < 0 or chosen.restart_after > 14:
        raise ProcedureInputError("restart_after", "must be between 0 and 14 days after the procedure")
    return ProcedurePlan(
        facts=facts,
        row=row,
        intervals=chosen,
        days=_calendar(facts, row, chosen),
        warnings=_warnings(facts, row) + _calendar_warnings(facts, chosen),
    )


def acknowledge_codes(plan: ProcedurePlan) -> list[str]:
    """Warnings a clinician must acknowledge before confirming."""
    return [w.code for w in plan.warnings if w.severity == CAUTION]
