"""Admin for clinics, patients, episodes and labs: the place clinic staff work.

Every page is scoped to the user's clinics (``ClinicScopedAdmin``), every clinical model shows its audit
history, and patient pickers are autocompletes (a clinic network has far too many patients for a <select>).
"""

from __future__ import annotations

from auditlog.admin import LogEntryAdmin as AuditlogLogEntryAdmin
from auditlog.filters import ResourceTypeFilter
from auditlog.mixins import AuditlogHistoryAdminMixin
from auditlog.models import LogEntry
from django import forms
from django.contrib import admin
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.functional import cached_property

from config.security import client_ip

from .audit import record_access
from .choices import Sinus
from .models import Clinic, CvtEpisode, DeteriorationEvent, EpisodeRiskFactor, LabResult, Patient, PatientMedication
from .scoping import clinic_ids_for, scope_to_user_clinics


class CappedCountPaginator(Paginator):
    """A paginator that never counts a whole large table: it counts at most ``cap`` + 1 rows.

    The admin's changelist always counts the (filtered) rows to number its pages; on a table of millions of
    INR readings or reminders that COUNT is the slowest query of the page. Counting up to the cap costs at
    most ``cap`` index entries; beyond it the page says "more than 10,000" (templates/admin/pagination.html)
    and offers the first pages; filters, the date drill-down and the MRN search narrow the list from there.
    """

    cap = 10_000

    @cached_property
    def count(self) -> int:
        object_list = self.object_list
        if isinstance(object_list, QuerySet):
            # No ORDER BY: the database may stop at the cap in any order.
            return object_list.order_by()[: self.cap + 1].count()
        return len(object_list)

    @property
    def capped(self) -> bool:
        return self.count > self.cap


class ClinicScopedAdmin(AuditlogHistoryAdminMixin, admin.ModelAdmin):
    """A model admin that shows only rows of the user's clinics, reached through ``clinic_path``.

    Changelists never run a full COUNT (``show_full_result_count = False``, no facet counts, and
    :class:`CappedCountPaginator`).
    ``mrn_search_path`` names the MRN (``"mrn"``, ``"patient__mrn"``…): a search term is first looked up as an
    exact MRN through the index on ``Patient.mrn``; only when no row has that MRN does the search fall back to
    ``search_fields`` (case-insensitive MRN, name prefixes), which the database cannot serve from that index.
    """

    clinic_path = "clinic"
    mrn_search_path: str | None = None
    #: Log every display of a record's page (auditlog ACCESS): true for the pages showing a patient's record.
    log_access = False
    show_auditlog_history_link = False
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER  # facet counts are one COUNT per filter choice
    paginator = CappedCountPaginator

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return scope_to_user_clinics(super().get_queryset(request), request.user, self.clinic_path)

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if self.log_access and obj is not None and obj.pk is not None and not add:
            record_access(instance=obj, user=request.user, remote_addr=client_ip(request))
        return super().render_change_form(request, context, add=add, change=change, form_url=form_url, obj=obj)

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str):
        term = search_term.strip()
        if self.mrn_search_path and term and not any(char.isspace() for char in term):
            # "mrn IN (as typed, upper, lower)" is served by the B-tree index; "=mrn" (UPPER(mrn) = UPPER(…)) is not.
            variants = sorted({term, term.upper(), term.lower()})
            exact = queryset.filter(**{f"{self.mrn_search_path}__in": variants})
            if exact.exists():
                return exact, False
        return super().get_search_results(request, queryset, search_term)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        ids = clinic_ids_for(request.user)
        if ids is not None:
            if db_field.name == "clinic":
                kwargs["queryset"] = Clinic.objects.filter(pk__in=ids)
            elif db_field.name == "patient":
                kwargs["queryset"] = Patient.objects.filter(clinic_id__in=ids)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


#: The clinic's DOAC formulary fields (reference §3 rev 2): changing one recomputes the clinic's plans.
FORMULARY_FIELDS = ("offers_dabigatran", "offers_rivaroxaban", "offers_apixaban")


