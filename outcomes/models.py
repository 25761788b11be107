"""Outcome assessments, recanalization per sinus and clinical events (reference §7, rev 2).

Validation lives in ``clean()`` so the admin, the patient page and the API refuse the same things with the
same words; the services (:mod:`outcomes.services`) call ``full_clean()`` before saving and do what follows
from a record (the follow-up it completes, the urgent alert, the plan review, the recurrence's episode).
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from patients.choices import Sinus
from patients.models import CvtEpisode, Patient, validate_not_future
from scheduling.models import FollowUp, Recanalization

from . import definitions


class Timepoint(models.TextChoices):
    """When an outcome is assessed (reference §7: 3, 6 and 12 months after diagnosis)."""

    M3 = "3m", "3 months"
    M6 = "6m", "6 months"
    M12 = "12m", "12 months"
    OTHER = "other", "Other visit"


MRS_CHOICES = [(grade, f"{grade} — {words}") for grade, words in definitions.MRS_GRADES.items()]


class Papilledema(models.TextChoices):
    ABSENT = "absent", "Absent"
    PRESENT = "present", "Present"


class VisualFields(models.TextChoices):
    NORMAL = "normal", "Normal"
    ABNORMAL = "abnormal", "Abnormal"


class BackToWork(models.TextChoices):
    YES = "yes", "Yes, as before"
    PARTLY = "partly", "Partly (reduced hours or duties)"
    NO = "no", "No"
    NOT_APPLICABLE = "not_applicable", "Not applicable (not working or at school before)"


class OutcomeAssessment(models.Model):
    """A functional outcome review of one episode: mRS and the optional findings of reference §7.

    The 3-, 6- and 12-month reviews are scheduled as ``outcome_review`` follow-ups; recording the review
    completes its follow-up. One review per episode and time point (other visits are not limited).
    """

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="outcome_assessments")
    episode = models.ForeignKey(CvtEpisode, on_delete=models.PROTECT, related_name="outcome_assessments")
    follow_up = models.OneToOneField(
        FollowUp, on_delete=models.SET_NULL, null=True, blank=True, related_name="outcome_assessment"
    )
    timepoint = models.CharField("time point", max_length=8, choices=Timepoint.choices)
    assessed_on = models.DateField(validators=[validate_not_future])
    mrs = models.PositiveSmallIntegerField(
        "modified Rankin Scale", choices=MRS_CHOICES, validators=[MinValueValidator(0), MaxValueValidator(6)]
    )
    seizures_since_last_review = models.BooleanField(default=False)
    hit6_total = models.PositiveSmallIntegerField(
        "HIT-6 total",
        null=True,
        blank=True,
        validators=[MinValueValidator(definitions.HIT6_MIN), MaxValueValidator(definitions.HIT6_MAX)],
        help_text="Headache Impact Test total score, 36–78 (optional).",
    )
    papilledema = models.CharField(max_length=8, choices=Papilledema.choices, blank=True)
    visual_fields = models.CharField(max_length=8, choices=VisualFields.choices, blank=True)
    back_to_work = models.CharField("back at work or school", max_length=16, choices=BackToWork.choices, blank=True)
    note = models.CharField(max_length=500, blank=True)
    entered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    class Meta:
        ordering = ["patient", "assessed_on", "pk"]
        verbose_name = "outcome assessment"
        constraints = [
            models.UniqueConstraint(
                fields=["episode", "timepoint"],
                condition=~Q(timepoint="other"),
                name="outcome_once_per_episode_timepoint",
                violation_error_message="This episode already has a review at this time point.",
            ),
            models.CheckConstraint(condition=Q(mrs__lte=6), name="outcome_mrs_0_to_6"),
        ]
        indexes = [models.Index(fields=["timepoint", "assessed_on"], name="outcome_timepoint_idx")]

    def __str__(self) -> str:
        return f"mRS {self.mrs} at {self.get_timepoint_display()} ({self.assessed_on.isoformat()})"

    @property
    def mrs_words(self) -> str:
        return definitions.MRS_GRADES.get(self.mrs, "")

    def clean(self) -> None:
        super().clean()
        errors: dict[str, str] = {}
        if self.episode_id and self.patient_id and self.episode.patient_id != self.patient_id:
            errors["episode"] = "This episode belongs to another patient."
        if self.episode_id and self.assessed_on and self.assessed_on < self.episode.diagnosed_on:
            errors["assessed_on"] = "The review date is before the episode's diagnosis."
        if self.follow_up_id and self.episode_id and self.follow_up.episode_id != self.episode_id:
            errors["follow_up"] = "This follow-up belongs to another episode."
        if self.episode_id and self.timepoint and self.timepoint != Timepoint.OTHER:
            clash = OutcomeAssessment.objects.filter(episode_id=self.episode_id, timepoint=self.timepoint)
            if clash.exclude(pk=self.pk).exists():
                errors["timepoint"] = "This episode already has a review at this time point."
        if errors:
            raise ValidationError(errors)


class SinusRecanalization(models.Model):
    """The recanalization grade of one sinus at one venous imaging (reference §7, ACTION-CVT grades).

    The scan's own grade (``FollowUp.recanalization``) follows from its sinuses: complete only when every
    sinus is, none when none is, partial otherwise (:func:`outcomes.definitions.overall_recanalization`).
    """

    follow_up = models.ForeignKey(FollowUp, on_delete=models.CASCADE, related_name="sinus_results")
    sinus = models.CharField(max_length=24, choices=Sinus.choices)
    grade = models.CharField(max_length=10, choices=Recanalization.choices)

    class Meta:
        ordering = ["follow_up", "sinus"]
        verbose_name = "recanalization of a sinus"
        verbose_name_plural = "recanalization by sinus"
        constraints = [models.UniqueConstraint(fields=["follow_up", "sinus"], name="recanalization_once_per_sinus")]

    def __str__(self) -> str:
        return f"{self.get_sinus_display()}: {self.get_grade_display()}"


class EventKind(models.TextChoices):
    """Events of reference §7."""

    RECURRENT_CVT = "recurrent_cvt", "Recurrent CVT"
    OTHER_VTE = "other_vte", "Other venous thromboembolism"
    BLEEDING = "bleeding", "Bleeding"
    SYMPTOMATIC_ICH = "sich", "Symptomatic intracranial hemorrhage (SECRET)"
    DEATH = "death", "Death"


class VteSite(models.TextChoices):
    DVT = "dvt", "Deep vein thrombosis"
    PE = "pe", "Pulmonary embolism"
    SPLANCHNIC = "splanchnic", "Splanchnic vein thrombosis"
    OTHER = "other", "Other site"


class DeathCause(models.TextChoices):
    CVT = "cvt", "The CVT itself"
    BLEEDING = "bleeding", "Bleeding"
    VTE = "vte", "Venous thromboembolism"
    CANCER = "cancer", "Cancer"
    OTHER = "other", "Other cause"
    UNKNOWN = "unknown", "Unknown"


class IsthClass(models.TextChoices):
    MAJOR = definitions.MAJOR, definitions.ISTH_CLASSES[definitions.MAJOR]
    CRNM = definitions.CRNM, definitions.ISTH_CLASSES[definitions.CRNM]
    MINOR = definitions.MINOR, definitions.ISTH_CLASSES[definitions.MINOR]


BLEEDING_SITE_CHOICES = list(definitions.BLEEDING_SITES.items())


class ClinicalEvent(models.Model):
    """An event of reference §7 with its date: recurrence, other VTE, bleeding, symptomatic ICH, death.

    A bleed's ISTH class and the criteria that decided it are computed from its facts (site, hemoglobin
    fall, units transfused, fatal; for non-major bleeds the ISTH2015 criteria) whenever it is saved: they are
    never typed in. A symptomatic ICH must meet SECRET's definition (new, or > 33 % growth, with worsening).
    """

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="clinical_events")
    episode = models.ForeignKey(
        CvtEpisode,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="clinical_events",
        help_text="The episode under treatment when it happened (the latest one before the date when blank).",
    )
    kind = models.CharField(max_length=16, choices=EventKind.choices)
    occurred_on = models.DateField(validators=[validate_not_future])
    on_anticoagulation = models.BooleanField(
        null=True,
        blank=True,
        help_text="On anticoagulation on that day. Left blank, it is worked out from the confirmed plans.",
    )
    # Bleeding (and symptomatic ICH, which is intracranial).
    bleeding_site = models.CharField(max_length=32, choices=BLEEDING_SITE_CHOICES, blank=True)
    symptomatic = models.BooleanField(default=True, help_text="Symptomatic bleeding (ISTH2005 critical areas).")
    hemoglobin_fall_g_dl = models.DecimalField(
        "hemoglobin fall (g/dL)",
        max_digits=4,
        decimal_places=1,
        null=True,
        blank=True,
        validators=[MinValueValidator(0), MaxValueValidator(20)],
    )
    units_transfused = models.PositiveSmallIntegerField(
        "units of whole blood or red cells transfused", default=0, validators=[MaxValueValidator(100)]
    )
    fatal = models.BooleanField(default=False)
    medical_intervention = models.BooleanField(
        "needed medical intervention by a health-care professional", default=False
    )
    hospitalization = models.BooleanField("led to hospitalization or a higher level of care", default=False)
    face_to_face_evaluation = models.BooleanField("prompted a face-to-face evaluation", default=False)
    isth_class = models.CharField("ISTH class", max_length=8, choices=IsthClass.choices, blank=True, editable=False)
    isth_criteria = models.JSONField("criteria met", default=list, blank=True, editable=False)
    classification_source = models.CharField(max_length=20, blank=True, editable=False)
    # Symptomatic intracranial hemorrhage (SECRET).
    ich_new = models.BooleanField("new intracranial hemorrhage", default=False)
    ich_growth_percent = models.DecimalField(
        "growth of an existing hemorrhage (%)",
        max_digits=6,
        decimal_places=1,
        null=True,
        blank=True,
        validators=[MinValueValidator(0), MaxValueValidator(10000)],
    )
    neurological_worsening = models.BooleanField(default=False)
    # Other VTE.
    vte_site = models.CharField("VTE site", max_length=12, choices=VteSite.choices, blank=True)
    # Death.
    death_cause = models.CharField(max_length=12, choices=DeathCause.choices, blank=True)
    # Recurrence: the episode it opened.
    new_episode = models.OneToOneField(
        CvtEpisode, on_delete=models.PROTECT, null=True, blank=True, related_name="opened_by_event", editable=False
    )
    note = models.CharField(max_length=500, blank=True)
    entered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    class Meta:
        ordering = ["patient", "occurred_on", "pk"]
        verbose_name = "clinical event"
        permissions = [("report_clinicalevent", "Can see the clinic's quality report")]
        indexes = [models.Index(fields=["kind", "occurred_on"], name="event_kind_date_idx")]
        constraints = [
            models.UniqueConstraint(fields=["patient"], condition=Q(kind="death"), name="event_one_death_per_patient"),
        ]

    def __str__(self) -> str:
        text = f"{self.get_kind_display()} on {self.occurred_on.isoformat()}"
        if self.isth_class:
            text += f" ({self.get_isth_class_display()})"
        return text

    def save(self, *args, **kwargs) -> None:
        self.classify()
        if kwargs.get("update_fields") is not None:
            kwargs["update_fields"] = {*kwargs["update_fields"], "isth_class", "isth_criteria", "classification_source"}
        super().save(*args, **kwargs)

    # -- computed ---------------------------------------------------------------------------------------------

    @property
    def is_bleeding(self) -> bool:
        return self.kind in (EventKind.BLEEDING, EventKind.SYMPTOMATIC_ICH)

    def bleeding_facts(self) -> definitions.BleedingFacts:
        return definitions.BleedingFacts(
            site=self.bleeding_site,
            symptomatic=self.symptomatic,
            hemoglobin_fall_g_dl=self.hemoglobin_fall_g_dl,
            units_transfused=self.units_transfused or 0,
            fatal=self.fatal,
            medical_intervention=self.medical_intervention,
            hospitalization=self.hospitalization,
            face_to_face_evaluation=self.face_to_face_evaluation,
        )

    def classify(self) -> None:
        """Set the ISTH class and criteria from the facts (bleeds and sICH); clear them otherwise."""
        if self.kind == EventKind.SYMPTOMATIC_ICH and not self.bleeding_site:
            self.bleeding_site = "intracranial"
        if self.is_bleeding and self.bleeding_site in definitions.BLEEDING_SITES:
            result = definitions.classify_bleeding(self.bleeding_facts())
            self.isth_class, self.isth_criteria = result.isth_class, list(result.criteria)
            self.classification_source = result.source
        else:
            self.isth_class, self.isth_criteria, self.classification_source = "", [], ""

    @property
    def isth_criterion(self) -> str:
        """The criterion that made the bleed major (or clinically relevant): the first one met."""
        return self.isth_criteria[0] if self.isth_criteria else ""

    @property
    def is_major_bleed(self) -> bool:
        return self.is_bleeding and self.isth_class == IsthClass.MAJOR

    @property
    def sich_reason(self) -> str:
        return definitions.symptomatic_ich(
            new_hemorrhage=self.ich_new, growth_percent=self.ich_growth_percent, worsening=self.neurological_worsening
        )[1]

    def clean(self) -> None:
        super().clean()
        errors: dict[str, str] = {}
        if self.episode_id and self.patient_id and self.episode.patient_id != self.patient_id:
            errors["episode"] = "This episode belongs to another patient."
        if self.episode_id and self.occurred_on and self.occurred_on < self.episode.diagnosed_on:
            errors["occurred_on"] = "The event date is before the episode's diagnosis."
        if self.is_bleeding and not self.bleeding_site:
            errors["bleeding_site"] = "Give the bleeding site."
        elif self.kind == EventKind.SYMPTOMATIC_ICH and self.bleeding_site != "intracranial":
            errors["bleeding_site"] = "A symptomatic intracranial hemorrhage is intracranial."
        elif not self.is_bleeding and self.bleeding_site:
            errors["bleeding_site"] = "Only a bleeding event has a bleeding site; leave it empty."
        if self.kind == EventKind.SYMPTOMATIC_ICH:
            meets, why = definitions.symptomatic_ich(
                new_hemorrhage=self.ich_new,
                growth_percent=self.ich_growth_percent,
                worsening=self.neurological_worsening,
            )
            if not meets:
                field = "neurological_worsening" if "worsening" in why and "neither" not in why else "ich_new"
                errors[field] = (
                    f"Not a symptomatic ICH by the SECRET definition ({why}): new hemorrhage or growth of more "
                    "than 33 %, with neurological worsening. Record it as a bleeding event instead."
                )
        if self.kind == EventKind.OTHER_VTE and not self.vte_site:
            errors["vte_site"] = "Give the site of the venous thromboembolism."
        if self.kind != EventKind.OTHER_VTE and self.vte_site:
            errors["vte_site"] = "Only another VTE has a VTE site; leave it empty."
        if self.kind == EventKind.DEATH and not self.death_cause:
            errors["death_cause"] = "Give the cause of death (or unknown)."
        if self.kind != EventKind.DEATH and self.death_cause:
            errors["death_cause"] = "Only a death has a cause of death; leave it empty."
        if self.kind == EventKind.DEATH and self.patient_id:
            clash = ClinicalEvent.objects.filter(patient_id=self.patient_id, kind=EventKind.DEATH)
            if clash.exclude(pk=self.pk).exists():
                errors["kind"] = "A death is already recorded for this patient."
        if errors:
            raise ValidationError(errors)
