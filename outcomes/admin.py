"""Admin for outcome reviews, recanalization per sinus and clinical events, the patient page's outcome
section (its form posts here), and the clinic's quality report (``clinicalevent/quality-report/``).

Scoped to the user's clinics like every clinical admin (``ClinicScopedAdmin``, through ``patient__clinic``).
Saving goes through the services, so a review completes its follow-up and a major bleed raises its alert
whichever way it was entered.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from anticoag.inr import clinic_today
from patients.admin import ClinicScopedAdmin
from patients.models import Clinic, Patient
from patients.scoping import clinic_ids_for, scope_to_user_clinics

from . import patient_page, report_views
from .forms import ClinicalEventAdminForm, OutcomeAssessmentAdminForm
from .models import ClinicalEvent, OutcomeAssessment, SinusRecanalization
from .services import event_record, outcome_assessment_store


def _errors_to_form(form, exc: ValidationError) -> None:
    for name, msgs in exc.message_dict.items():
        for message in msgs:
            form.add_error(name if name in form.fields else None, message)


@admin.register(OutcomeAssessment)
class OutcomeAssessmentAdmin(ClinicScopedAdmin):
    """Outcome reviews (mRS at 3, 6 and 12 months, reference §7)."""

    form = OutcomeAssessmentAdminForm
    clinic_path = "patient__clinic"
    list_display = ["patient", "timepoint", "assessed_on", "mrs_with_words", "seizures_since_last_review"]
    list_select_related = ["patient"]
    list_filter = ["timepoint", "mrs", ("patient__clinic", admin.RelatedOnlyFieldListFilter)]
    mrn_search_path = "patient__mrn"
    search_fields = ["=patient__mrn"]
    autocomplete_fields = ["patient"]
    raw_id_fields = ["episode"]
    date_hierarchy = "assessed_on"
    readonly_fields = ["follow_up", "entered_by", "created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["patient", "episode", "timepoint", "assessed_on", "mrs"]}),
        (
            "Optional findings",
            {"fields": ["seizures_since_last_review", "hit6_total", "papilledema", "visual_fields", "back_to_work"]},
        ),
        (None, {"fields": ["note", "follow_up", "entered_by", "created_at", "updated_at"]}),
    ]

    @admin.display(description="mRS", ordering="mrs")
    def mrs_with_words(self, obj: OutcomeAssessment) -> str:
        return f"{obj.mrs} — {obj.mrs_words}"

    def save_model(self, request, obj, form, change) -> None:
        outcome_assessment_store(assessment=obj, user=request.user)

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path(
                "record/<int:patient_id>/",
                wrap(self.record_view),
                name="outcomes_outcomeassessment_record",
            ),
            *super().get_urls(),
        ]

    def record_view(self, request: HttpRequest, patient_id: int):
        """The patient page's review form posts here; errors show on the patient page beside their fields."""
        patients = scope_to_user_clinics(Patient.objects.select_related("clinic"), request.user, "clinic")
        patient = get_object_or_404(patients, pk=patient_id)
        page_url = reverse("admin:patients_patient_change", args=[patient.pk]) + "#outcomes"
        if request.method != "POST":
            return HttpResponseRedirect(page_url)
        if not request.user.has_perm("outcomes.add_outcomeassessment"):
            raise PermissionDenied
        form, assessment = patient_page.record_review(request=request, patient=patient)
        if assessment is None:
            messages.error(request, "The outcome review was not recorded: see the form below.")
            request.method = "GET"
            patient_admin = self.admin_site._registry[Patient]
            return patient_admin.change_view(request, str(patient.pk), extra_context={"outcome_form": form})
        messages.success(
            request,
            f"Outcome review at {assessment.get_timepoint_display()} recorded: mRS {assessment.mrs} "
            f"({assessment.mrs_words}).",
        )
        return HttpResponseRedirect(page_url)


