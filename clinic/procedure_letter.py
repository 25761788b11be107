"""The patient's procedure letter (reference §8): a printable page and a PDF (ReportLab) of the confirmed plan.

Dated days "take" / "don't take", the INR check (warfarin) and the restart; the clinic's name for questions. It
carries no diagnosis, no risk category and no warnings meant for clinicians: the letter leaves the clinic with
the patient. Only a *confirmed* plan has a letter (the software proposes, a clinician confirms); staff see the
letters of their own clinics' patients only (another clinic's procedure is a 404).
"""

from __future__ import annotations

import io
from datetime import date
from typing import Any

from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse

from anticoag.procedure_models import Procedure
from patients.scoping import scope_to_user_clinics

NOT_CONFIRMED = "This procedure plan has not been confirmed by a clinician yet: there is no letter to print."


def letter_date(value: date | str) -> str:
    """A date as the patient reads it: "Monday 1 March 2027"."""
    on = date.fromisoformat(value) if isinstance(value, str) else value
    return f"{on:%A} {on.day} {on:%B %Y}"


def procedure_letter_content(*, procedure: Procedure) -> dict[str, Any]:
    """What the letter says, from the confirmed plan: one row per date, and the INR check and restart lines."""
    plan = procedure.confirmed_plan
    drug = procedure.get_agent_display()
    rows = []
    for day in plan["calendar"]:
        rows.append(
            {
                "date": letter_date(day["date"]),
                "iso": day["date"],
                "take": day["take"],
                "tablets": "TAKE" if day["take"] else "DON'T TAKE",
                "what": day["what"],
                "also": "; ".join(day["events"]),
            }
        )
    inr = plan.get("inr_check_on")
    return {
        "clinic": procedure.patient.clinic.name,
        "patient_name": procedure.patient.full_name,
        "mrn": procedure.patient.mrn,
        "procedure": procedure.get_kind_display(),
        "procedure_on": letter_date(procedure.scheduled_on),
        "drug": drug,
        "last_dose": f"Your last dose of {drug} before the procedure: {letter_date(plan['last_dose_on'])}.",
        "inr_check": (
            f"INR blood test: {letter_date(inr)}, the day before the procedure. Bring this letter." if inr else ""
        ),
        "restart": f"Start {drug} again on {letter_date(plan['restart_on'])}: {plan['restart_dose']}"
        + (" (in the evening, after the procedure)." if plan["restart_on"] == plan["procedure_on"] else "."),
        "rows": rows,
    }


def _confirmed_procedure(request: HttpRequest, procedure_id: int) -> Procedure:
    if not request.user.has_perm("anticoag.view_procedure"):
        raise PermissionDenied
    procedures = scope_to_user_clinics(
        Procedure.objects.select_related("patient__clinic"), request.user, "patient__clinic"
    )
    procedure = get_object_or_404(procedures, pk=procedure_id)
    if not procedure.confirmed_plan or procedure.status == "cancelled":
        raise Http404(NOT_CONFIRMED)
    return procedure


@staff_member_required
def procedure_letter(request: HttpRequest, procedure_id: int) -> HttpResponse:
    """The printable letter (the browser prints it; the stylesheet hides nothing but the print button)."""
    procedure = _confirmed_procedure(request, procedure_id)
    context = {"letter": procedure_letter_content(procedure=procedure), "procedure": procedure}
    response = TemplateResponse(request, "clinic/procedures/letter.html", context)
    response["Cache-Control"] = "no-store"
    return response


def procedure_letter_pdf_bytes(*, procedure: Procedure) -> bytes:
    """The letter as a PDF (A4), drawn with ReportLab."""
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.lib.units import mm
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    letter = procedure_letter_content(procedure=procedure)
    styles = getSampleStyleSheet()
    buffer = io.BytesIO()
    doc = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=18 * mm,
        rightMargin=18 * mm,
        topMargin=16 * mm,
        bottomMargin=16 * mm,
        title="Your anticoagulant around your procedure",
        author=letter["clinic"],
    )
    cell = styles["BodyText"]
    story = [
        Paragraph(letter["clinic"], styles["Heading2"]),
        Paragraph(f"{letter['patient_name']} · MRN {letter['mrn']}", styles["Normal"]),
        Spacer(1, 4 * mm),
        Paragraph("Your anticoagulant around your procedure", styles["Title"]),
        Paragraph(f"{letter['procedure']} on <b>{letter['procedure_on']}</b>.", styles["Normal"]),
        Paragraph(letter["last_dose"], styles["Normal"]),
    ]
    if letter["inr_check"]:
        story.append(Paragraph(f"<b>{letter['inr_check']}</b>", styles["Normal"]))
    story += [Paragraph(f"<b>{letter['restart']}</b>", styles["Normal"]), Spacer(1, 5 * mm)]
    data = [["Date", letter["drug"], "What to do", "Also that day"]]
    data += [
        [Paragraph(row["date"], cell), row["tablets"], Paragraph(row["what"], cell), Paragraph(row["also"], cell)]
        for row in letter["rows"]
    ]
    table = Table(data, colWidths=[50 * mm, 28 * mm, 62 * mm, 34 * mm], repeatRows=1)
    style = [
        ("FONT", (0, 0), (-1, 0), "Helvetica-Bold"),
        ("GRID", (0, 0), (-1, -1), 0.5, colors.grey),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e8eef2")),
    ]
    for index, row in enumerate(letter["rows"], start=1):
        style.append(("FONT", (1, index), (1, index), "Helvetica-Bold"))
        if not row["take"]:
            style.append(("BACKGROUND", (0, index), (-1, index), colors.HexColor("#fbeaea")))
    table.setStyle(TableStyle(style))
    story += [
        table,
        Spacer(1, 6 * mm),
        Paragraph(
            f"If you have questions, or if the date of your procedure changes, contact {letter['clinic']} before "
            "you change anything.",
            styles["Normal"],
        ),
    ]
    doc.build(story)
    return buffer.getvalue()


@staff_member_required
def procedure_letter_pdf(request: HttpRequest, procedure_id: int) -> HttpResponse:
    procedure = _confirmed_procedure(request, procedure_id)
    response = HttpResponse(procedure_letter_pdf_bytes(procedure=procedure), content_type="application/pdf")
    response["Content-Disposition"] = f'inline; filename="procedure-letter-{procedure.pk}.pdf"'
    response["Cache-Control"] = "no-store"
    return response
