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
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.admin.widgets import ForeignKeyRawIdWidget
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db.models import Model, QuerySet
from django.http import Http404, HttpRequest
from django.utils.functional import cached_property

from config.hardening import refuse_long_username
from config.security import client_ip

from .audit import record_access
from .choices import Sinus
from .models import (
    Clinic,
    CvtEpisode,
    DeteriorationEvent,
    EpisodeRiskFactor,
    LabResult,
    Patient,
    PatientContact,
    PatientMedication,
)
from .scoping import clinic_path_for, scope_to_user_clinics

#: Longest search or autocomplete term passed to the database (an MRN or a name prefix is far shorter).
SEARCH_TERM_MAX_LENGTH = 100


def clean_search_term(term: str) -> str:
    """A search box or autocomplete term as the database may see it: no NUL (PostgreSQL refuses it in text),
    no other control characters, and at most ``SEARCH_TERM_MAX_LENGTH`` characters."""
    return "".join(char for char in term if char.isprintable() or char == " ")[:SEARCH_TERM_MAX_LENGTH]


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


class ScopedForeignKeyRawIdWidget(ForeignKeyRawIdWidget):
    """A raw id box that names the chosen record only when the user may see it.

    Django's widget looks the id up in the whole table to print its label: a typed or a ``?field=id`` id of
    another clinic would be shown by name.
    """

    def __init__(self, rel, admin_site, attrs=None, using=None, *, queryset: QuerySet) -> None:
        super().__init__(rel, admin_site, attrs=attrs, using=using)
        self.queryset = queryset

    def label_and_url_for_value(self, value):
        key = self.rel.get_related_field().name
        try:
            if not self.queryset.filter(**{key: value}).exists():
                return "", ""
        except (ValueError, TypeError, ValidationError):
            return "", ""
        return super().label_and_url_for_value(value)


class ScopedRelatedFieldListFilter(admin.RelatedFieldListFilter):
    """A list filter on a relation that offers only the related records of the user's clinics (clinics,
    patients, staff…), never the names of another clinic's records or staff."""

    def field_choices(self, field, request, model_admin):
        ordering = self.field_admin_ordering(field, request, model_admin)
        related = scope_to_user_clinics(field.related_model._default_manager.all(), request.user)
        if ordering:
            related = related.order_by(*ordering)
        key = field.target_field.attname if hasattr(field, "target_field") else "pk"
        return [(getattr(obj, key), str(obj)) for obj in related]


# Every relation filter of every admin that names a field without choosing a class gets the scoped one.
admin.FieldListFilter.register(lambda f: f.remote_field is not None, ScopedRelatedFieldListFilter, take_priority=True)


class ListedChoices(forms.models.ModelChoiceIterator):
    """A select's choices read as one list, not through a server-side cursor (``QuerySet.iterator()``, which
    costs three round trips on PostgreSQL: DECLARE, FETCH, CLOSE). A scoped choice list is short: the user's
    clinics, their staff."""

    def __iter__(self):
        if self.field.empty_label is not None:
            yield ("", self.field.empty_label)
        for obj in self.queryset.all():
            yield self.choice(obj)


class ClinicScopedMixin:
    """Scoping shared by model admins and inlines: every relation field of the form (foreign key, one-to-one,
    many-to-many; whether a select, a raw id box or an autocomplete) offers and accepts only records of the
    user's clinics, and user pickers only the staff of those clinics. The path from each related model to
    its clinic is derived (:func:`patients.scoping.clinic_path_for`), so a new field or model needs nothing."""

    def get_field_queryset(self, db, db_field, request: HttpRequest):
        queryset = super().get_field_queryset(db, db_field, request)
        if queryset is None:
            queryset = db_field.remote_field.model._default_manager.using(db).all()
        return scope_to_user_clinics(queryset, request.user)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if "queryset" not in kwargs:
            kwargs["queryset"] = self.get_field_queryset(kwargs.get("using"), db_field, request)
        if db_field.name in self.raw_id_fields and "widget" not in kwargs:
            kwargs["widget"] = ScopedForeignKeyRawIdWidget(
                db_field.remote_field, self.admin_site, using=kwargs.get("using"), queryset=kwargs["queryset"]
            )
        field = super().formfield_for_foreignkey(db_field, request, **kwargs)
        if isinstance(field, forms.ModelChoiceField):
            field.iterator = ListedChoices
        return field

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        if "queryset" not in kwargs and db_field.remote_field.through._meta.auto_created:
            kwargs["queryset"] = self.get_field_queryset(kwargs.get("using"), db_field, request)
        return super().formfield_for_manytomany(db_field, request, **kwargs)


