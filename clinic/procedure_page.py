"""The patient page's "Procedures" section: upcoming and recent procedures with their dated plans.

One context function (called by one line of the patient page's view) and one include template
(``clinic/procedures/_patient_page.html``). Two queries, whatever the patient's history.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Prefetch
from django.http import HttpRequest
from django.urls import reverse
from django.utils.http import urlencode

from anticoag.procedure_admin import render_procedure_plan
from anticoag.procedure_models import Procedure, ProcedureDecision
from patients.models import Patient

#: The page shows at most this many procedures, newest date first (the rest: "all procedures" link).
PROCEDURES_SHOWN = 5


def procedure_patient_page_context(*, request: HttpRequest, patient: Patient) -> dict[str, Any]:
    decisions = Prefetch(
        "decisions", queryset=ProcedureDecision.objects.select_related("decided_by").order_by("-decided_at", "-pk")
    )
    procedures = list(
        Procedure.objects.filter(patient=patient)
        .prefetch_related(decisions)
        .order_by("-scheduled_on", "-pk")[:PROCEDURES_SHOWN]
    )
    can_confirm = request.user.has_perm("anticoag.add_proceduredecision")
    here = reverse("admin:patients_patient_change", args=[patient.pk]) + "#procedures"
    rows = []
    for procedure in procedures:
        decisions_ = list(procedure.decisions.all())
        plan = procedure.confirmed_plan or procedure.proposal
        row: dict[str, Any] = {
            "procedure": procedure,
            "decision": decisions_[0] if decisions_ else None,
            "plan_table": render_procedure_plan(plan),
            "cautions": [w for w in plan.get("warnings", []) if w["severity"] == "caution"],
            "url": reverse("admin:anticoag_procedure_change", args=[procedure.pk]),
        }
        if can_confirm and procedure.status != "cancelled":
            row["confirm_url"] = (
                reverse("admin:anticoag_procedure_confirm", args=[procedure.pk]) + "?" + urlencode({"next": here})
            )
        if procedure.confirmed_plan and procedure.status != "cancelled":
            row["letter_url"] = reverse("clinic-procedure-letter", args=[procedure.pk])
            row["letter_pdf_url"] = reverse("clinic-procedure-letter-pdf", args=[procedure.pk])
        rows.append(row)
    add_url = None
    if request.user.has_perm("anticoag.add_procedure"):
        add_url = reverse("admin:anticoag_procedure_add") + "?" + urlencode({"patient": patient.pk})
    return {
        "rows": rows,
        "add_url": add_url,
        "list_url": reverse("admin:anticoag_procedure_changelist") + "?" + urlencode({"q": patient.mrn}),
    }
