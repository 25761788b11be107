"""Clinics, their staff, patients, CVT episodes and the facts the rules need (reference §1–§3).

Validation lives in ``clean()`` so the admin, the API and imports refuse the same things with the same
messages; ``full_clean()`` is called by the services before saving.
"""

from __future__ import annotations

import zoneinfo
from datetime import date, time
from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils import timezone

from anticoag.medicines import MEDICINE_CHOICES, MEDICINES
from anticoag.rules import (
    DOAC_AGENTS,
    PREGNANCY_CODES,
    RISK_FACTOR_CHOICES,
    RISK_FACTORS,
    UMOL_PER_MG_DL,
    FactsError,
    check_pregnancy_facts,
)

from .choices import ContactChannel, ContactKind, ContactOutcome, CreatinineUnit, Sex, Sinus
from .dates import validate_clinical_date


def validate_time_zone(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError(f"'{value}' is not an IANA time zone (for example Europe/Paris).", code="invalid")


def parse_tablet_strengths(value: str) -> list[Decimal]:
    """'0.5, 1, 3, 5' → [0.5, 1, 3, 5] (mg); raises ValueError naming the bad part."""
    strengths: list[Decimal] = []
    for part in (value or "").replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        try:
            strength = Decimal(part)
        except InvalidOperation:
            raise ValueError(f"'{part}' is not a number of mg.") from None
        if not strength.is_finite() or strength <= 0 or strength > 20:
            raise ValueError(f"'{part}' is not a tablet strength (above 0 and up to 20 mg).")
        strengths.append(strength)
    if not strengths:
        raise ValueError("Give at least one tablet strength.")
    return sorted(set(strengths))


def parse_tablet_colours(value: str) -> dict[Decimal, str]:
    """'1=brown, 3=blue' → {1: 'brown', 3: 'blue'}; raises ValueError naming the bad part."""
    colours: dict[Decimal, str] = {}
    for part in (value or "").replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        strength, sep, colour = part.partition("=")
        try:
            key = Decimal(strength.strip())
        except InvalidOperation:
            raise ValueError(f"'{part}' is not 'strength=colour'.") from None
        if not sep or not colour.strip() or not key.is_finite():
            raise ValueError(f"'{part}' is not 'strength=colour'.")
        colours[key] = colour.strip().lower()
    return colours


def validate_tablet_strengths(value: str) -> None:
    try:
        parse_tablet_strengths(value)
    except ValueError as exc:
        raise ValidationError(str(exc)) from None


def validate_tablet_colours(value: str) -> None:
    try:
        parse_tablet_colours(value)
    except ValueError as exc:
        raise ValidationError(str(exc)) from None


def validate_not_future(value: date) -> None:
    """Clinical dates are facts that happened: none may lie after today (in the server's time zone).

    Kept for old migrations; fields use :func:`patients.dates.validate_clinical_date`, which also refuses
    dates before the earliest clinical year."""
    if value and value > timezone.localdate():
        raise ValidationError(f"{value.isoformat()} is in the future.", code="future")


class Clinic(models.Model):
    """An anticoagulation clinic: its time zone decides when nurses get their morning digest."""

    name = models.CharField(max_length=200, unique=True)
    time_zone = models.CharField(max_length=64, default="UTC", validators=[validate_time_zone])
    alert_email = models.EmailField(help_text="Address that receives urgent alerts (critical INR, escalations).")
    digest_time = models.TimeField(default=time(7, 0), help_text="Local time of the nurses' daily digest.")
    extended_inr_interval = models.BooleanField(
        default=False,
        help_text="Opt in to INR intervals of up to 12 weeks for stable patients (CHEST2012 2B).",
    )
    staff = models.ManyToManyField(settings.AUTH_USER_MODEL, related_name="clinics", blank=True)
    # --- The INR clinic's day (issue 14; reference §4 "Warfarin tablets", rev 2) ---------------------------
    phone = models.CharField(
        max_length=40,
        blank=True,
        db_default="",
        help_text="The clinic's phone number, printed on the patient's dosing letter.",
    )
    tablet_strengths = models.CharField(
        "warfarin tablet strengths (mg)",
        max_length=100,
        default="0.5, 1, 3, 5",
        db_default="0.5, 1, 3, 5",
        validators=[validate_tablet_strengths],
        help_text="Strengths the clinic stocks, comma-separated (UK: 0.5, 1, 3, 5; US: 1, 2, 2.5, 3, 4, 5, 6, 7.5, 10).",
    )
    tablet_halves_allowed = models.BooleanField("half tablets allowed", default=False, db_default=False)
    tablet_colours = models.CharField(
        max_length=300,
        blank=True,
        default="0.5=white, 1=brown, 3=blue, 5=pink",
        db_default="0.5=white, 1=brown, 3=blue, 5=pink",
        validators=[validate_tablet_colours],
        help_text="Colour of each strength on the patient's letter, e.g. '1=brown, 3=blue, 5=pink'.",
    )
    dose_guardrail_percent = models.PositiveSmallIntegerField(
        "dose guardrail (%)",
        default=20,
        db_default=20,
        validators=[MinValueValidator(1), MaxValueValidator(100)],
        help_text="A suggestion never changes the weekly dose by more than this (reference §4: 20 %).",
    )
    dna_after_days = models.PositiveSmallIntegerField(
        "did not attend after (days)",
        default=7,
        db_default=7,
        validators=[MinValueValidator(1), MaxValueValidator(60)],
        help_text="An INR test not done this many days after its due date becomes 'did not attend'.",
    )
    # The clinic's DOAC formulary (reference §3 rev 2: "which DOACs a clinic offers is its formulary setting
    # (default: all three)"). Plans propose only the DOACs ticked here.
    offers_dabigatran = models.BooleanField("formulary: dabigatran", default=True, db_default=True)
    offers_rivaroxaban = models.BooleanField("formulary: rivaroxaban", default=True, db_default=True)
    offers_apixaban = models.BooleanField("formulary: apixaban", default=True, db_default=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def doac_formulary(self) -> tuple[str, ...]:
        """The DOACs this clinic offers, in the reference's order."""
        return tuple(agent for agent in DOAC_AGENTS if getattr(self, f"offers_{agent}"))


class Patient(models.Model):
    """A patient of one clinic. The MRN is unique within the clinic (case-insensitively)."""

    clinic = models.ForeignKey(Clinic, on_delete=models.PROTECT, related_name="patients")
    mrn = models.CharField("MRN", max_length=40, help_text="Medical record number, unique within the clinic.")
    family_name = models.CharField(max_length=120)
    given_name = models.CharField(max_length=120)
    date_of_birth = models.DateField(validators=[validate_clinical_date])
    sex = models.CharField(max_length=8, choices=Sex.choices)
    weight_kg = models.DecimalField(
        "weight (kg)",
        max_digits=5,
        decimal_places=1,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal("0.5"), "Weight must be positive."), MaxValueValidator(Decimal("500"))],
    )
    primary_nurse = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="nursed_patients",
        limit_choices_to={"groups__name": "nurse"},
    )
    responsible_clinician = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="clinician_patients",
        limit_choices_to={"groups__name": "clinician"},
    )
    # Contact details: shown to staff on the patient page, never put in an e-mail.
    phone = models.CharField(max_length=40, blank=True, db_default="")
    preferred_contact = models.CharField(
        "preferred contact channel", max_length=10, choices=ContactChannel.choices, blank=True, db_default=""
    )
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    class Meta:
        ordering = ["family_name", "given_name", "pk"]
        constraints = [
            models.UniqueConstraint(
                "clinic",
                Lower("mrn"),
                name="patient_mrn_unique_in_clinic",
                violation_error_message="A patient with this MRN already exists in this clinic.",
            ),
        ]
        indexes = [
            models.Index(fields=["mrn"], name="patient_mrn_idx"),
            # The changelist's order (Meta.ordering): its first page is read from the index, not sorted from
            # every patient (issue 9: 100,000 patients).
            models.Index(fields=["family_name", "given_name", "id"], name="patient_name_order_idx"),
        ]

    def __str__(self) -> str:
        # MRN only: the string form appears in admin messages, logs and reminder e-mails.
        return f"MRN {self.mrn}"

    @property
    def full_name(self) -> str:
        return f"{self.given_name} {self.family_name}"

    def age_on(self, on: date) -> int:
        years = on.year - self.date_of_birth.year
        return years - ((on.month, on.day) < (self.date_of_birth.month, self.date_of_birth.day))

    def clean(self) -> None:
        super().clean()
        errors: dict[str, str] = {}
        if self.mrn:
            self.mrn = self.mrn.strip()
            if self.clinic_id:
                clash = Patient.objects.filter(clinic_id=self.clinic_id, mrn__iexact=self.mrn).exclude(pk=self.pk)
                if clash.exists():
                    errors["mrn"] = "A patient with this MRN already exists in this clinic."
        if self.primary_nurse_id and self.clinic_id and not self.clinic.staff.filter(pk=self.primary_nurse_id).exists():
            errors["primary_nurse"] = "The primary nurse must be on this clinic's staff."
        if (
            self.responsible_clinician_id
            and self.clinic_id
            and not self.clinic.staff.filter(pk=self.responsible_clinician_id).exists()
        ):
            # Escalation e-mails go to this clinician: never to another clinic's staff.
            errors["responsible_clinician"] = "The responsible clinician must be on this clinic's staff."
        if errors:
            raise ValidationError(errors)