class ClinicScopedInline(ClinicScopedMixin, admin.options.InlineModelAdmin):
    """Base of every inline: its rows and its relation fields are scoped like the page's own."""

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return scope_to_user_clinics(super().get_queryset(request), request.user)


class ClinicScopedTabularInline(ClinicScopedInline, admin.TabularInline):
    pass


class ClinicScopedStackedInline(ClinicScopedInline, admin.StackedInline):
    pass


class ClinicScopedAdmin(ClinicScopedMixin, AuditlogHistoryAdminMixin, admin.ModelAdmin):
    """A model admin that shows only rows of the user's clinics.

    How the model reaches its clinic is derived (:func:`patients.scoping.clinic_path_for`); ``clinic_path``
    overrides it for one admin. Relation fields, list filters and the raw id boxes are scoped by
    :class:`ClinicScopedMixin`; actions act on ``get_queryset``; autocompletes ask the related model's own
    (scoped) admin. Initial values from the URL (``?episode=1``) that name another clinic's record are dropped.

    Changelists never run a full COUNT (``show_full_result_count = False``, no facet counts, and
    :class:`CappedCountPaginator`).
    ``mrn_search_path`` names the MRN (``"mrn"``, ``"patient__mrn"``…): a search term is first looked up as an
    exact MRN through the index on ``Patient.mrn``; only when no row has that MRN does the search fall back to
    ``search_fields`` (case-insensitive MRN, name prefixes), which the database cannot serve from that index.
    The per-record audit history (``…/{id}/auditlog/``) is for administrators (superusers) only.
    """

    clinic_path: str | None = None
    mrn_search_path: str | None = None
    #: Log every display of a record's page (auditlog ACCESS): true for the pages showing a patient's record.
    log_access = False
    show_auditlog_history_link = False
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER  # facet counts are one COUNT per filter choice
    paginator = CappedCountPaginator

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        path = self.clinic_path or clinic_path_for(self.model)
        return scope_to_user_clinics(super().get_queryset(request), request.user, path)

    def get_changeform_initial_data(self, request: HttpRequest) -> dict:
        initial = super().get_changeform_initial_data(request)
        for name in list(initial):
            try:
                field = self.model._meta.get_field(name)
            except Exception:  # not a model field: a form's own field, left to the form
                continue
            if field.is_relation and field.related_model is not None and not field.auto_created:
                values = initial[name] if isinstance(initial[name], list) else [initial[name]]
                related = scope_to_user_clinics(field.related_model._default_manager.all(), request.user)
                key = field.target_field.attname if field.many_to_one or field.one_to_one else "pk"
                try:
                    visible = related.filter(**{f"{key}__in": values}).count() == len(set(values))
                except (ValueError, TypeError, ValidationError):
                    visible = False
                if not visible:
                    del initial[name]
        return initial

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if self.log_access and obj is not None and obj.pk is not None and not add:
            record_access(instance=obj, user=request.user, remote_addr=client_ip(request))
        return super().render_change_form(request, context, add=add, change=change, form_url=form_url, obj=obj)

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str):
        term = clean_search_term(search_term).strip()
        if self.mrn_search_path and term and not any(char.isspace() for char in term):
            # "mrn IN (as typed, upper, lower)" is served by the B-tree index; "=mrn" (UPPER(mrn) = UPPER(…)) is not.
            variants = sorted({term, term.upper(), term.lower()})
            exact = queryset.filter(**{f"{self.mrn_search_path}__in": variants})
            if exact.exists():
                return exact, False
        return super().get_search_results(request, queryset, term)

    def auditlog_history_view(self, request, object_id, extra_context=None):
        if not (request.user.is_active and request.user.is_superuser):
            raise PermissionDenied
        if self.get_object(request, object_id) is None:
            raise Http404("No such record.")
        return super().auditlog_history_view(request, object_id, extra_context)


class SuperuserOnlyAdmin:
    """For the admins of accounts, tokens, lock-outs and audit entries: administrators only, whatever
    permissions a member of staff holds (these pages list every clinic's staff)."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.is_active and request.user.is_superuser

    def has_view_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return request.user.is_active and request.user.is_superuser

    def has_add_permission(self, request: HttpRequest, *args) -> bool:
        return request.user.is_active and request.user.is_superuser

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return request.user.is_active and request.user.is_superuser

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return request.user.is_active and request.user.is_superuser


def admin_superuser_only(model: type[Model], site: admin.AdminSite = admin.site) -> None:
    """Re-register a third-party model's admin as :class:`SuperuserOnlyAdmin` (same pages otherwise)."""
    if not site.is_registered(model):
        return
    current = type(site._registry[model])
    if issubclass(current, SuperuserOnlyAdmin):
        return
    site.unregister(model)
    site.register(model, type(current.__name__, (SuperuserOnlyAdmin, current), {"__module__": __name__}))


