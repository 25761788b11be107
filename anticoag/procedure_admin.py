"""Admin for procedures (reference §8): record one, see the dated proposal with its sources, confirm or change it.

Saving a procedure proposes its plan (:func:`anticoag.procedure_services.procedure_propose`); the planner's
refusals are form errors beside the field. Confirming is a clinician's act (``anticoag.add_proceduredecision``):
nurses see the plan but no confirm button, and the confirm page answers them 403.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import url_has_allowed_host_and_scheme

from patients.admin import ClinicScopedAdmin, ClinicScopedTabularInline
from patients.models import Patient
from patients.scoping import scope_to_user_clinics

from .procedure_models import Procedure, ProcedureAgent, ProcedureDecision
from .procedure_services import procedure_confirm, procedure_propose, procedure_validate


def render_procedure_plan(plan: dict) -> str:
    """The dated plan as a table: every day with take / don't take, its events and its source; then warnings."""
    if not plan:
        return "—"
    days = format_html_join(
        "",
        "<tr class='{}'><th scope='row'>{} {}</th><td>{}</td><td>{}</td><td>{}</td><td><small>{}</small></td></tr>",
        (
            (
                "procedure-take" if d["take"] else "procedure-skip",
                d["weekday"],
                d["date"],
                "✓ take" if d["take"] else "✗ don't take",
                d["what"],
                "; ".join(d["events"]),
                d["source"],
            )
            for d in plan["calendar"]
        ),
    )
    warnings = format_html_join(
        "",
        "<li class='procedure-warning-{}'><strong>{}</strong> [{}] {} <small>({}){}</small></li>",
        (
            (
                w["severity"],
                w["severity"].upper(),
                w["code"],
                w["message"],
                w["source"],
                "" if w.get("verified", True) else ", unverified",
            )
            for w in plan["warnings"]
        ),
    )
    inr = f"INR check on {plan['inr_check_on']}" if plan.get("inr_check_on") else "no INR check"
    summary = (
        f"{plan['agent'].capitalize()}, {plan['bleed_risk']} bleed risk ({plan['row']}): last dose "
        f"{plan['last_dose_on']}, {plan['days_without']} day(s) without before the procedure, {inr}, restart "
        f"{plan['restart_on']} with {plan['restart_dose']}."
    )
    return format_html(
        "<p class='procedure-summary'>{}</p><p><small>Source: {}. {} months since the CVT diagnosis; category "
        "{}; CrCl {}.</small></p>"
        "<table class='procedure-calendar'><thead><tr><th>Date</th><th>Tablets</th><th>What</th><th>Also</th>"
        "<th>Source</th></tr></thead><tbody>{}</tbody></table><ul class='procedure-warnings'>{}</ul>"
        "<p><small>Decision support (rules {}): a clinician confirms. [verify]: the source could not be checked word "
        "for word.</small></p>",
        summary,
        plan["source"],
        f"{plan['months_since_diagnosis']:.1f}",
        plan["category"].replace("_", " "),
        f"{plan['crcl_ml_min']:g} mL/min" if plan["crcl_ml_min"] is not None else "not known",
        days,
        warnings,
        plan["rules_version"],
    )