class CvtEpisode(models.Model):
    """One episode of cerebral venous thrombosis and the facts that decide its treatment.

    A patient's later episode is a recurrence (reference §1: an earlier episode in the system counts as
    ``prior_cvt`` automatically); ``prior_cvt`` records an earlier CVT that is *not* in the system.
    """

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="episodes")
    diagnosed_on = models.DateField(validators=[validate_clinical_date])
    sinuses = models.JSONField(default=list, blank=True, help_text="Sinuses and veins involved.")
    hemorrhage = models.BooleanField("intracranial hemorrhage at diagnosis", default=False)
    subdural_hematoma = models.BooleanField(default=False)
    microbleeds = models.PositiveSmallIntegerField("number of cerebral microbleeds", default=0)
    anti_amyloid_therapy = models.BooleanField(
        "anti-amyloid therapy or ARIA-H", default=False, help_text="On lecanemab/donanemab, or ARIA-H seen."
    )
    # Pregnancy is one fact (reference §0/§3 rev 2): the ``pregnancy``/``puerperium`` risk factor code. There is
    # no separate flag; these dates and breastfeeding need that code.
    delivered_on = models.DateField(
        "delivery date",
        null=True,
        blank=True,
        validators=[validate_clinical_date],
        help_text="Record it when the pregnancy ends: until then a 'pregnancy' episode counts as pregnant now "
        "(LMWH only).",
    )
    expected_delivery_on = models.DateField(
        "expected delivery date",
        null=True,
        blank=True,
        help_text="While pregnant: the end of anticoagulation is computed from it (6 weeks after delivery).",
    )
    breastfeeding = models.BooleanField(default=False)
    prior_cvt = models.BooleanField(
        "earlier CVT outside this system", default=False, help_text="Episodes recorded here count automatically."
    )
    prior_vte = models.BooleanField("venous thromboembolism after an earlier CVT", default=False)
    notes = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    class Meta:
        ordering = ["patient", "diagnosed_on", "pk"]
        verbose_name = "CVT episode"

    def __str__(self) -> str:
        return f"CVT episode of {self.diagnosed_on.isoformat()} ({self.patient})"

    @property
    def earlier_episodes(self) -> models.QuerySet[CvtEpisode]:
        qs = CvtEpisode.objects.filter(patient_id=self.patient_id, diagnosed_on__lt=self.diagnosed_on)
        return qs.exclude(pk=self.pk) if self.pk else qs

    def risk_codes(self) -> set[str]:
        """The episode's risk factor codes (from the prefetch cache when there is one)."""
        if not self.pk:
            return set()
        return {f.code for f in self.risk_factors.all()}

    @property
    def pregnancy_associated(self) -> bool:
        """The ``pregnancy`` or ``puerperium`` code (reference §0: the one pregnancy fact)."""
        return bool(self.risk_codes() & PREGNANCY_CODES)

    @property
    def pregnant(self) -> bool:
        """Kept for readers of revision 1 (exports, FHIR): the episode is pregnancy-associated."""
        return self.pregnancy_associated

    @property
    def pregnant_now(self) -> bool:
        """Pregnant now (reference §3 rev 2): the ``pregnancy`` code and no delivery date recorded."""
        return "pregnancy" in self.risk_codes() and self.delivered_on is None

    def pregnancy_errors(self, codes: set[str] | None = None) -> dict[str, str]:
        """Contradictions between the pregnancy dates and the codes (reference §3 rev 2), field → message.

        ``codes`` are the codes the episode will have (the admin passes the submitted inline rows); by default
        the saved ones. A male patient cannot have a pregnancy code."""
        codes = self.risk_codes() if codes is None else codes
        errors: dict[str, str] = {}
        try:
            check_pregnancy_facts(
                risk_factors=codes,
                diagnosed_on=self.diagnosed_on,
                delivered_on=self.delivered_on,
                expected_delivery_on=self.expected_delivery_on,
                breastfeeding=self.breastfeeding,
            )
        except FactsError as err:
            errors[err.field] = err.message[0].upper() + err.message[1:] + "."
        if codes & PREGNANCY_CODES and self.patient_id and self.patient.sex == Sex.MALE:
            errors["risk_factors"] = "The patient is recorded as male: no pregnancy or puerperium code."
        return errors

    @property
    def is_recurrence(self) -> bool:
        """True when the patient had an earlier CVT, here or elsewhere."""
        return self.prior_cvt or self.earlier_episodes.exists()

    def clean(self) -> None:
        super().clean()
        errors: dict[str, str] = {}
        unknown = [s for s in self.sinuses or [] if s not in Sinus.values]
        if not isinstance(self.sinuses, list):
            errors["sinuses"] = "Expected a list of sinus codes."
        elif unknown:
            errors["sinuses"] = (
                f"Unknown sinus code(s) {', '.join(map(str, unknown))}; allowed: {', '.join(Sinus.values)}."
            )
        if self.delivered_on and self.diagnosed_on and (self.diagnosed_on - self.delivered_on).days > 366:
            errors["delivered_on"] = "The delivery date is more than a year before the diagnosis."
        if not getattr(self, "_pregnancy_checked_with_inlines", False):
            # The admin checks with the risk factor rows being submitted (its inline formset); code that creates
            # an episode with its codes sets ``pending_risk_codes``; everyone else is checked with the saved codes.
            pending = getattr(self, "pending_risk_codes", None)
            for field, message in self.pregnancy_errors(None if pending is None else set(pending)).items():
                errors.setdefault(field if field != "risk_factors" else NON_FIELD_ERRORS, message)
        if self.diagnosed_on and self.patient_id and self.diagnosed_on < self.patient.date_of_birth:
            errors["diagnosed_on"] = "The diagnosis date is before the patient's date of birth."
        if errors:
            raise ValidationError(errors)