#: The clinic's DOAC formulary fields (reference §3 rev 2): changing one recomputes the clinic's plans.
FORMULARY_FIELDS = ("offers_dabigatran", "offers_rivaroxaban", "offers_apixaban")


@admin.register(Clinic)
class ClinicAdmin(ClinicScopedAdmin):
    list_display = ["name", "time_zone", "alert_email", "digest_time", "extended_inr_interval"]
    search_fields = ["name"]
    filter_horizontal = ["staff"]

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


class EpisodeInline(ClinicScopedTabularInline):
    model = CvtEpisode
    extra = 0
    fields = ["diagnosed_on", "hemorrhage", "subdural_hematoma", "microbleeds", "prior_cvt"]
    show_change_link = True

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("patient")  # each row's title names its patient


class MedicationInline(ClinicScopedTabularInline):
    """The patient's medicines (reference §5a): the rules read the current ones."""

    model = PatientMedication
    extra = 0
    fields = ["code", "started_on", "stopped_on", "note"]
    ordering = ["-started_on"]


class LabResultInline(ClinicScopedTabularInline):
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
        ("Contact (never sent in e-mails)", {"fields": ["phone", "preferred_contact"]}),
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


class RiskFactorInline(ClinicScopedTabularInline):
    model = EpisodeRiskFactor
    formset = RiskFactorFormSet
    extra = 1
    fields = ["code", "noted_on"]


class DeteriorationInline(ClinicScopedTabularInline):
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


@admin.register(PatientContact)
class PatientContactAdmin(ClinicScopedAdmin):
    """The contact log (calls, messages, letters, visits) of the user's clinics' patients."""

    clinic_path = "patient__clinic"
    list_display = ["contacted_at", "patient", "channel", "outcome", "contacted_by"]
    list_select_related = ["patient", "contacted_by"]
    list_filter = ["channel", "outcome"]
    mrn_search_path = "patient__mrn"
    search_fields = ["=patient__mrn"]
    show_full_result_count = False
    autocomplete_fields = ["patient"]
    fields = ["patient", "channel", "outcome", "note", "contacted_at", "contacted_by"]
    readonly_fields = ["contacted_by"]

    def save_model(self, request, obj, form, change) -> None:
        if not change:
            obj.contacted_by = request.user
        super().save_model(request, obj, form, change)


# ---------------------------------------------------------------------------------------------------------------
# The audit view: auditlog's log entries (changes, and ACCESS entries for every view of a patient's record),
# for administrators (superusers) only, filterable by actor, model, action and date.
# ---------------------------------------------------------------------------------------------------------------


class AuditLogEntryAdmin(SuperuserOnlyAdmin, AuditlogLogEntryAdmin):
    list_filter = ["action", ResourceTypeFilter, ("actor", admin.RelatedOnlyFieldListFilter), "timestamp"]
    show_full_result_count = False
    paginator = CappedCountPaginator

    def lookup_allowed(self, lookup: str, value, request=None) -> bool:
        # One record's entries: the patient page's "Audit log" link filters by content type and object id.
        return lookup in {"object_id", "content_type__id__exact"} or super().lookup_allowed(lookup, value, request)


admin.site.unregister(LogEntry)
admin.site.register(LogEntry, AuditLogEntryAdmin)


class BoundedAdminLoginForm(AdminAuthenticationForm):
    """The admin login form, refusing a username longer than the user model's column before
    ``authenticate()`` (and django-axes, which records it) sees it. Django's form only sets ``max_length``
    on the widget, after the field's validators were built."""

    def clean_username(self) -> str:
        username = self.cleaned_data.get("username")
        problem = refuse_long_username(username)
        if problem:
            raise ValidationError(problem, code="max_length")
        return username


admin.site.login_form = BoundedAdminLoginForm


# Accounts, groups, API tokens and lock-out records list every clinic's staff: administrators only.
def _restrict_account_admins() -> None:
    from axes.models import AccessAttempt, AccessFailureLog, AccessLog
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from rest_framework.authtoken.models import TokenProxy

    for model in (get_user_model(), Group, TokenProxy, AccessAttempt, AccessLog, AccessFailureLog):
        admin_superuser_only(model)


_restrict_account_admins()
