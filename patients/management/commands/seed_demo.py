"""Load a demo clinic: staff of every role and 40 patients covering every risk category of reference §2.

Idempotent: running it again changes nothing (rows are found by natural keys). Dates are relative to
today so the demo always has follow-ups due this week and overdue. All names are invented.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, time, timedelta
from decimal import Decimal

from dateutil.relativedelta import relativedelta
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from patients.choices import CreatinineUnit, Role, Sex
from patients.models import Clinic, CvtEpisode, DeteriorationEvent, EpisodeRiskFactor, LabResult, Patient

DEMO_PASSWORD = "demo-clinic-2026"
CLINIC_NAME = "Demo CVT Clinic"

STAFF = [
    # username, first, last, role
    ("clinician", "Clara", "Morel", Role.CLINICIAN),
    ("nurse.ana", "Ana", "Lindqvist", Role.NURSE),
    ("nurse.ben", "Ben", "Okafor", Role.NURSE),
    ("reporting", "Rita", "Sousa", Role.REPORTING),
]

#: Given names by sex, so that a pregnant patient has a woman's name.
GIVEN = {
    Sex.FEMALE: ["Alma", "Chloé", "Elif", "Greta", "Ines", "Mira", "Sofia", "Lena", "Nora", "Maud"],
    Sex.MALE: ["Bruno", "Dario", "Farid", "Hugo", "Jonas", "Luca", "Omar", "Tomas", "Emil", "Pavel"],
}
FAMILY = ["Amsel", "Brandt", "Costa", "Duval", "Eklund", "Fontaine", "Gallo", "Hartmann"]


@dataclass(frozen=True)
class DemoCase:
    """One demo patient's episode: the facts that put it in a category."""

    category: str
    sex: str
    age: int
    months_ago: int
    codes: tuple[str, ...] = ()
    flags: dict = field(default_factory=dict)
    creatinine_mg_dl: str | None = "0.9"


