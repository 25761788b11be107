"""Generated from the admin registry: no admin page, form, inline, list filter or autocomplete shows a record of
another clinic, and no form accepts one (issue 13, finding 1 and 3).

Every admin registered on ``admin.site`` is walked — a model added later is covered without editing this file —
as a member of clinic B who holds *every* permission (so every form opens), against clinic A's records:

* the admin must be clinic-scoped (``ClinicScopedAdmin``, inlines ``ClinicScopedInline``) or administrators-only;
* its changelist lists none of clinic A's rows and its list filters offer none of clinic A's records or staff;
* every relation field (foreign key, one-to-one, many-to-many) of its add form, its change form and every inline
  form offers none of clinic A's records (nor users who are only clinic A's staff), and refuses each of them
  when posted; an add page opened with ``?field=<clinic A id>`` neither pre-fills nor names it;
* every autocomplete answers none of clinic A's records.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django import forms
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import models
from django.test import RequestFactory
from django.urls import reverse
from django.utils import timezone

from anticoag.models import WarfarinDose
from anticoag.services import plan_confirm
from patients.admin import ClinicScopedAdmin, ClinicScopedInline, SuperuserOnlyAdmin
from patients.choices import Role
from patients.models import DeteriorationEvent
from patients.scoping import clinic_path_for, scope_to_user_clinics
from reporting.models import ExportLog
from scheduling.models import FollowUp
from tests.api.conftest import make_clinic
from tests.factories import LabResultFactory, RiskFactorFactory, UserFactory

pytestmark = pytest.mark.django_db

#: Walking fewer means the registry or the walk lost something (16 admins with clinic data, their inlines).
MINIMUM_FORMS, MINIMUM_FIELDS = 25, 20


def _enrich(tag: str):
    """A clinic as tests/api builds it, plus one record of every other clinical model the admin shows."""
    clinic = make_clinic(tag)
    LabResultFactory(patient=clinic.patient)
    RiskFactorFactory(episode=clinic.episode, code="infection")
    DeteriorationEvent.objects.create(
        episode=clinic.episode, occurred_on=clinic.episode.diagnosed_on, note=f"note {tag}"
    )
    WarfarinDose.objects.create(
        patient=clinic.patient,
        starts_on=timezone.localdate() - timedelta(days=2),
        weekly_dose_mg=Decimal("35.0"),
        inr_reading=clinic.readings[1],
        decided_by=clinic.clinician,
    )
    plan = type(clinic.plan).objects.get(pk=clinic.plan.pk)  # recomputed after the deterioration
    plan_confirm(
        plan=plan,
        user=clinic.clinician,
        agent=plan.proposal["oral_options"][0]["agent"],
        acknowledged_warnings=[w["code"] for w in plan.warnings_to_acknowledge],
    )
    ExportLog.objects.create(user=clinic.reporter, dataset="patients", format="csv")
    return clinic


@pytest.fixture
def clinics(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    a, b = _enrich("A"), _enrich("B")
    # clinic B's member holding every permission there is (not a superuser): every admin form opens for her
    user = UserFactory(username="b_all_permissions", role=Role.CLINICIAN, clinics=[b.clinic])
    user.user_permissions.set(Permission.objects.all())
    return a, b, get_user_model().objects.get(pk=user.pk)


def _hidden(model: type[models.Model], user) -> set:
    """The pks of ``model`` the user must not see (empty for models that are not clinic data)."""
    if clinic_path_for(model) is None:
        return set()
    visible = scope_to_user_clinics(model._default_manager.all(), user).values("pk")
    return set(model._default_manager.exclude(pk__in=visible).values_list("pk", flat=True))


def _relation_fields(form):
    for name, field in form.fields.items():
        queryset = getattr(field, "queryset", None)
        if queryset is not None:
            yield name, field, queryset.model


def _walk_form(form_class, user, label: str, counts: dict, problems: list[str]) -> None:
    """Every relation field of one form class: offers nothing hidden, refuses every hidden id."""
    form = form_class()
    counts["forms"] += 1
    for name, field, related in _relation_fields(form):
        hidden = _hidden(related, user)
        counts["fields"] += 1
        if not hidden:
            counts["fields_without_foreign_records"].add(f"{label}.{name} → {related._meta.label}")
            continue
        offered = set(field.queryset.values_list("pk", flat=True)) & hidden
        if offered:
            problems.append(f"{label}.{name} offers {related._meta.label} {sorted(offered)} of another clinic")
        foreign = min(hidden)
        value = [foreign] if isinstance(field, forms.ModelMultipleChoiceField) else foreign
        bound = form_class(data={name: value})
        bound.is_valid()
        if name not in bound.errors:
            problems.append(f"{label}.{name} accepts {related._meta.label} {foreign} of another clinic")
        counts["refusals"] += 1


def _unscoped(model, model_admin) -> str | None:
    """Why an admin is not scoped, or None."""
    if not isinstance(model_admin, ClinicScopedAdmin):
        return f"{model._meta.label}: {type(model_admin).__name__} is neither ClinicScopedAdmin nor SuperuserOnlyAdmin"
    if clinic_path_for(model) is None:
        return f"{model._meta.label} does not lead to a clinic: declare clinic_scope_path on the model"
    return None


def test_every_admin_form_relation_filter_and_autocomplete_is_scoped_to_the_users_clinics(clinics, client, capsys):
    _, _, user = clinics
    client.force_login(user)
    request = RequestFactory().get("/admin/")
    request.user = user
    counts = {"admins": 0, "forms": 0, "fields": 0, "refusals": 0, "filters": 0, "autocompletes": 0}
    counts["fields_without_foreign_records"] = set()
    problems: list[str] = []
    markers = ["Clinic A", "MRN-A", "clinician_A", "nurse_A", "reporter_A", "FamilyA", "GivenA"]

    for model, model_admin in admin.site._registry.items():
        opts = model._meta
        label = opts.label
        changelist = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
        if isinstance(model_admin, SuperuserOnlyAdmin):
            # administrators only: clinic staff get no page at all, whatever permissions they hold
            assert client.get(changelist).status_code == 403, label
            continue
        assert _unscoped(model, model_admin) is None, _unscoped(model, model_admin)
        counts["admins"] += 1

        # the changelist: none of clinic A's rows, names or filter choices
        response = client.get(changelist)
        assert response.status_code == 200, label
        shown = {obj.pk for obj in response.context["cl"].result_list}
        assert not shown & _hidden(model, user), f"{label} changelist lists another clinic's rows"
        page = response.content.decode()
        assert not [m for m in markers if m in page], f"{label} changelist names {[m for m in markers if m in page]}"
        for spec in response.context["cl"].filter_specs:
            counts["filters"] += 1
            for choice in spec.choices(response.context["cl"]):
                assert not [m for m in markers if m in str(choice["display"])], f"{label} filter {spec.title}"
            for pk, _ in getattr(spec, "lookup_choices", []):
                related = getattr(getattr(spec, "field", None), "related_model", None)
                if related is not None:
                    assert pk not in _hidden(related, user), f"{label} filter {spec.title} offers {pk}"

        # the forms: add, change (of one of clinic B's rows), and every inline's
        own = model_admin.get_queryset(request).first()
        for obj in [None, own] if own is not None else [None]:
            if obj is None and not model_admin.has_add_permission(request):
                continue
            form_class = model_admin.get_form(request, obj)
            _walk_form(form_class, user, f"{label}{'(change)' if obj else ''}", counts, problems)
            for inline in model_admin.get_inline_instances(request, obj):
                assert isinstance(inline, ClinicScopedInline), f"{label}: inline {type(inline).__name__} unscoped"
                formset = inline.get_formset(request, obj)
                _walk_form(formset.form, user, f"{label}:{inline.model._meta.label}", counts, problems)

        # the add page opened with ?field=<clinic A id>: not pre-filled, not named
        if model_admin.has_add_permission(request):
            add_url = reverse(f"admin:{opts.app_label}_{opts.model_name}_add")
            for field in opts.get_fields():
                if not (field.concrete and field.is_relation and field.related_model):
                    continue
                hidden = _hidden(field.related_model, user)
                if not hidden:
                    continue
                foreign = min(hidden)
                response = client.get(add_url, {field.name: foreign})
                assert response.status_code == 200, f"{label} add ?{field.name}={foreign}"
                form = response.context["adminform"].form
                assert str(form.initial.get(field.name, "")) != str(foreign), f"{label} pre-fills {field.name}"
                named = str(field.related_model._default_manager.get(pk=foreign))
                page = response.content.decode()
                visible_names = {str(o) for o in scope_to_user_clinics(field.related_model.objects.all(), user)}
                if named not in visible_names:
                    assert named not in page, f"{label} add page names {named!r} of another clinic"

        # autocompletes: the related model's own admin answers, scoped
        for name in model_admin.get_autocomplete_fields(request):
            related = opts.get_field(name).related_model
            response = client.get(
                reverse("admin:autocomplete"),
                {"app_label": opts.app_label, "model_name": opts.model_name, "field_name": name, "term": ""},
            )
            assert response.status_code == 200, f"{label}.{name} autocomplete"
            ids = {int(item["id"]) for item in response.json()["results"]}
            assert ids, f"{label}.{name} autocomplete found nothing of the user's own clinic"
            assert not ids & _hidden(related, user), f"{label}.{name} autocomplete offers another clinic's record"
            counts["autocompletes"] += 1

    print(
        f"walked {counts['admins']} scoped admins: {counts['forms']} forms, {counts['fields']} relation fields "
        f"({counts['refusals']} refused a record of another clinic), {counts['filters']} list filters, "
        f"{counts['autocompletes']} autocompletes"
    )
    print("relation fields whose target has no record of another clinic to try:")
    for item in sorted(counts["fields_without_foreign_records"]):
        print("  ", item)
    assert not problems, "\n".join(problems)
    assert counts["forms"] >= MINIMUM_FORMS and counts["fields"] >= MINIMUM_FIELDS, counts


def test_a_new_unscoped_admin_fails_the_walk(clinics):
    """A plain ModelAdmin registered for clinic data is caught: by its class, and by what its form offers."""
    _, _, user = clinics
    request = RequestFactory().get("/admin/")
    request.user = user
    plain = admin.ModelAdmin(WarfarinDose, admin.site)
    assert _unscoped(WarfarinDose, plain) is not None
    assert plain.get_queryset(request).filter(pk__in=_hidden(WarfarinDose, user)).exists()
    counts = {"forms": 0, "fields": 0, "refusals": 0, "fields_without_foreign_records": set()}
    problems: list[str] = []
    _walk_form(plain.get_form(request), user, "plain", counts, problems)
    assert any("plain.inr_reading offers" in p for p in problems), problems
    assert any("plain.patient accepts" in p for p in problems), problems


def test_follow_up_cannot_be_tied_to_another_clinics_episode(clinics, client):
    """Finding 1, as reported: clinic B's nurse opens the add page with clinic A's episode, then posts it."""
    a, b, _ = clinics
    client.force_login(b.nurse)
    url = reverse("admin:scheduling_followup_add")
    page = client.get(url, {"episode": a.episode.pk})
    assert page.status_code == 200
    assert "MRN-A" not in page.content.decode()
    before = FollowUp.objects.filter(episode=a.episode).count()
    response = client.post(
        url,
        {
            "patient": b.patient.pk,
            "episode": a.episode.pk,
            "kind": "annual_review",
            "due_on": timezone.localdate().isoformat(),
            "status": "scheduled",
        },
    )
    assert response.status_code == 200
    assert "episode" in response.context["adminform"].form.errors
    assert "MRN-A" not in response.content.decode()
    assert FollowUp.objects.filter(episode=a.episode).count() == before


def test_dose_add_page_does_not_name_another_clinics_reading(clinics, client):
    a, b, _ = clinics
    client.force_login(b.clinician)
    page = client.get(reverse("admin:anticoag_warfarindose_add"), {"inr_reading": a.readings[0].pk})
    assert page.status_code == 200
    form = page.context["adminform"].form
    assert "inr_reading" not in form.initial and "patient" not in form.initial
    assert a.readings[0].pk not in set(form.fields["inr_reading"].queryset.values_list("pk", flat=True))


def test_responsible_clinician_must_be_on_the_clinics_staff(clinics, client):
    """Finding 3: another clinic's clinician is neither offered nor accepted (escalations would go there)."""
    a, b, _ = clinics
    client.force_login(b.clinician)
    url = reverse("admin:patients_patient_change", args=[b.patient.pk])
    page = client.get(url)
    form = page.context["adminform"].form
    assert a.clinician.pk not in set(form.fields["responsible_clinician"].queryset.values_list("pk", flat=True))
    assert a.nurse.pk not in set(form.fields["primary_nurse"].queryset.values_list("pk", flat=True))
    assert "clinician_A" not in page.content.decode() and "nurse_A" not in page.content.decode()
    b.patient.responsible_clinician = a.clinician
    with pytest.raises(Exception) as refused:
        b.patient.full_clean()
    assert "responsible_clinician" in refused.value.message_dict


def test_patient_list_filters_name_no_other_clinic(clinics, client):
    _, b, _ = clinics
    client.force_login(b.nurse)
    page = client.get(reverse("admin:patients_patient_changelist")).content.decode()
    assert "Clinic B" in page
    assert "Clinic A" not in page and "nurse_A" not in page
