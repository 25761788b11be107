"""Forms of the outcome pages: the review recorded on the patient page, and the admin forms."""

from __future__ import annotations

from datetime import date

from django import forms

from scheduling.models import FollowUp

from . import definitions
from .models import BackToWork, ClinicalEvent, OutcomeAssessment, Papilledema, VisualFields

DATE_INPUT = {"type": "date"}

#: The mRS as radio buttons, each grade with the scale's words beside it.
MRS_FIELD_CHOICES = [(str(grade), f"{grade} — {words}") for grade, words in definitions.MRS_GRADES.items()]


def timepoint_of(item: FollowUp) -> str:
    """``ep4:outcome_review:6m`` → ``6m``."""
    return item.key.rsplit(":", 1)[-1]


class OutcomeReviewForm(forms.Form):
    """An outcome review recorded in place on the patient page, against one of the open scheduled reviews."""

    review = forms.TypedChoiceField(label="Review", coerce=int)
    assessed_on = forms.DateField(label="Reviewed on", widget=forms.DateInput(attrs=DATE_INPUT, format="%Y-%m-%d"))
    mrs = forms.TypedChoiceField(
        label="Modified Rankin Scale", choices=MRS_FIELD_CHOICES, coerce=int, widget=forms.RadioSelect
    )
    seizures_since_last_review = forms.BooleanField(label="Seizures since the last review", required=False)
    hit6_total = forms.IntegerField(
        label="HIT-6 total (optional)",
        required=False,
        min_value=definitions.HIT6_MIN,
        max_value=definitions.HIT6_MAX,
        help_text="Headache Impact Test, 36–78.",
    )
    papilledema = forms.ChoiceField(
        label="Papilledema (optional)", choices=[("", "—"), *Papilledema.choices], required=False
    )
    visual_fields = forms.ChoiceField(
        label="Visual fields (optional)", choices=[("", "—"), *VisualFields.choices], required=False
    )
    back_to_work = forms.ChoiceField(
        label="Back at work or school (optional)", choices=[("", "—"), *BackToWork.choices], required=False
    )
    note = forms.CharField(label="Note", required=False, max_length=500)

    def __init__(self, *args, items: list[FollowUp], today: date, **kwargs) -> None:
        kwargs.setdefault("prefix", "outcome")
        kwargs.setdefault("initial", {"assessed_on": today, "review": items[0].pk if items else None})
        super().__init__(*args, **kwargs)
        self.items = {item.pk: item for item in items}
        self.fields["review"].choices = [
            (item.pk, f"{item.get_kind_display()} at {timepoint_of(item)} — due {item.due_on.isoformat()}")
            for item in items
        ]


class OutcomeAssessmentAdminForm(forms.ModelForm):
    mrs = forms.TypedChoiceField(
        label="Modified Rankin Scale", choices=MRS_FIELD_CHOICES, coerce=int, widget=forms.RadioSelect
    )

    class Meta:
        model = OutcomeAssessment
        fields = [
            "patient",
            "episode",
            "timepoint",
            "assessed_on",
            "mrs",
            "seizures_since_last_review",
            "hit6_total",
            "papilledema",
            "visual_fields",
            "back_to_work",
            "note",
        ]


class ClinicalEventAdminForm(forms.ModelForm):
    on_anticoagulation = forms.NullBooleanField(
        required=False,
        widget=forms.NullBooleanSelect,
        help_text="Unknown: worked out from the confirmed plans when saved.",
    )

    class Meta:
        model = ClinicalEvent
        fields = [
            "patient",
            "episode",
            "kind",
            "occurred_on",
            "on_anticoagulation",
            "bleeding_site",
            "symptomatic",
            "hemoglobin_fall_g_dl",
            "units_transfused",
            "fatal",
            "medical_intervention",
            "hospitalization",
            "face_to_face_evaluation",
            "ich_new",
            "ich_growth_percent",
            "neurological_worsening",
            "vte_site",
            "death_cause",
            "note",
        ]