CASES: list[DemoCase] = [
    # recurrent (4)
    DemoCase("recurrent", Sex.FEMALE, 34, 2, ("oral_contraceptive",), {"prior_cvt": True}),
    DemoCase("recurrent", Sex.MALE, 51, 7, (), {"prior_vte": True}),
    DemoCase("recurrent", Sex.FEMALE, 45, 1, ("infection",), {"second_episode_in_system": True}),
    DemoCase("recurrent", Sex.MALE, 63, 13, ("dehydration",), {"prior_cvt": True, "microbleeds": 2}),
    # severe thrombophilia (5)
    DemoCase("severe_thrombophilia", Sex.FEMALE, 29, 3, ("antiphospholipid_syndrome",)),
    DemoCase("severe_thrombophilia", Sex.MALE, 38, 5, ("protein_c_deficiency",)),
    DemoCase("severe_thrombophilia", Sex.FEMALE, 41, 9, ("fvl_homozygous",)),
    DemoCase("severe_thrombophilia", Sex.MALE, 47, 4, ("fvl_heterozygous", "pt_g20210a_heterozygous")),
    DemoCase("severe_thrombophilia", Sex.FEMALE, 56, 12, ("antithrombin_deficiency",), {"hemorrhage": True}),
    # cancer (4)
    DemoCase("cancer", Sex.MALE, 67, 2, ("active_cancer",)),
    DemoCase("cancer", Sex.FEMALE, 59, 6, ("active_cancer", "drug_induced")),
    DemoCase("cancer", Sex.MALE, 72, 8, ("active_cancer",), creatinine_mg_dl="2.4"),
    DemoCase("cancer", Sex.FEMALE, 64, 1, ("active_cancer", "infection")),
    # pregnancy (4)
    DemoCase("pregnancy", Sex.FEMALE, 31, 1, ("pregnancy",)),
    DemoCase(
        "pregnancy",
        Sex.FEMALE,
        27,
        2,
        ("puerperium",),
        {"delivered_weeks_before": 3, "breastfeeding": True},
    ),
    DemoCase("pregnancy", Sex.FEMALE, 35, 4, ("puerperium",), {"delivered_weeks_before": 5}),
    DemoCase("pregnancy", Sex.FEMALE, 33, 0, ("pregnancy", "dehydration")),
    # mild thrombophilia (5)
    DemoCase("mild_thrombophilia", Sex.FEMALE, 36, 3, ("fvl_heterozygous",)),
    DemoCase("mild_thrombophilia", Sex.MALE, 44, 5, ("pt_g20210a_heterozygous",)),
    DemoCase("mild_thrombophilia", Sex.FEMALE, 28, 8, ("hyperhomocysteinemia", "oral_contraceptive")),
    DemoCase("mild_thrombophilia", Sex.MALE, 53, 10, ("fvl_heterozygous", "head_trauma")),
    DemoCase("mild_thrombophilia", Sex.FEMALE, 40, 2, ("pt_g20210a_heterozygous",), {"microbleeds": 1}),
    # persistent (4)
    DemoCase("persistent", Sex.MALE, 58, 4, ("myeloproliferative",)),
    DemoCase("persistent", Sex.FEMALE, 32, 6, ("inflammatory_disease",)),
    DemoCase("persistent", Sex.MALE, 49, 3, ("nephrotic_syndrome",), creatinine_mg_dl="1.8"),
    DemoCase("persistent", Sex.FEMALE, 37, 9, ("inflammatory_disease", "infection")),
    # transient (9) — includes the two seed cases
    DemoCase(
        "transient",
        Sex.MALE,
        60,
        1,
        ("intracranial_hypotension",),
        {"subdural_hematoma": True, "deterioration_days_after": 5},
    ),
    DemoCase("transient", Sex.FEMALE, 42, 2, ("infection",), {"hemorrhage": True}),
    DemoCase("transient", Sex.FEMALE, 24, 3, ("oral_contraceptive",)),
    DemoCase("transient", Sex.MALE, 33, 4, ("head_trauma",)),
    DemoCase("transient", Sex.FEMALE, 46, 5, ("hormone_therapy",)),
    DemoCase("transient", Sex.MALE, 19, 2, ("lumbar_puncture",)),
    DemoCase("transient", Sex.FEMALE, 81, 3, ("dehydration",), {"microbleeds": 3}),
    DemoCase("transient", Sex.MALE, 55, 5, ("neurosurgery",), {"anti_amyloid_therapy": True}),
    DemoCase("transient", Sex.FEMALE, 30, 6, ("drug_induced",)),
    # unprovoked (5)
    DemoCase("unprovoked", Sex.MALE, 39, 3, ()),
    DemoCase("unprovoked", Sex.FEMALE, 50, 6, ()),
    DemoCase("unprovoked", Sex.MALE, 77, 8, (), creatinine_mg_dl="1.4"),
    DemoCase("unprovoked", Sex.FEMALE, 26, 11, (), {"hemorrhage": True}),
    DemoCase("unprovoked", Sex.MALE, 45, 2, (), creatinine_mg_dl=None),
]


