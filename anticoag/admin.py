"""Admin for plans: the proposal with its sources, what changed, the confirmations, and a confirm form."""

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

from patients.admin import ClinicScopedAdmin, ClinicScopedStackedInline, ClinicScopedTabularInline, CvtEpisodeAdmin
from patients.clinic_time import RecordTimeZoneAdminMixin, aware_in_clinic_zone, clinic_datetime

from .citations import cite_html
from .models import Agent, Plan, PlanDecision
from .services import plan_confirm


def _source(item: dict) -> str:
    """The item's source as short citations, the full citation on hover (:mod:`anticoag.citations`)."""
    return cite_html(item.get("source") or "")


def render_proposal(proposal: dict) -> str:
    """The proposal as a small HTML table: every line with its source."""
    if not proposal:
        return "—"
    duration = proposal["duration"]
    if duration["indefinite"]:
        span = "Indefinite"
        if duration.get("review_every_months"):
            span += f", review every {duration['review_every_months']} months"
    else:
        high = f"–{duration['max_months']}" if duration.get("max_months") else "+"
        # Pregnant without a delivery date: no end date that could fall before the delivery (rules rev 2).
        end = duration.get("earliest_end_text") or duration["earliest_end_on"]
        span = f"{duration['min_months']}{high} months: earliest end {end}"
        if duration.get("latest_end_on"):
            span += f", latest end {duration['latest_end_on']}"
    rows: list[tuple[str, str, str]] = [
        ("Category", proposal["category"].replace("_", " "), _source(duration)),
        ("Duration", span, _source(duration)),
    ]
    rows += [("Duration note", n["message"], _source(n)) for n in duration.get("notes", [])]
    acute = proposal.get("acute_phase") or {}
    rows.append(("Acute phase", f"{acute.get('agent', '').upper()}: {acute.get('message', '')}", _source(acute)))
    dose = acute.get("dose_suggestion")
    if dose:
        verify = "" if dose.get("verified") else " [verify]"
        rows.append(
            ("Dose suggestion", dose["message"] + ("" if "[verify]" in dose["message"] else verify), _source(dose))
        )
    for option in proposal.get("oral_options", []):
        # The rule's sentence says it all (agent, dose or INR range, eligibility); a summary only without one.
        text = option.get("message") or ""
        if not text and option["agent"] == "warfarin":
            text = f"Warfarin, INR {option['inr_low']}–{option['inr_high']} (target {option['inr_target']})."
        elif not text:
            text = f"{option['agent'].capitalize()} {option.get('dose_mg', '')} mg {option.get('frequency', '')}."
        if option.get("evidence_level"):  # rules revision 2: evidence level beside the source
            text += f" Evidence: {option['evidence_level']}."
        if option.get("verified") is False and "[verify]" not in text:
            text += " [verify]"
        rows.append(("Oral option", text, _source(option)))
    rows += [("Rationale", n["message"], _source(n)) for n in proposal.get("rationale", [])]
    doac = proposal.get("doac_eligible") or {}
    eligible = {True: "yes", False: "no", None: "unknown"}[doac.get("eligible")]
    crcl = proposal.get("creatinine_clearance_ml_min")
    rows.append(("DOAC eligible", f"{eligible} (CrCl {crcl if crcl is not None else 'unknown'} mL/min)", ""))
    rows += [("DOAC", r["message"], _source(r)) for r in doac.get("reasons", [])]
    rows += [(f"⚠ {w['severity']}", f"[{w['code']}] {w['message']}", _source(w)) for w in proposal.get("warnings", [])]
    rows += [
        ("Follow-up", f"{f['kind'].replace('_', ' ')}: due {f['due_on']}", _source(f))
        for f in proposal.get("follow_ups", [])
    ]
    body = format_html_join("", "<tr><th scope='row'>{}</th><td>{}</td><td><small>{}</small></td></tr>", rows)
    return format_html(
        "<table><thead><tr><th>Item</th><th>Proposal</th><th>Source</th></tr></thead><tbody>{}</tbody></table>"
        "<p><small>Rules version {}. Decision support: a clinician confirms.</small></p>",
        body,
        proposal.get("rules_version", ""),
    )