class EpisodeRiskFactor(models.Model):
    """A risk factor of an episode, from the fixed vocabulary of reference §1."""

    episode = models.ForeignKey(CvtEpisode, on_delete=models.CASCADE, related_name="risk_factors")
    code = models.CharField(max_length=40, choices=RISK_FACTOR_CHOICES)
    noted_on = models.DateField(default=timezone.localdate, validators=[validate_clinical_date])

    class Meta:
        ordering = ["episode", "code"]
        constraints = [
            models.UniqueConstraint(fields=["episode", "code"], name="risk_factor_once_per_episode"),
        ]

    def __str__(self) -> str:
        return self.get_code_display()

    def clean(self) -> None:
        super().clean()
        if self.code and self.code not in RISK_FACTORS:
            raise ValidationError(
                {"code": f"Unknown risk factor code '{self.code}'; allowed: {', '.join(RISK_FACTORS)}."}
            )


class DeteriorationEvent(models.Model):
    """Neurological deterioration during an episode: it calls for urgent imaging (reference §4)."""

    episode = models.ForeignKey(CvtEpisode, on_delete=models.CASCADE, related_name="deteriorations")
    occurred_on = models.DateField(validators=[validate_clinical_date])
    note = models.TextField(help_text="New deficit, falling consciousness, seizures, worsening headache…")

    class Meta:
        ordering = ["episode", "occurred_on", "pk"]

    def __str__(self) -> str:
        return f"Deterioration on {self.occurred_on.isoformat()}"

    def clean(self) -> None:
        super().clean()
        if self.occurred_on and self.episode_id and self.occurred_on < self.episode.diagnosed_on:
            raise ValidationError({"occurred_on": "Deterioration cannot precede the episode's diagnosis."})


