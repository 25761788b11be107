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

from patients.admin import ClinicScopedAdmin, CvtEpisodeAdmin

from .models import Agent, Plan, PlanDecision
from .services import plan_confirm


def _source(item: dict) -> str:
    return item.get("source") or ""


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
        span = f"{duration['min_months']}{high} months: earliest end {duration['earliest_end_on']}"
        if duration.get("latest_end_on"):
            span += f", latest end {duration['latest_end_on']}"
    rows: list[tuple[str, str, str]] = [
        ("Category", proposal["category"].replace("_", " "), _source(duration)),
        ("Duration", span, _source(duration)),
    ]
    rows += [("Duration note", n["message"], _source(n)) for n in duration.get("notes", [])]
    acute = proposal.get("acute_phase") or {}
    rows.append(("Acute phase", f"{acute.get('agent', '').upper()}: {acute.get('message', '')}", _source(acute)))
    for option in proposal.get("oral_options", []):
        if option["agent"] == "warfarin":
            text = f"Warfarin, INR {option['inr_low']}–{option['inr_high']} (target {option['inr_target']})"
        else:
            text = f"{option['agent'].capitalize()} {option.get('dose_mg', '')} mg {option.get('frequency', '')}"
            if option.get("eligible") is None:
                text += " — eligibility unknown"
        rows.append(("Oral option", f"{text}. {option.get('message', '')}", _source(option)))
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


class PlanInline(admin.StackedInline):
    """The plan, read-only, on the episode page."""

    model = Plan
    can_delete = False
    extra = 0
    max_num = 0
    fields = ["status", "proposal_table", "confirm_link"]
    readonly_fields = fields

    @admin.display(description="Proposal")
    def proposal_table(self, plan: Plan) -> str:
        return render_proposal(plan.proposal)

    @admin.display(description="")
    def confirm_link(self, plan: Plan) -> str:
        url = reverse("admin:anticoag_plan_change", args=[plan.pk])
        return format_html('<a class="button" href="{}">Open plan: confirm or override</a>', url)


CvtEpisodeAdmin.inlines = [*CvtEpisodeAdmin.inlines, PlanInline]


class DecisionInline(admin.TabularInline):
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
        self.fields["acknowledged_warnings"].choices = [
            (w["code"], f"{w['message']} ({w['source']})") for w in plan.warnings_to_acknowledge
        ]
        options = [o["agent"] for o in plan.proposal.get("oral_options", [])]
        duration = plan.proposal["duration"]
        self.initial.setdefault("agent", options[0] if options else Agent.LMWH)
        self.initial.setdefault("indefinite", duration["indefinite"])
        self.initial.setdefault("duration_months", duration["min_months"])


@admin.register(Plan)
class PlanAdmin(ClinicScopedAdmin):
    clinic_path = "episode__patient__clinic"
    list_display = ["episode", "category_display", "status", "rules_version", "computed_at"]
    list_filter = ["status", "episode__patient__clinic"]
    list_select_related = ["episode__patient"]
    search_fields = ["=episode__patient__mrn"]
    show_full_result_count = False
    fields = ["episode", "status", "rules_version", "computed_at", "proposal_table", "changes_table"]
    readonly_fields = fields
    inlines = [DecisionInline]
    change_form_template = "admin/anticoag/plan/change_form.html"

    def has_add_permission(self, request) -> bool:
        return False  # plans are computed from episodes, never typed in

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
            raise PermissionDenied
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
                return HttpResponseRedirect(reverse("admin:anticoag_plan_change", args=[plan.pk]))
        context = {
            **self.admin_site.each_context(request),
            "title": "Confirm or override the plan",
            "plan": plan,
            "form": form,
            "proposal_table": render_proposal(plan.proposal),
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/anticoag/plan/confirm.html", context)