class PlanInline(ClinicScopedStackedInline):
    """The plan, read-only, on the episode page."""

    model = Plan
    can_delete = False
    extra = 0
    max_num = 0
    fields = ["status", "proposal_table", "decision_history", "confirm_link"]
    readonly_fields = fields

    def get_fields(self, request, obj=None):
        # The way to confirm, only for those who may (a clinician); everyone else sees the plan as it is.
        if request.user.has_perm("anticoag.add_plandecision"):
            return self.fields
        return [name for name in self.fields if name != "confirm_link"]

    @admin.display(description="Proposal")
    def proposal_table(self, plan: Plan) -> str:
        return render_proposal(plan.proposal)

    @admin.display(description="Confirmations")
    def decision_history(self, plan: Plan) -> str:
        decisions = plan.decisions.select_related("decided_by").order_by("-decided_at", "-pk")
        if not decisions:
            return "Not confirmed yet."
        return format_html_join(
            "",
            "<p>{} by {}: {}{} (rules {}){}</p>",
            (
                (
                    f"{d.decided_at:%Y-%m-%d %H:%M}",
                    d.decided_by.get_username(),
                    d.get_agent_display(),
                    ", indefinite" if d.indefinite else f", {d.duration_months} months to {d.end_on}",
                    d.rules_version,
                    f" — override ({', '.join(d.overridden)}): {d.override_reason}" if d.overridden else "",
                )
                for d in decisions
            ),
        )

    @admin.display(description="Decision")
    def confirm_link(self, plan: Plan) -> str:
        url = reverse("admin:anticoag_plan_change", args=[plan.pk])
        return format_html('<a class="button" href="{}">Open plan: confirm or override</a>', url)


CvtEpisodeAdmin.inlines = [*CvtEpisodeAdmin.inlines, PlanInline]