class LabResult(models.Model):
    """Serum creatinine (for Cockcroft-Gault) and hemoglobin, as drawn on a day."""

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="lab_results")
    drawn_on = models.DateField(validators=[validate_clinical_date])
    serum_creatinine = models.DecimalField(
        max_digits=7, decimal_places=2, null=True, blank=True, validators=[MinValueValidator(Decimal("0.01"))]
    )
    creatinine_unit = models.CharField(max_length=8, choices=CreatinineUnit.choices, blank=True)
    hemoglobin_g_dl = models.DecimalField(
        "hemoglobin (g/dL)",
        max_digits=4,
        decimal_places=1,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal("1.0")), MaxValueValidator(Decimal("25.0"))],
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["patient", "-drawn_on", "-pk"]
        indexes = [models.Index(fields=["patient", "-drawn_on"], name="lab_patient_drawn_idx")]

    def __str__(self) -> str:
        return f"Labs of {self.drawn_on.isoformat()}"

    @property
    def creatinine_mg_dl(self) -> float | None:
        if self.serum_creatinine is None:
            return None
        value = float(self.serum_creatinine)
        return value / UMOL_PER_MG_DL if self.creatinine_unit == CreatinineUnit.UMOL_L else value

    def clean(self) -> None:
        super().clean()
        errors: dict[str, str] = {}
        if self.serum_creatinine is None and self.hemoglobin_g_dl is None:
            errors["serum_creatinine"] = "Enter a creatinine or a hemoglobin value."
        if self.serum_creatinine is not None and not self.creatinine_unit:
            errors["creatinine_unit"] = "Give the creatinine unit (mg/dL or µmol/L)."
        if self.serum_creatinine is not None and self.creatinine_unit:
            mg_dl = self.creatinine_mg_dl or 0
            if not 0.1 <= mg_dl <= 20:
                errors["serum_creatinine"] = (
                    f"{self.serum_creatinine} {self.get_creatinine_unit_display()} is outside the plausible range "
                    "(0.1–20 mg/dL, 9–1768 µmol/L); check the unit."
                )
        if errors:
            raise ValidationError(errors)