@admin.register(Clinic)
class ClinicAdmin(AuditlogHistoryAdminMixin, admin.ModelAdmin):
    list_display = ["name", "time_zone", "alert_email", "digest_time", "extended_inr_interval"]
    search_fields = ["name"]
    filter_horizontal = ["staff"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return scope_to_user_clinics(super().get_queryset(request), request.user, "pk")

    def save_model(self, request: HttpRequest, obj: Clinic, form, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if change and set(form.changed_data) & set(FORMULARY_FIELDS):
            from anticoag.replan import replan_plans  # anticoag depends on patients, not the other way round

            counts = replan_plans(clinic=obj)
            self.message_user(
                request,
                f"DOAC formulary changed: plans recomputed ({counts['unchanged']} unchanged, {counts['changed']} "
                f"changed, {counts['review_needed']} now need review).",
            )


class EpisodeInline(admin.TabularInline):
    model = CvtEpisode
    extra = 0
    fields = ["diagnosed_on", "hemorrhage", "subdural_hematoma", "microbleeds", "prior_cvt"]
    show_change_link = True


class MedicationInline(admin.TabularInline):
    """The patient's medicines (reference §5a): the rules read the current ones."""

    model = PatientMedication
    extra = 0
    fields = ["code", "started_on", "stopped_on", "note"]
    ordering = ["-started_on"]


class LabResultInline(admin.TabularInline):
    model = LabResult
    extra = 0
    fields = ["drawn_on", "serum_creatinine", "creatinine_unit", "hemoglobin_g_dl"]
    ordering = ["-drawn_on"]


@admin.register(Patient)
class PatientAdmin(ClinicScopedAdmin):
    log_access = True
    list_display = ["mrn", "family_name", "given_name", "date_of_birth", "clinic", "primary_nurse", "active"]
    list_display_links = ["mrn", "family_name"]
    list_filter = ["clinic", "primary_nurse", "active"]
    list_select_related = ["clinic", "primary_nurse"]
    # An exact MRN is found through the index first (ClinicScopedAdmin); names match from the start ("^").
    mrn_search_path = "mrn"
    search_fields = ["=mrn", "^family_name", "^given_name"]
    search_help_text = "Exact MRN, or the start of a family or given name."
    show_full_result_count = False
    list_per_page = 50
    inlines = [EpisodeInline, MedicationInline, LabResultInline]

    def get_formset_kwargs(self, request: HttpRequest, obj, inline, prefix: str) -> dict:
        kwargs = super().get_formset_kwargs(request, obj, inline, prefix)
        if isinstance(inline, MedicationInline) and "data" in kwargs and f"{prefix}-TOTAL_FORMS" not in kwargs["data"]:
            # A form posted without the medicines section (a client of the page before the section existed)
            # leaves the medicines as they are instead of failing on a missing management form.
            data = kwargs["data"].copy()
            data.update({f"{prefix}-TOTAL_FORMS": "0", f"{prefix}-INITIAL_FORMS": "0"})
            kwargs["data"] = data
        return kwargs

    fieldsets = [
        (None, {"fields": ["clinic", "mrn", ("given_name", "family_name"), ("date_of_birth", "sex"), "weight_kg"]}),
        ("Care team", {"fields": ["primary_nurse", "responsible_clinician", "active"]}),
    ]


class RiskFactorFormSet(forms.BaseInlineFormSet):
    """Checks the pregnancy facts against the risk factor codes being submitted (reference §3 rev 2: a delivery
    date, an expected delivery date or breastfeeding needs a pregnancy or puerperium code). The episode form
    defers this check to here, because only here are the codes of this submission known."""

    def clean(self) -> None:
        super().clean()
        codes = {
            form.cleaned_data["code"]
            for form in self.forms
            if getattr(form, "cleaned_data", None)
            and form.cleaned_data.get("code")
            and not self._should_delete_form(form)
        }
        errors = self.instance.pregnancy_errors(codes)
        if errors:
            raise forms.ValidationError([f"{field}: {message}" for field, message in errors.items()])


class RiskFactorInline(admin.TabularInline):
    model = EpisodeRiskFactor
    formset = RiskFactorFormSet
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

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # The risk factor inline (RiskFactorFormSet) checks pregnancy facts against the submitted codes.
        self.instance._pregnancy_checked_with_inlines = True

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
            "delivered_on",
            "expected_delivery_on",
            "breastfeeding",
            "prior_cvt",
            "prior_vte",
            "notes",
        ]


@admin.register(CvtEpisode)
class CvtEpisodeAdmin(ClinicScopedAdmin):
    log_access = True
    form = CvtEpisodeForm
    clinic_path = "patient__clinic"
    list_display = ["patient", "diagnosed_on", "hemorrhage", "microbleeds"]
    list_select_related = ["patient"]
    list_filter = ["patient__clinic", "hemorrhage"]
    mrn_search_path = "patient__mrn"
    search_fields = ["=patient__mrn", "^patient__family_name"]
    date_hierarchy = "diagnosed_on"
    show_full_result_count = False
    autocomplete_fields = ["patient"]
    inlines = [RiskFactorInline, DeteriorationInline]
    fieldsets = [
        (None, {"fields": ["patient", "diagnosed_on", "sinuses"]}),
        ("Bleeding", {"fields": ["hemorrhage", "subdural_hematoma", "microbleeds", "anti_amyloid_therapy"]}),
        (
            "Pregnancy",
            {
                "fields": ["delivered_on", "expected_delivery_on", "breastfeeding"],
                "description": "Pregnancy is recorded as a risk factor: 'CVT during pregnancy' or 'CVT within 6 weeks "
                "after delivery'. These dates and breastfeeding need one of those codes.",
            },
        ),
        ("History", {"fields": ["prior_cvt", "prior_vte", "notes"]}),
    ]


@admin.register(LabResult)
class LabResultAdmin(ClinicScopedAdmin):
    clinic_path = "patient__clinic"
    list_display = ["patient", "drawn_on", "serum_creatinine", "creatinine_unit", "hemoglobin_g_dl"]
    list_select_related = ["patient"]
    list_filter = ["patient__clinic"]
    mrn_search_path = "patient__mrn"
    search_fields = ["=patient__mrn"]
    show_full_result_count = False
    autocomplete_fields = ["patient"]


# ---------------------------------------------------------------------------------------------------------------
# The audit view: auditlog's log entries (changes, and ACCESS entries for every view of a patient's record),
# for administrators (superusers) only, filterable by actor, model, action and date.
# ---------------------------------------------------------------------------------------------------------------


class AuditLogEntryAdmin(AuditlogLogEntryAdmin):
    list_filter = ["action", ResourceTypeFilter, ("actor", admin.RelatedOnlyFieldListFilter), "timestamp"]
    show_full_result_count = False
    paginator = CappedCountPaginator

    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.is_active and request.user.is_superuser

    def lookup_allowed(self, lookup: str, value, request=None) -> bool:
        # One record's entries: the patient page's "Audit log" link filters by content type and object id.
        return lookup in {"object_id", "content_type__id__exact"} or super().lookup_allowed(lookup, value, request)

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        return request.user.is_active and request.user.is_superuser


admin.site.unregister(LogEntry)
admin.site.register(LogEntry, AuditLogEntryAdmin)