class DecisionInline(ClinicScopedTabularInline):
    model = PlanDecision
    extra = 0
    can_delete = False
    fields = ["decided_at", "decided_by", "agent", "indefinite", "duration_months", "end_on", "overridden"]
    fields += ["override_reason", "acknowledged_warnings", "rules_version"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


class ConfirmPlanForm(forms.Form):
    agent = forms.ChoiceField(choices=Agent.choices)
    indefinite = forms.BooleanField(required=False, label="Indefinite anticoagulation")
    duration_months = forms.IntegerField(required=False, min_value=1, max_value=240, label="Duration (months)")
    override_reason = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}))
    acknowledged_warnings = forms.MultipleChoiceField(
        required=False, widget=forms.CheckboxSelectMultiple, label="I have read and weighed these warnings"
    )

    def __init__(self, *args, plan: Plan, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        warnings = plan.warnings_to_acknowledge
        if warnings:
            self.fields["acknowledged_warnings"].choices = [
                (w["code"], format_html("{} ({})", w["message"], cite_html(w["source"]))) for w in warnings
            ]
        else:  # nothing to acknowledge: no heading over an empty list
            del self.fields["acknowledged_warnings"]
        options = [o["agent"] for o in plan.proposal.get("oral_options", [])]
        duration = plan.proposal["duration"]
        self.initial.setdefault("agent", options[0] if options else Agent.LMWH)
        self.initial.setdefault("indefinite", duration["indefinite"])
        self.initial.setdefault("duration_months", duration["min_months"])


@admin.register(Plan)
class PlanAdmin(RecordTimeZoneAdminMixin, ClinicScopedAdmin):
    clinic_path = "episode__patient__clinic"
    list_display = ["episode", "category_display", "status", "rules_version", "computed_at_local"]
    list_filter = ["status", "episode__patient__clinic"]
    list_select_related = ["episode__patient__clinic"]
    mrn_search_path = "episode__patient__mrn"
    search_fields = ["=episode__patient__mrn"]
    show_full_result_count = False
    fields = ["episode", "status", "rules_version", "computed_at", "proposal_table", "changes_table"]
    readonly_fields = fields
    inlines = [DecisionInline]
    change_form_template = "admin/anticoag/plan/change_form.html"

    def has_add_permission(self, request) -> bool:
        return False  # plans are computed from episodes, never typed in

    @admin.display(description="Computed at (clinic time)", ordering="computed_at")
    def computed_at_local(self, plan: Plan) -> str:
        return clinic_datetime(plan.computed_at, plan.episode.patient.clinic)

    @admin.display(description="Category")
    def category_display(self, plan: Plan) -> str:
        return plan.category.replace("_", " ")

    @admin.display(description="Proposal")
    def proposal_table(self, plan: Plan) -> str:
        return render_proposal(plan.proposal)

    @admin.display(description="Changed since the last confirmation")
    def changes_table(self, plan: Plan) -> str:
        if not plan.changes:
            return "—"
        return format_html_join(
            "", "<p><b>{}</b>: {}</p>", ((c["part"], {k: v for k, v in c.items() if k != "part"}) for c in plan.changes)
        )

    def get_urls(self):
        urls = super().get_urls()
        confirm = path(
            "<int:plan_id>/confirm/", self.admin_site.admin_view(self.confirm_view), name="anticoag_plan_confirm"
        )
        return [confirm, *urls]

    def confirm_view(self, request: HttpRequest, plan_id: int):
        plan = get_object_or_404(self.get_queryset(request), pk=plan_id)
        if not request.user.has_perm("anticoag.add_plandecision"):
            raise PermissionDenied(
                "Only a clinician confirms or overrides a plan: the software proposes, a clinician decides. "
                "The plan stays visible to you on its page and on the patient page."
            )
        form = ConfirmPlanForm(request.POST or None, plan=plan)
        if request.method == "POST" and form.is_valid():
            try:
                plan_confirm(plan=plan, user=request.user, **form.cleaned_data)
            except ValidationError as exc:
                for field, errors in exc.message_dict.items():
                    for error in errors:
                        form.add_error(field if field in form.fields else None, error)
            else:
                messages.success(request, "Plan confirmed.")
                # Opened from the patient page: go back there.
                back = request.GET.get("next", "")
                if not url_has_allowed_host_and_scheme(back, {request.get_host()}, request.is_secure()):
                    back = reverse("admin:anticoag_plan_change", args=[plan.pk])
                return HttpResponseRedirect(back)
        context = {
            **self.admin_site.each_context(request),
            "title": "Confirm or override the plan",
            "plan": plan,
            "form": form,
            "proposal_table": render_proposal(plan.proposal),
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/anticoag/plan/confirm.html", context)


# =============================================================================================================
# INR readings and warfarin doses (issue #4). The advice is decision support: shown with its sources and
# [verify] marks, never applied by itself. Saving through the admin announces the reading/dose exactly as
# the API does, so the next INR test and any critical-INR alert follow whichever way a value came in.
# =============================================================================================================

from decimal import Decimal  # noqa: E402

from django.db import transaction  # noqa: E402
from django.utils.http import urlencode  # noqa: E402

from patients.models import Clinic  # noqa: E402
from patients.scoping import clinic_ids_for, scope_to_user_clinics  # noqa: E402

from . import inr as inr_services  # noqa: E402
from .models import InrReading, WarfarinDose  # noqa: E402

#: The one-decimal INR from which critical_inr_alert fires (reference §4: 5.0–9.0 same-day, > 9.0 now).
_CRITICAL_FROM = Decimal("5.0")


def inr_label(value: Decimal) -> str:
    """The INR with its position spelled out, so it reads without colour: "▲ 3.8 (above range)"."""
    shown = f"{value.quantize(Decimal('0.1')) if value == value.quantize(Decimal('0.1')) else value}"
    position = inr_services.inr_position(value)
    if position == "above":
        critical = inr_services.inr_reported(value) >= _CRITICAL_FROM
        return f"▲ {shown} (above range{', critical' if critical else ''})"
    if position == "below":
        return f"▼ {shown} (below range)"
    return f"{shown} (in range)"


def _verify(item: dict | None) -> str:
    return "" if not item or item.get("verified", True) else " [verify]"


def render_inr_advice(advice: dict | None) -> str:
    """The advice for a reading as a small table: every line with its source and [verify] where unchecked."""
    if not advice:
        return "—"
    rule = advice["next_test_rule"]
    when = advice["next_test_on"]
    if advice["next_test_latest_on"] != when:
        when = f"{when} to {advice['next_test_latest_on']}"
    rows: list[tuple[str, str, str]] = [
        ("Next INR test", f"{when}: {rule['situation']}", rule["source"] + _verify(rule))
    ]
    dose_rule = advice.get("dose_rule")
    if advice["dose_change_percent"] is None:
        dose = "No dose suggestion (see the alerts)."
    else:
        change = advice["dose_change_percent"]
        dose = "No change to the weekly dose" if change == 0 else f"Weekly dose {change:+g} %"
        if advice.get("hold_doses"):
            dose += f", after holding {advice['hold_doses']} dose(s)"
        if advice.get("suggested_weekly_dose_mg") is not None:
            dose += f": {advice['suggested_weekly_dose_mg']:g} mg/week (from {advice['weekly_dose_mg']:g} mg)"
    if advice.get("hold_until") == "inr_in_range":
        dose += " Hold warfarin until the INR is back in 2.0–3.0."
    elif advice.get("hold_until") == "clinician_review":
        dose += " Hold warfarin; the clinician decides (bleeding)."
    rows.append(("Dose suggestion", dose, (dose_rule or {}).get("source", "") + _verify(dose_rule)))
    ttr = advice["ttr_percent"]
    rows.append(("Phase", advice["phase"], "reference §4"))
    rows.append(
        (
            "TTR (12 months)",
            "not computable yet" if ttr is None else f"{ttr:.1f} % over {advice['days_total']:g} days",
            "ROSENDAAL1993",
        )
    )
    rows += [
        (f"⚠ {a['severity']}", f"[{a['code']}] {a['message']}", a["source"] + _verify(a)) for a in advice["alerts"]
    ]
    rows = [(item, text, cite_html(source)) for item, text, source in rows]
    body = format_html_join("", "<tr><th scope='row'>{}</th><td>{}</td><td><small>{}</small></td></tr>", rows)
    return format_html(
        "<table><thead><tr><th>Item</th><th>Advice</th><th>Source</th></tr></thead><tbody>{}</tbody></table>"
        "<p><small>As at this reading. Decision support: a suggestion, the clinician decides. "
        "[verify]: the source could not be checked word for word; the value is clinic-configurable.</small></p>",
        body,
    )


class InrRangeFilter(admin.SimpleListFilter):
    """Position against 2.0–3.0 on the one-decimal INR (3.04 is 3.0, in range; 3.05 is 3.1, above)."""

    title = "INR against 2.0–3.0"
    parameter_name = "inr_range"

    def lookups(self, request, model_admin):
        return [
            ("below", "▼ below range"),
            ("in", "in range"),
            ("above", "▲ above range"),
            ("critical", "▲ 5.0 or more"),
        ]

    def queryset(self, request, queryset):
        low, high, critical = Decimal("1.95"), Decimal("3.05"), Decimal("4.95")
        match self.value():
            case "below":
                return queryset.filter(value__lt=low)
            case "in":
                return queryset.filter(value__gte=low, value__lt=high)
            case "above":
                return queryset.filter(value__gte=high)
            case "critical":
                return queryset.filter(value__gte=critical)
        return queryset


class InrImportForm(forms.Form):
    clinic = forms.ModelChoiceField(queryset=Clinic.objects.none())
    file = forms.FileField(
        label="CSV file",
        help_text="Columns mrn, drawn_at, inr, and optionally source, bleeding; a header row; UTF-8; comma or "
        "semicolon separated. drawn_at: 2026-01-05T08:30:00+01:00, or a date. All rows or none are imported.",
    )

    def __init__(self, *args, user, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        ids = clinic_ids_for(user)
        self.fields["clinic"].queryset = Clinic.objects.all() if ids is None else Clinic.objects.filter(pk__in=ids)
        if self.fields["clinic"].queryset.count() == 1:
            self.initial.setdefault("clinic", self.fields["clinic"].queryset.get())


class InrReadingForm(forms.ModelForm):
    """The typed "drawn at" is the wall clock of the patient's clinic, whatever zone the page was in."""

    class Meta:
        model = InrReading
        fields = ["patient", "drawn_at", "value", "source", "bleeding", "note"]

    def clean(self):
        cleaned = super().clean()
        patient = cleaned.get("patient")
        if patient is not None and cleaned.get("drawn_at") is not None:
            cleaned["drawn_at"] = aware_in_clinic_zone(cleaned["drawn_at"], patient.clinic)
        return cleaned


@admin.register(InrReading)
class InrReadingAdmin(RecordTimeZoneAdminMixin, ClinicScopedAdmin):
    clinic_path = "patient__clinic"
    form = InrReadingForm
    list_display = ["patient", "drawn_at_local", "inr_display", "bleeding", "source", "entered_by"]
    list_filter = ["patient__clinic", InrRangeFilter, "bleeding", "source"]
    list_select_related = ["patient__clinic", "entered_by"]
    mrn_search_path = "patient__mrn"
    search_fields = ["=patient__mrn"]
    search_help_text = "Exact MRN."
    date_hierarchy = "drawn_at"
    show_full_result_count = False
    list_per_page = 100
    autocomplete_fields = ["patient"]
    fields = ["patient", "drawn_at", "value", "source", "bleeding", "note", "entered_by", "created_at", "advice"]
    readonly_fields = ["entered_by", "created_at", "advice"]
    change_list_template = "admin/anticoag/inrreading/change_list.html"

    @admin.display(description="Drawn at (clinic time)", ordering="drawn_at")
    def drawn_at_local(self, reading: InrReading) -> str:
        return clinic_datetime(reading.drawn_at, reading.patient.clinic)

    @admin.display(description="INR", ordering="value")
    def inr_display(self, reading: InrReading) -> str:
        position = inr_services.inr_position(reading.value)
        colour = {"above": "#ba2121", "below": "#205067"}.get(position)
        label = inr_label(reading.value)
        if colour is None:
            return label
        return format_html('<strong style="color: {}">{}</strong>', colour, label)

    @admin.display(description="Advice (as at this reading)")
    def advice(self, reading: InrReading) -> str:
        if reading.pk is None:
            return "Shown once the reading is saved."
        advice = inr_services.inr_advice_for_patient(patient=reading.patient, as_of=reading.drawn_at)
        dose_url = (
            reverse("admin:anticoag_warfarindose_add")
            + "?"
            + urlencode({"patient": reading.patient_id, "inr_reading": reading.pk})
        )
        return format_html(
            '{}<p><a class="button" href="{}">Record the dose given for this INR</a></p>',
            render_inr_advice(advice),
            dose_url,
        )

    def save_model(self, request, obj: InrReading, form, change: bool) -> None:
        if not change or obj.entered_by_id is None:
            obj.entered_by = request.user
        with transaction.atomic():
            super().save_model(request, obj, form, change)
            inr_services.inr_readings_recorded(patient=obj.patient, readings=[obj])

    def get_urls(self):
        urls = super().get_urls()
        view = self.admin_site.admin_view(self.import_view)
        return [path("import-csv/", view, name="anticoag_inrreading_import"), *urls]

    def import_view(self, request: HttpRequest):
        if not self.has_add_permission(request):
            raise PermissionDenied("Your role does not allow importing INR readings.")
        form = InrImportForm(request.POST or None, request.FILES or None, user=request.user)
        errors: list[dict] = []
        if request.method == "POST" and form.is_valid():
            result = inr_import_start(
                clinic=form.cleaned_data["clinic"], file=form.cleaned_data["file"], entered_by=request.user
            )
            if isinstance(result, ImportStarted):
                messages.info(
                    request,
                    f"{result.job.rows_total:,} rows: the import runs in the background. This page shows its "
                    "progress and then its result (reload it).",
                )
                return HttpResponseRedirect(reverse("admin:anticoag_inrimport_change", args=[result.job.pk]))
            if result.ok:
                messages.success(request, f"Imported {result.imported} INR readings for {result.patients} patient(s).")
                return HttpResponseRedirect(reverse("admin:anticoag_inrreading_changelist"))
            errors = result.errors
            messages.error(request, f"Nothing was imported: {len(errors)} problem(s). Correct the file and try again.")
        context = {
            **self.admin_site.each_context(request),
            "title": "Import INR readings from CSV",
            "form": form,
            "errors": errors,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/anticoag/inrreading/import.html", context)


class WarfarinDoseForm(forms.ModelForm):
    class Meta:
        model = WarfarinDose
        fields = [
            "patient",
            "inr_reading",
            "starts_on",
            "weekly_dose_mg",
            "tablet_strength_mg",
            "hold_doses",
            "suggested_weekly_dose_mg",
            "next_inr_on",
            "note",
            "change_reason",
        ]

    def clean(self):
        cleaned = super().clean()
        reading, patient = cleaned.get("inr_reading"), cleaned.get("patient")
        if reading is not None and patient is not None and reading.patient_id != patient.pk:
            self.add_error("inr_reading", "This INR reading belongs to another patient.")
        # Reference §4 (rev 2): every dose that departs from the suggestion needs a reason.
        weekly, suggested = cleaned.get("weekly_dose_mg"), cleaned.get("suggested_weekly_dose_mg")
        if (
            weekly is not None
            and suggested is not None
            and weekly.quantize(Decimal("0.1")) != suggested.quantize(Decimal("0.1"))
            and not (cleaned.get("change_reason") or "").strip()
        ):
            if (cleaned.get("note") or "").strip():
                cleaned["change_reason"] = cleaned["note"].strip()  # the note says why
            else:
                self.add_error("change_reason", "Give a reason for departing from the suggested weekly dose.")
        return cleaned


@admin.register(WarfarinDose)
class WarfarinDoseAdmin(ClinicScopedAdmin):
    form = WarfarinDoseForm
    clinic_path = "patient__clinic"
    list_display = [
        "patient",
        "starts_on",
        "weekly_dose_mg",
        "suggested_weekly_dose_mg",
        "followed_suggestion",
        "hold_doses",
        "next_inr_on",
        "decided_by",
    ]
    list_filter = ["patient__clinic", "followed_suggestion"]
    list_select_related = ["patient", "decided_by"]
    mrn_search_path = "patient__mrn"
    search_fields = ["=patient__mrn"]
    search_help_text = "Exact MRN."
    show_full_result_count = False
    autocomplete_fields = ["patient", "inr_reading"]
    fields = [
        "patient",
        "inr_reading",
        "starts_on",
        ("weekly_dose_mg", "tablet_strength_mg"),
        "hold_doses",
        "suggested_weekly_dose_mg",
        "followed_suggestion",
        "next_inr_on",
        "note",
        "change_reason",
        "schedule",
        "beyond_guardrail",
        "decided_by",
        "created_at",
    ]
    readonly_fields = ["followed_suggestion", "schedule", "beyond_guardrail", "decided_by", "created_at"]

    def get_changeform_initial_data(self, request: HttpRequest) -> dict:
        """Opened from a reading: pre-fill the suggestion and the next test date from its advice."""
        initial = super().get_changeform_initial_data(request)
        reading_id = str(initial.get("inr_reading", ""))
        if not reading_id.isdigit():
            return initial
        readings = scope_to_user_clinics(
            InrReading.objects.select_related("patient__clinic"), request.user, "patient__clinic"
        )
        reading = readings.filter(pk=int(reading_id)).first()
        if reading is None:
            return initial
        advice = inr_services.inr_advice_for_patient(patient=reading.patient, as_of=reading.drawn_at) or {}
        zone = inr_services.clinic_zone(reading.patient.clinic)
        initial.setdefault("patient", reading.patient_id)
        initial.setdefault("starts_on", reading.drawn_at.astimezone(zone).date())
        if advice.get("suggested_weekly_dose_mg") is not None:
            initial.setdefault("suggested_weekly_dose_mg", advice["suggested_weekly_dose_mg"])
            initial.setdefault("weekly_dose_mg", advice["suggested_weekly_dose_mg"])
        if advice.get("hold_doses"):
            initial.setdefault("hold_doses", advice["hold_doses"])
        if advice.get("next_test_on"):
            initial.setdefault("next_inr_on", advice["next_test_on"])
        return initial

    def save_model(self, request, obj: WarfarinDose, form, change: bool) -> None:
        if not change or obj.decided_by_id is None:
            obj.decided_by = request.user
        inr_services.warfarin_dose_saved(dose=obj)


from . import procedure_admin  # noqa: E402,F401  (§8 procedures: own module)

# =============================================================================================================
# Background INR imports (issue 13): progress, then the result, of an import too large for one request.
# =============================================================================================================
from .imports import ImportStarted, inr_import_start  # noqa: E402
from .models import InrImport  # noqa: E402


@admin.register(InrImport)
class InrImportAdmin(ClinicScopedAdmin):
    """Read-only: started from "Import CSV" on the INR readings list. Seen by whoever may import readings."""

    list_display = ["pk", "created_at", "clinic", "file_name", "phase", "progress", "imported", "uploaded_by"]
    list_filter = ["phase", "clinic"]
    list_select_related = ["clinic", "uploaded_by"]
    fields = ["clinic", "file_name", "uploaded_by", "phase", "progress", "imported", "patients", "refused_rows"]
    fields += ["created_at", "started_at", "finished_at"]
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest):
        return super().get_queryset(request).defer("content")

    @admin.display(description="Progress")
    def progress(self, job: InrImport) -> str:
        if job.finished:
            return f"{job.rows_total:,} rows: {job.get_phase_display().lower()}"
        return f"{job.get_phase_display()}: {job.rows_done:,} of {job.rows_total:,} rows"

    @admin.display(description="Refused rows")
    def refused_rows(self, job: InrImport) -> str:
        if not job.errors:
            return "—"
        return format_html_join(
            "", "<p>Row {}, {}: {}</p>", ((e.get("row") or "—", e.get("field"), e.get("message")) for e in job.errors)
        )

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        return request.user.has_perm("anticoag.add_inrreading")

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False
