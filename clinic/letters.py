"""Patient letters: a dated calendar of days with the tablets to take, as a printable page and a PDF.

The layout is reusable: :class:`CalendarDay` is one day of any letter (a dosing schedule, the stop/restart
days around a procedure), :func:`draw_day_calendar` draws a run of them as a Monday-first calendar on a
ReportLab canvas, and :func:`letter_pdf` wraps a calendar in the letter's heading and footer (the clinic's
name and phone). :func:`dosing_letter` builds the dosing letter of reference §4 ("the patient receives the
schedule until the next INR date as a letter (printable, PDF) with the tablets drawn per day, the next test
date and the clinic's contact").

Only what the patient needs: their name, the days and tablets, the next test date and the clinic's phone.
No diagnosis, no INR values.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm
from reportlab.pdfgen import canvas as pdf_canvas

from anticoag.dosing import clinic_tablet_colours
from anticoag.models import WarfarinDose
from patients.models import Patient

#: A letter covers today to the next INR date; without one, this many days.
DEFAULT_LETTER_DAYS = 7
#: …and never more than this many days (a 12-week interval plus a day).
MAX_LETTER_DAYS = 85

#: Colour names (clinic setting) → ReportLab colours; an unknown name is drawn white with its name written.
_COLOUR_ALIASES = {"peach": "peachpuff", "grey": "gray", "purple": "mediumpurple", "orange": "orange"}

WEEKDAY_SHORT = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def tablet_count_words(count: Decimal) -> str:
    """1.5 → "1½", 0.5 → "½", 2 → "2"."""
    whole = int(count)
    half = count % 1 != 0
    return "½" if whole == 0 and half else f"{whole}{'½' if half else ''}"


@dataclass(frozen=True)
class Tablet:
    """Tablets of one strength on a day: ``count`` in halves where allowed (1.5 = one and a half)."""

    strength: str
    count: Decimal
    colour: str = "white"

    @property
    def words(self) -> str:
        amount = tablet_count_words(self.count)
        return f"{amount} × {self.strength} mg ({self.colour})"


@dataclass(frozen=True)
class CalendarDay:
    """One day of a letter: its date, what to do in words, the tablets to draw, and a mark (e.g. "INR test")."""

    day: date
    text: str
    tablets: tuple[Tablet, ...] = ()
    mark: str = ""


@dataclass(frozen=True)
class Letter:
    """A patient letter: heading, lines of text above the calendar, the calendar, lines below, the clinic."""

    title: str
    patient_name: str
    clinic_name: str
    clinic_phone: str
    issued_on: date
    intro: tuple[str, ...]
    days: tuple[CalendarDay, ...]
    closing: tuple[str, ...] = ()
    legend: tuple[tuple[str, str], ...] = field(default_factory=tuple)  # (strength, colour)


def _day_text(dose_mg: str, tablets: Sequence[Tablet]) -> str:
    if not tablets:
        return "No warfarin"
    return f"{dose_mg} mg"


def dated_days(
    *, start: date, end: date, schedule: dict, colours: dict[str, str], hold_doses: int = 0, marks: dict | None = None
) -> list[CalendarDay]:
    """The days from ``start`` to ``end`` (inclusive) of a weekly tablet schedule
    (:meth:`anticoag.tablets.WeeklySchedule.as_dict`), the first ``hold_doses`` days without warfarin."""
    by_weekday = {day["weekday"]: day for day in schedule.get("days", [])}
    marks = marks or {}
    days: list[CalendarDay] = []
    current = start
    while current <= end:
        index = (current - start).days
        if index < hold_doses:
            days.append(CalendarDay(current, "No warfarin (hold)", (), marks.get(current, "")))
        else:
            planned = by_weekday.get(current.weekday(), {"dose_mg": "0", "tablets": []})
            tablets = tuple(
                Tablet(t["strength_mg"], Decimal(t["count"]), colours.get(t["strength_mg"], "white"))
                for t in planned["tablets"]
            )
            days.append(CalendarDay(current, _day_text(planned["dose_mg"], tablets), tablets, marks.get(current, "")))
        current += timedelta(days=1)
    return days


def dosing_letter(*, patient: Patient, dose: WarfarinDose, today: date) -> Letter:
    """The dosing letter of a dose record: today (or the dose's start, if later) to the next INR date."""
    clinic = patient.clinic
    colours = clinic_tablet_colours(clinic)
    start = max(today, dose.starts_on)
    if dose.next_inr_on and dose.next_inr_on >= start:
        end = min(dose.next_inr_on, start + timedelta(days=MAX_LETTER_DAYS - 1))
    else:
        end = start + timedelta(days=DEFAULT_LETTER_DAYS - 1)
    # Hold doses count from the dose's start: those already past by today are not shown again.
    holds_left = max(0, dose.hold_doses - (start - dose.starts_on).days)
    marks = {dose.next_inr_on: "INR test"} if dose.next_inr_on else {}
    days = dated_days(start=start, end=end, schedule=dose.schedule, colours=colours, hold_doses=holds_left, marks=marks)
    used = sorted({t.strength for d in days for t in d.tablets}, key=lambda s: Decimal(s))
    intro = (
        f"Take your warfarin tablets as shown for each day, from {_long(start)}.",
        f"Your dose is {dose.schedule.get('weekly_mg', dose.weekly_dose_mg)} mg a week.",
    )
    closing = []
    if dose.next_inr_on:
        closing.append(f"Next INR test: {_long(dose.next_inr_on)}.")
    closing.append(
        "Bring this letter to your next test. Keep taking your tablets as shown until we tell you otherwise."
    )
    if clinic.phone:
        closing.append(f"Questions? Call the clinic: {clinic.phone}")
    return Letter(
        title="Your warfarin tablets",
        patient_name=patient.full_name,
        clinic_name=clinic.name,
        clinic_phone=clinic.phone,
        issued_on=today,
        intro=intro,
        days=tuple(days),
        closing=tuple(closing),
        legend=tuple((s, colours.get(s, "white")) for s in used),
    )


def _long(day: date) -> str:
    return f"{day:%A} {day.day} {day:%B %Y}"


# ---------------------------------------------------------------------------------------------------------------
# PDF
# ---------------------------------------------------------------------------------------------------------------


def pdf_colour(name: str) -> colors.Color:
    """A colour name from the clinic's settings as a ReportLab colour (white when unknown)."""
    name = _COLOUR_ALIASES.get(name.strip().lower(), name.strip().lower())
    value = getattr(colors, name, None)
    return value if isinstance(value, colors.Color) else colors.white


def draw_tablet(canvas, x: float, y: float, radius: float, colour: str, half: bool = False) -> None:
    """A tablet as a filled circle with a dark outline (a half tablet: the left half only)."""
    canvas.setStrokeColor(colors.black)
    canvas.setLineWidth(0.6)
    canvas.setFillColor(pdf_colour(colour))
    if half:
        path = canvas.beginPath()
        path.moveTo(x, y - radius)
        path.arcTo(x - radius, y - radius, x + radius, y + radius, startAng=270, extent=-180)
        path.close()
        canvas.drawPath(path, stroke=1, fill=1)
    else:
        canvas.circle(x, y, radius, stroke=1, fill=1)


def draw_day_calendar(canvas, days: Sequence[CalendarDay], *, left: float, top: float, width: float, bottom: float):
    """Draw ``days`` as a Monday-first calendar between ``top`` and ``bottom`` (weeks as rows). Returns the
    y of the calendar's bottom edge. Days outside the run are left blank."""
    if not days:
        return top
    first = days[0].day - timedelta(days=days[0].day.weekday())
    last = days[-1].day + timedelta(days=6 - days[-1].day.weekday())
    weeks = ((last - first).days + 1) // 7
    column = width / 7
    header = 6 * mm
    row = min(32 * mm, (top - bottom - header) / max(weeks, 1))
    canvas.setFont("Helvetica-Bold", 9)
    canvas.setFillColor(colors.black)
    for index, name in enumerate(WEEKDAY_SHORT):
        canvas.drawCentredString(left + column * (index + 0.5), top - header + 1.5 * mm, name)
    by_date = {day.day: day for day in days}
    for week in range(weeks):
        y_top = top - header - week * row
        for index in range(7):
            current = first + timedelta(days=week * 7 + index)
            x = left + index * column
            day = by_date.get(current)
            canvas.setStrokeColor(colors.grey)
            canvas.setLineWidth(0.5)
            if day is not None and day.mark:
                canvas.setFillColor(colors.HexColor("#fff4c2"))
                canvas.rect(x, y_top - row, column, row, stroke=1, fill=1)
            else:
                canvas.rect(x, y_top - row, column, row, stroke=1, fill=0)
            if day is None:
                continue
            canvas.setFillColor(colors.black)
            canvas.setFont("Helvetica-Bold", 8)
            canvas.drawString(x + 1.5 * mm, y_top - 4 * mm, f"{current.day} {current:%b}")
            canvas.setFont("Helvetica", 8)
            canvas.drawString(x + 1.5 * mm, y_top - 8 * mm, day.text)
            if day.mark:
                canvas.setFont("Helvetica-Bold", 7.5)
                canvas.drawString(x + 1.5 * mm, y_top - row + 1.5 * mm, day.mark)
            # The tablets: one line per strength, each tablet drawn in its colour.
            radius = min(2.6 * mm, row / 12)
            line_y = y_top - 8 * mm - 2 * radius - 1 * mm
            for tablet in day.tablets:
                whole = int(tablet.count)
                half = tablet.count % 1 != 0
                tx = x + 1.5 * mm + radius
                for _ in range(whole):
                    draw_tablet(canvas, tx, line_y, radius, tablet.colour)
                    tx += 2 * radius + 0.8 * mm
                if half:
                    draw_tablet(canvas, tx, line_y, radius, tablet.colour, half=True)
                    tx += radius + 0.8 * mm
                canvas.setFillColor(colors.black)
                canvas.setFont("Helvetica", 6.5)
                canvas.drawString(tx + 0.5 * mm, line_y - 1 * mm, f"{tablet.strength} mg")
                line_y -= 2 * radius + 1.5 * mm
    return top - header - weeks * row


def letter_pdf(letter: Letter) -> bytes:
    """The letter as a one-page A4 PDF: heading, intro, calendar, tablet legend, closing lines."""
    buffer = io.BytesIO()
    width, height = A4
    margin = 15 * mm
    canvas = pdf_canvas.Canvas(buffer, pagesize=A4, invariant=1)
    canvas.setTitle(letter.title)
    canvas.setAuthor(letter.clinic_name)
    y = height - margin
    canvas.setFont("Helvetica-Bold", 16)
    canvas.drawString(margin, y - 5 * mm, letter.title)
    canvas.setFont("Helvetica", 10)
    canvas.drawRightString(width - margin, y - 5 * mm, letter.clinic_name)
    y -= 12 * mm
    canvas.drawString(margin, y, f"For {letter.patient_name} · {_long(letter.issued_on)}")
    y -= 6 * mm
    for line in letter.intro:
        canvas.drawString(margin, y, line)
        y -= 5 * mm
    y -= 2 * mm
    closing_height = (len(letter.closing) + 2) * 6 * mm + (8 * mm if letter.legend else 0)
    bottom = draw_day_calendar(
        canvas, letter.days, left=margin, top=y, width=width - 2 * margin, bottom=margin + closing_height
    )
    y = bottom - 6 * mm
    if letter.legend:
        canvas.setFont("Helvetica", 9)
        x = margin
        canvas.setFillColor(colors.black)
        canvas.drawString(x, y, "Tablets:")
        x += 16 * mm
        for strength, colour in letter.legend:
            draw_tablet(canvas, x, y + 1.2 * mm, 2.2 * mm, colour)
            canvas.setFillColor(colors.black)
            canvas.drawString(x + 4 * mm, y, f"{strength} mg, {colour}")
            x += 38 * mm
        y -= 8 * mm
    canvas.setFillColor(colors.black)
    for index, line in enumerate(letter.closing):
        canvas.setFont("Helvetica-Bold" if index == 0 else "Helvetica", 11 if index == 0 else 10)
        canvas.drawString(margin, y, line)
        y -= 6 * mm
    canvas.showPage()
    canvas.save()
    return buffer.getvalue()


def dosing_letter_pdf(letter: Letter) -> bytes:
    """The dosing letter as a PDF (see :func:`letter_pdf`)."""
    return letter_pdf(letter)