class PatientContact(models.Model):
    """One contact with a patient (or an attempt): a call, a message, a letter or a visit, with its outcome."""

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="contacts")
    channel = models.CharField(max_length=10, choices=ContactKind.choices)
    outcome = models.CharField(max_length=16, choices=ContactOutcome.choices)
    note = models.CharField(max_length=500, blank=True)
    contacted_at = models.DateTimeField()
    contacted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-contacted_at", "-pk"]
        verbose_name = "contact"
        indexes = [models.Index(fields=["patient", "-contacted_at"], name="contact_patient_idx")]

    def __str__(self) -> str:
        return f"{self.get_channel_display()} ({self.get_outcome_display()})"


class PatientMedication(models.Model):
    """A medicine the patient takes, from the fixed vocabulary of reference §5a (rev 2).

    Current on a day = started on or before it and not stopped by then (``stopped_on`` is the first day
    without it). The rules read the current ones (DOAC eligibility, interactions); starting or stopping one
    that moves the INR of a warfarin patient schedules an INR test (``scheduling.follow_ups``).
    """

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="medications")
    code = models.CharField("medicine", max_length=40, choices=MEDICINE_CHOICES)
    started_on = models.DateField(validators=[validate_clinical_date])
    stopped_on = models.DateField(
        null=True, blank=True, validators=[validate_clinical_date], help_text="First day without it; empty if current."
    )
    note = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["patient", "-started_on", "pk"]
        verbose_name = "current medicine"
        constraints = [
            models.CheckConstraint(
                condition=Q(stopped_on__isnull=True) | Q(stopped_on__gte=models.F("started_on")),
                name="medication_stops_after_start",
                violation_error_message="A medicine cannot stop before it started.",
            ),
        ]
        indexes = [models.Index(fields=["patient", "code"], name="medication_patient_code_idx")]

    def __str__(self) -> str:
        return f"{self.get_code_display()} from {self.started_on.isoformat()}"

    def current_on(self, day: date) -> bool:
        return self.started_on <= day and (self.stopped_on is None or self.stopped_on > day)

    def clean(self) -> None:
        super().clean()
        errors: dict[str, str] = {}
        if self.code and self.code not in MEDICINES:
            errors["code"] = f"Unknown medicine '{self.code}'; allowed: {', '.join(MEDICINES)}."
        if self.started_on and self.stopped_on and self.stopped_on < self.started_on:
            errors["stopped_on"] = "A medicine cannot stop before it started."
        if self.patient_id and self.code and self.started_on and not errors:
            overlapping = PatientMedication.objects.filter(patient_id=self.patient_id, code=self.code).exclude(
                pk=self.pk
            )
            overlapping = overlapping.filter(Q(stopped_on__isnull=True) | Q(stopped_on__gt=self.started_on))
            if self.stopped_on is not None:
                overlapping = overlapping.filter(started_on__lt=self.stopped_on)
            if overlapping.exists():
                errors["started_on"] = "This medicine is already recorded for the patient over these dates."
        if errors:
            raise ValidationError(errors)