class ProcedureForm(forms.ModelForm):
    class Meta:
        model = Procedure
        fields = ["patient", "scheduled_on", "kind", "bleed_risk", "agent", "requested_by", "status"]
        widgets = {"scheduled_on": forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")}

    def _post_clean(self) -> None:
        super()._post_clean()
        if self.errors:
            return
        # The planner's refusals (no episode before the date, "low" for a lumbar puncture, dabigatran without CrCl)
        # are form errors beside their field, before anything is written.
        try:
            procedure_validate(procedure=self.instance)
        except ValidationError as exc:
            self._update_errors(exc)


class ProcedureDecisionInline(ClinicScopedTabularInline):
    model = ProcedureDecision
    extra = 0
    can_delete = False
    fields = ["decided_at", "decided_by", "skip_days", "restart_after", "inr_check", "changed", "change_reason"]
    fields += ["acknowledged_warnings"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


class ConfirmProcedureForm(forms.Form):
    skip_days = forms.IntegerField(min_value=0, max_value=14, label="Days without before the procedure")
    restart_after = forms.IntegerField(
        min_value=0, max_value=14, label="Restart, days after the procedure", help_text="0: the evening of the day."
    )
    inr_check = forms.BooleanField(required=False, label="INR check the day before")
    change_reason = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 3}), label="Reason for a change"
    )
    acknowledged_warnings = forms.MultipleChoiceField(
        required=False, widget=forms.CheckboxSelectMultiple, label="I have read and weighed these warnings"
    )

    def __init__(self, *args, procedure: Procedure, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["acknowledged_warnings"].choices = [
            (w["code"], f"{w['message']} ({w['source']})") for w in procedure.warnings_to_acknowledge
        ]
        proposed = procedure.proposal["proposed_intervals"]
        for name, value in proposed.items():
            self.initial.setdefault(name, value)


@admin.register(Procedure)
class ProcedureAdmin(ClinicScopedAdmin):
    form = ProcedureForm
    clinic_path = "patient__clinic"
    list_display = ["patient", "scheduled_on", "kind", "bleed_risk", "agent", "status", "plan_status"]
    list_filter = ["status", "plan_status", "kind", "patient__clinic"]
    list_select_related = ["patient"]
    mrn_search_path = "patient__mrn"
    search_fields = ["=patient__mrn"]
    search_help_text = "Exact MRN."
    date_hierarchy = "scheduled_on"
    autocomplete_fields = ["patient"]
    inlines = [ProcedureDecisionInline]
    readonly_fields = ["plan_status", "plan_table", "changes", "recorded_by"]
    change_form_template = "admin/anticoag/procedure/change_form.html"

    def get_fieldsets(self, request, obj=None):
        main = ["patient", "scheduled_on", "kind", "bleed_risk", "agent", "requested_by", "status"]
        if obj is None:
            return [(None, {"fields": main})]
        return [(None, {"fields": main}), ("Plan", {"fields": ["plan_status", "plan_table", "changes", "recorded_by"]})]

    @admin.display(description="Plan (confirmed, else proposed)")
    def plan_table(self, procedure: Procedure) -> str:
        return render_procedure_plan(procedure.confirmed_plan or procedure.proposal)

    def get_changeform_initial_data(self, request: HttpRequest) -> dict:
        """Opened from the patient page (``?patient=``): the anticoagulant of the patient's confirmed plan."""
        initial = super().get_changeform_initial_data(request)
        patient_id = str(initial.get("patient", ""))
        if patient_id.isdigit():
            patients = scope_to_user_clinics(Patient.objects.all(), request.user, "clinic")
            patient = patients.filter(pk=int(patient_id)).first()
            if patient is not None:
                from .models import PlanDecision

                decision = (
                    PlanDecision.objects.filter(plan__episode__patient=patient).order_by("-decided_at", "-pk").first()
                )
                if decision is not None and decision.agent in ProcedureAgent.values:
                    initial.setdefault("agent", decision.agent)
        return initial

    def save_model(self, request, obj: Procedure, form, change: bool) -> None:
        if not change:
            obj.recorded_by = request.user
        procedure_propose(procedure=obj)

    def get_urls(self):
        confirm = path(
            "<int:procedure_id>/confirm/",
            self.admin_site.admin_view(self.confirm_view),
            name="anticoag_procedure_confirm",
        )
        return [confirm, *super().get_urls()]

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None and request.user.has_perm("anticoag.add_proceduredecision") and obj.status != "cancelled":
            context["procedure_confirm_url"] = reverse("admin:anticoag_procedure_confirm", args=[obj.pk])
        return super().render_change_form(request, context, add=add, change=change, form_url=form_url, obj=obj)

    def confirm_view(self, request: HttpRequest, procedure_id: int):
        procedure = get_object_or_404(self.get_queryset(request).select_related("patient"), pk=procedure_id)
        if not request.user.has_perm("anticoag.add_proceduredecision"):
            raise PermissionDenied
        form = ConfirmProcedureForm(request.POST or None, procedure=procedure)
        if request.method == "POST" and form.is_valid():
            try:
                procedure_confirm(procedure=procedure, user=request.user, **form.cleaned_data)
            except ValidationError as exc:
                for field, errors in exc.message_dict.items():
                    for error in errors:
                        form.add_error(field if field in form.fields else None, error)
            else:
                messages.success(request, "Procedure plan confirmed; its follow-ups are scheduled.")
                back = request.GET.get("next", "")
                if not url_has_allowed_host_and_scheme(back, {request.get_host()}, request.is_secure()):
                    back = reverse("admin:anticoag_procedure_change", args=[procedure.pk])
                return HttpResponseRedirect(back)
        context = {
            **self.admin_site.each_context(request),
            "title": "Confirm or change the procedure plan",
            "procedure": procedure,
            "form": form,
            "plan_table": render_procedure_plan(procedure.proposal),
            "opts": self.model._meta,
        }
        response = TemplateResponse(request, "admin/anticoag/procedure/confirm.html", context)
        response["Cache-Control"] = "no-store"
        return response