class Command(BaseCommand):
    help = "Load the demo clinic, its staff and 40 patients (idempotent)."

    def handle(self, *args, **options) -> None:
        with transaction.atomic():
            clinic, staff = self._clinic_and_staff()
            created = sum(self._patient(clinic, staff, number, case) for number, case in enumerate(CASES, start=1))
            # The main history (clinic.demo: confirmed plans, INR readings, follow-ups), above this app: named.
            import_string("outcomes.demo.seed_outcomes_demo")(clinic=clinic)  # outcome reviews, events (issue 16)
            history = import_string("clinic.demo.demo_history_seed")(clinic=clinic, staff=staff)
            # Procedures (reference §8) live in anticoag, above this app: named, not imported at module level.
            import_string("anticoag.procedure_demo.procedure_demo_seed")(clinic=clinic, clinician=staff["clinician"])
            import_string("interfaces.demo.demo_lab_interface")(clinic=clinic)  # the lab interface (issue 17)
            import_string("clinic.inr_demo.inr_clinic_demo_seed")(clinic=clinic, staff=staff)  # the INR clinic's day
            # The day's "did not attend" pass, as beat runs it: an INR test long overdue shows as a DNA and a recall.
            import_string("scheduling.missed_tests.missed_inr_tests_mark")()
            created += import_string("anticoag.demo.seed_rules_revision_2_patients")(clinic=clinic, staff=staff)
        total = Patient.objects.filter(clinic=clinic).count()
        self.stdout.write(self.style.SUCCESS(f"Demo clinic ready: {total} patients ({created} new)."))
        if history:
            self.stdout.write(
                f"History: {history['decisions']} plans confirmed, {history['readings']} INR readings, "
                f"{history['done']} past follow-ups done, {history['today']} booked for today."
            )
        self.stdout.write(
            "Log in at /admin/ as any of: admin (administrator), clinician, nurse.ana, nurse.ben, reporting "
            f"- password: {DEMO_PASSWORD}"
        )

    def _clinic_and_staff(self):
        User = get_user_model()
        clinic, _ = Clinic.objects.get_or_create(
            name=CLINIC_NAME,
            defaults={"time_zone": "Europe/Paris", "alert_email": "alerts@demo-clinic.invalid", "digest_time": time(7)},
        )
        admin_user, made = User.objects.get_or_create(
            username="admin", defaults={"is_staff": True, "is_superuser": True, "email": "admin@demo-clinic.invalid"}
        )
        if made:
            admin_user.set_password(DEMO_PASSWORD)
            admin_user.save()
        staff = {}
        for username, first, last, role in STAFF:
            user, made = User.objects.get_or_create(
                username=username,
                defaults={
                    "first_name": first,
                    "last_name": last,
                    "email": f"{username}@demo-clinic.invalid",
                    "is_staff": True,
                },
            )
            if made:
                user.set_password(DEMO_PASSWORD)
                user.save()
            user.groups.add(Group.objects.get(name=role))
            clinic.staff.add(user)
            staff[username] = user
        return clinic, staff

    def _patient(self, clinic: Clinic, staff: dict, number: int, case: DemoCase) -> bool:
        today = timezone.localdate()
        mrn = f"DEMO-{number:04d}"
        if Patient.objects.filter(clinic=clinic, mrn=mrn).exists():
            return False
        diagnosed_on = today - relativedelta(months=case.months_ago) - timedelta(days=number % 9)
        patient = Patient(
            clinic=clinic,
            mrn=mrn,
            given_name=GIVEN[case.sex][number % len(GIVEN[case.sex])],
            family_name=FAMILY[number % len(FAMILY)],
            date_of_birth=date(today.year - case.age, 1 + number % 12, 1 + number % 27),
            sex=case.sex,
            weight_kg=Decimal(58 + (number * 7) % 40),
            primary_nurse=staff["nurse.ana"] if number % 2 else staff["nurse.ben"],
            responsible_clinician=staff["clinician"],
        )
        patient.full_clean()
        patient.save()
        flags = case.flags
        if flags.get("second_episode_in_system"):
            first = CvtEpisode(patient=patient, diagnosed_on=diagnosed_on - relativedelta(years=3))
            first.full_clean()
            first.save()
        delivered_on = None
        if "delivered_weeks_before" in flags:
            delivered_on = diagnosed_on - timedelta(weeks=flags["delivered_weeks_before"])
        episode = CvtEpisode(
            patient=patient,
            diagnosed_on=diagnosed_on,
            sinuses=["superior_sagittal"] if number % 3 else ["transverse_left", "sigmoid_left"],
            hemorrhage=flags.get("hemorrhage", False),
            subdural_hematoma=flags.get("subdural_hematoma", False),
            microbleeds=flags.get("microbleeds", 0),
            anti_amyloid_therapy=flags.get("anti_amyloid_therapy", False),
            delivered_on=delivered_on,
            breastfeeding=flags.get("breastfeeding", False),
            prior_cvt=flags.get("prior_cvt", False),
            prior_vte=flags.get("prior_vte", False),
        )
        episode.pending_risk_codes = set(case.codes)  # pregnancy is a code (rules revision 2)
        episode.full_clean()
        episode.save()
        for code in case.codes:
            factor = EpisodeRiskFactor(episode=episode, code=code, noted_on=diagnosed_on)
            factor.full_clean()
            factor.save()
        if "deterioration_days_after" in flags:
            occurred_on = min(today, diagnosed_on + timedelta(days=flags["deterioration_days_after"]))
            DeteriorationEvent.objects.create(
                episode=episode, occurred_on=occurred_on, note="Fell to semicoma; generalized seizure."
            )
        if case.creatinine_mg_dl is not None:
            LabResult.objects.create(
                patient=patient,
                drawn_on=diagnosed_on,
                serum_creatinine=Decimal(case.creatinine_mg_dl),
                creatinine_unit=CreatinineUnit.MG_DL,
                hemoglobin_g_dl=Decimal("13.2"),
            )
        return True