@admin.register(SinusRecanalization)
class SinusRecanalizationAdmin(ClinicScopedAdmin):
    """Recanalization grade of each sinus at a venous imaging (corrections; recording is on the scan)."""

    clinic_path = "follow_up__patient__clinic"
    list_display = ["follow_up", "sinus", "grade"]
    list_select_related = ["follow_up__patient"]
    list_filter = ["grade", "sinus"]
    mrn_search_path = "follow_up__patient__mrn"
    search_fields = ["=follow_up__patient__mrn"]
    raw_id_fields = ["follow_up"]

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "follow_up":
            kwargs["queryset"] = scope_to_user_clinics(
                SinusRecanalization._meta.get_field("follow_up").related_model.objects.all(),
                request.user,
                "patient__clinic",
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


@admin.register(ClinicalEvent)
class ClinicalEventAdmin(ClinicScopedAdmin):
    """Events of reference §7; a bleed's ISTH class and its deciding criterion are computed, never typed."""

    form = ClinicalEventAdminForm
    clinic_path = "patient__clinic"
    list_display = ["patient", "kind", "occurred_on", "classification", "on_anticoagulation"]
    list_select_related = ["patient"]
    list_filter = ["kind", "isth_class", ("patient__clinic", admin.RelatedOnlyFieldListFilter)]
    mrn_search_path = "patient__mrn"
    search_fields = ["=patient__mrn"]
    autocomplete_fields = ["patient"]
    raw_id_fields = ["episode"]
    date_hierarchy = "occurred_on"
    readonly_fields = ["classification", "new_episode", "entered_by", "created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["patient", "episode", "kind", "occurred_on", "on_anticoagulation"]}),
        (
            "Bleeding (ISTH2005 major; ISTH2015 clinically relevant non-major)",
            {
                "fields": [
                    "bleeding_site",
                    "symptomatic",
                    "hemoglobin_fall_g_dl",
                    "units_transfused",
                    "fatal",
                    "medical_intervention",
                    "hospitalization",
                    "face_to_face_evaluation",
                    "classification",
                ]
            },
        ),
        (
            "Symptomatic intracranial hemorrhage (SECRET)",
            {"fields": ["ich_new", "ich_growth_percent", "neurological_worsening"]},
        ),
        ("Other VTE, death, recurrence", {"fields": ["vte_site", "death_cause", "new_episode"]}),
        (None, {"fields": ["note", "entered_by", "created_at", "updated_at"]}),
    ]

    @admin.display(description="Classification")
    def classification(self, obj: ClinicalEvent) -> str:
        if not obj or not obj.isth_class:
            return "—"
        if obj.isth_criterion:
            return format_html(
                "<strong>{}</strong> — {} <small>({})</small>",
                obj.get_isth_class_display(),
                obj.isth_criterion,
                obj.classification_source,
            )
        return format_html("<strong>{}</strong>", obj.get_isth_class_display())

    def get_changeform_initial_data(self, request: HttpRequest) -> dict:
        initial = super().get_changeform_initial_data(request)
        clinics = clinic_ids_for(request.user)
        clinic = Clinic.objects.filter(pk__in=clinics).first() if clinics else None
        initial.setdefault("occurred_on", (clinic_today(clinic) if clinic else timezone.localdate()).isoformat())
        return initial

    def save_model(self, request, obj, form, change) -> None:
        event_record(event=obj, user=request.user)
        if obj.isth_class:
            self.message_user(request, f"Classified: {obj.get_isth_class_display()}. {obj.isth_criterion}".strip())
        if obj.new_episode_id:
            self.message_user(request, "A new episode (a recurrence) was opened; its plan awaits confirmation.")

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("quality-report/", wrap(self.quality_report_view), name="outcomes_quality_report"),
            path("quality-report.csv", wrap(self.quality_report_csv), name="outcomes_quality_report_csv"),
            *super().get_urls(),
        ]

    def quality_report_view(self, request: HttpRequest) -> TemplateResponse:
        if not request.user.has_perm("outcomes.report_clinicalevent"):
            raise PermissionDenied
        context = {**self.admin_site.each_context(request), "opts": self.model._meta}
        context.update(report_views.report_context(request))
        response = TemplateResponse(request, "outcomes/quality_report.html", context)
        response["Cache-Control"] = "no-store"
        return response

    def quality_report_csv(self, request: HttpRequest) -> HttpResponse:
        if not request.user.has_perm("outcomes.report_clinicalevent"):
            raise PermissionDenied
        return report_views.report_csv_response(request)
