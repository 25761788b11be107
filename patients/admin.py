"""Admin for clinics, patients, episodes and labs: the place clinic staff work.

Every page is scoped to the user's clinics (``ClinicScopedAdmin``), every clinical model shows its audit
history, and patient pickers are autocompletes (a clinic network has far too many patients for a <select>).
"""

from __future__ import annotations

from auditlog.mixins import AuditlogHistoryAdminMixin
from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from .choices import Sinus
from .models import Clinic, CvtEpisode, DeteriorationEvent, EpisodeRiskFactor, LabResult, Patient
from .scoping import clinic_ids_for, scope_to_user_clinics


class ClinicScopedAdmin(AuditlogHistoryAdminMixin, admin.ModelAdmin):
    """A model admin that shows only rows of the user's clinics, reached through ``clinic_path``."""

    clinic_path = "clinic"
    show_auditlog_history_link = False

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return scope_to_user_clinics(super().get_queryset(request), request.user, self.clinic_path)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        ids = clinic_ids_for(request.user)
        if ids is not None:
            if db_field.name == "clinic":
                kwargs["queryset"] = Clinic.objects.filter(pk__in=ids)
            elif db_field.name == "patient":
                kwargs["queryset"] = Patient.objects.filter(clinic_id__in=ids)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


@admin.register(Clinic)
class ClinicAdmin(AuditlogHistoryAdminMixin, admin.ModelAdmin):
    list_display = ["name", "time_zone", "alert_email", "digest_time", "extended_inr_interval"]
    search_fields = ["name"]
    filter_horizontal = ["staff"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return scope_to_user_clinics(super().get_queryset(request), request.user, "pk")


class EpisodeInline(admin.TabularInline):
    model = CvtEpisode
    extra = 0
    fields = ["diagnosed_on", "hemorrhage", "subdural_hematoma", "microbleeds", "pregnant", "prior_cvt"]
    show_change_link = True


class LabResultInline(admin.TabularInline):
    model = LabResult
    extra = 0
    fields = ["drawn_on", "serum_creatinine", "creatinine_unit", "hemoglobin_g_dl"]
    ordering = ["-drawn_on"]


@admin.register(Patient)
class PatientAdmin(ClinicScopedAdmin):
    list_display = ["mrn", "family_name", "given_name", "date_of_birth", "clinic", "primary_nurse", "active"]
    list_display_links = ["mrn", "family_name"]
    list_filter = ["clinic", "primary_nurse", "active"]
    list_select_related = ["clinic", "primary_nurse"]
    # "=mrn" is an exact match served by the index; names match from the start ("^").
    search_fields = ["=mrn", "^family_name", "^given_name"]
    search_help_text = "Exact MRN, or the start of a family or given name."
    show_full_result_count = False
    list_per_page = 50
    inlines = [EpisodeInline, LabResultInline]
    fieldsets = [
        (None, {"fields": ["clinic", "mrn", ("given_name", "family_name"), ("date_of_birth", "sex"), "weight_kg"]}),
        ("Care team", {"fields": ["primary_nurse", "responsible_clinician", "active"]}),
    ]


class RiskFactorInline(admin.TabularInline):
    model = EpisodeRiskFactor
    extra = 1
    fields = ["code", "noted_on"]


class DeteriorationInline(admin.TabularInline):
    model = DeteriorationEvent
    extra = 0
    fields = ["occurred_on", "note"]


class CvtEpisodeForm(forms.ModelForm):
    sinuses = forms.MultipleChoiceField(
        choices=Sinus.choices, widget=forms.CheckboxSelectMultiple, required=False, label="Sinuses involved"
    )

    class Meta:
        model = CvtEpisode
        fields = [
            "patient",
            "diagnosed_on",
            "sinuses",
            "hemorrhage",
            "subdural_hematoma",
            "microbleeds",
            "anti_amyloid_therapy",
            "pregnant",
            "delivered_on",
            "breastfeeding",
            "prior_cvt",
            "prior_vte",
            "notes",
        ]


@admin.register(CvtEpisode)
class CvtEpisodeAdmin(ClinicScopedAdmin):
    form = CvtEpisodeForm
    clinic_path = "patient__clinic"
    list_display = ["patient", "diagnosed_on", "hemorrhage", "microbleeds", "pregnant"]
    list_select_related = ["patient"]
    list_filter = ["patient__clinic", "hemorrhage", "pregnant"]
    search_fields = ["=patient__mrn", "^patient__family_name"]
    date_hierarchy = "diagnosed_on"
    show_full_result_count = False
    autocomplete_fields = ["patient"]
    inlines = [RiskFactorInline, DeteriorationInline]
    fieldsets = [
        (None, {"fields": ["patient", "diagnosed_on", "sinuses"]}),
        ("Bleeding", {"fields": ["hemorrhage", "subdural_hematoma", "microbleeds", "anti_amyloid_therapy"]}),
        ("Pregnancy", {"fields": ["pregnant", "delivered_on", "breastfeeding"]}),
        ("History", {"fields": ["prior_cvt", "prior_vte", "notes"]}),
    ]


@admin.register(LabResult)
class LabResultAdmin(ClinicScopedAdmin):
    clinic_path = "patient__clinic"
    list_display = ["patient", "drawn_on", "serum_creatinine", "creatinine_unit", "hemoglobin_g_dl"]
    list_select_related = ["patient"]
    list_filter = ["patient__clinic"]
    search_fields = ["=patient__mrn"]
    show_full_result_count = False
    autocomplete_fields = ["patient"]
