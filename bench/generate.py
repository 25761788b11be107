"""A synthetic clinic network, generated with set-based SQL (INSERT … SELECT generate_series).

No ORM per row and no plan signals: a plan is a JSON snapshot computed once per risk profile with
``anticoag.rules.recommend`` and inserted for every episode of that profile in one statement. A row in
``bench_meta`` records the scale, so a second run at the same scale reuses the data.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import date, timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import connection, transaction
from django.utils import timezone

from anticoag import rules
from anticoag.services import facts_as_json
from patients.choices import Role
from patients.models import Clinic


@dataclass(frozen=True)
class Scale:
    name: str
    patients: int
    inr_per_patient: int = 20
    clinics: int = 8
    nurses_per_clinic: int = 10
    clinicians_per_clinic: int = 3

    @property
    def inr_readings(self) -> int:
        return self.patients * self.inr_per_patient


SCALES = {
    "full": Scale("full", 100_000),
    "small": Scale("small", 10_000),
    "tiny": Scale("tiny", 300, clinics=2, nurses_per_clinic=2, clinicians_per_clinic=1),
}

#: Risk profiles (risk factor sets) → the share of episodes with them; one plan snapshot each.
PROFILES: list[tuple[str, ...]] = [
    ("oral_contraceptive",),
    ("intracranial_hypotension",),
    ("dehydration",),
    ("antiphospholipid_syndrome",),
    ("active_cancer",),
    (),
]

FAMILY = "Martin Bernard Dubois Thomas Robert Richard Petit Durand Leroy Moreau Simon Laurent Lefebvre Michel Garcia"
GIVEN = "Ana Ben Chloe David Emma Farid Gina Hugo Ines Jules Karim Lea Marc Nora Omar Paula Remi Sara Tom Yara"

META = "bench_meta"


def _exec(sql: str, params: list | tuple | None = None) -> int:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def _meta_table() -> None:
    _exec(f"CREATE TABLE IF NOT EXISTS {META} (scale text, patients int, inr int, generated_at timestamptz)")


def generated_scale() -> str | None:
    _meta_table()
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT scale FROM {META} LIMIT 1")
        row = cursor.fetchone()
    return row[0] if row else None


def _profile_snapshots(today: date) -> list[tuple[str, str, str]]:
    """(facts JSON, proposal JSON, category) per profile, computed once with the rules."""
    out = []
    for codes in PROFILES:
        facts = rules.EpisodeFacts(
            diagnosed_on=today - timedelta(days=200),
            age=45,
            sex="female",
            weight_kg=70.0,
            serum_creatinine_mg_dl=0.9,
            risk_factors=frozenset(codes),
        )
        proposal = rules.recommend(facts).as_dict()
        out.append((json.dumps(facts_as_json(facts)), json.dumps(proposal), proposal.get("category", "")))
    return out


def _users(scale: Scale) -> dict[str, list[int]]:
    """Staff through the ORM (a few dozen rows): nurses and clinicians per clinic, a reporting user, an admin."""
    User = get_user_model()
    groups = {g.name: g for g in Group.objects.filter(name__in=Role.values)}
    clinics = Clinic.objects.bulk_create(
        [
            Clinic(name=f"Bench clinic {c + 1}", time_zone="UTC", alert_email=f"alerts{c + 1}@clinic.invalid")
            for c in range(scale.clinics)
        ]
    )
    nurses, clinicians = [], []
    for clinic in clinics:
        for role, count, bucket in (
            (Role.NURSE, scale.nurses_per_clinic, nurses),
            (Role.CLINICIAN, scale.clinicians_per_clinic, clinicians),
        ):
            for n in range(count):
                user = User(
                    username=f"{role}.{clinic.pk}.{n}", email=f"{role}.{clinic.pk}.{n}@clinic.invalid", is_staff=True
                )
                user.set_unusable_password()
                user.save()
                user.groups.add(groups[role])
                clinic.staff.add(user)
                bucket.append(user.pk)
    reporting = User(username="bench.reporting", email="reporting@clinic.invalid", is_staff=True)
    reporting.set_unusable_password()
    reporting.save()
    reporting.groups.add(groups[Role.REPORTING])
    for clinic in clinics:
        clinic.staff.add(reporting)
    admin = User(username="bench.admin", email="admin@clinic.invalid", is_staff=True, is_superuser=True)
    admin.set_unusable_password()
    admin.save()
    return {"clinics": [c.pk for c in clinics], "nurses": nurses, "clinicians": clinicians}


def _wipe() -> None:
    _meta_table()
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {META}")
        cursor.execute(
            "TRUNCATE patients_clinic, patients_patient, auth_user, reporting_exportlog RESTART IDENTITY CASCADE"
        )


def generate(scale: Scale, *, log=print) -> dict[str, float]:
    """Generate the network at ``scale`` (wiping another scale's data first). Returns timings in seconds."""
    timings: dict[str, float] = {}
    now = timezone.now().replace(microsecond=0)
    today = timezone.localdate()
    started = time.perf_counter()

    def step(name: str, sql: str, params: list | None = None) -> None:
        t0 = time.perf_counter()
        rows = _exec(sql, params)
        timings[name] = round(time.perf_counter() - t0, 2)
        log(f"  {name}: {rows:,} rows in {timings[name]:.1f} s")

    with transaction.atomic():
        _wipe()
        staff = _users(scale)
        nc, nn, nk = scale.clinics, scale.nurses_per_clinic, scale.clinicians_per_clinic
        # Patients: clinic round-robin, a nurse and a clinician of that clinic, ages 20–80, 2 % inactive.
        step(
            "patients",
            """
            INSERT INTO patients_patient (clinic_id, mrn, family_name, given_name, date_of_birth, sex, weight_kg,
                primary_nurse_id, responsible_clinician_id, active, created_at, updated_at)
            SELECT (%s::int[])[1 + mod(g, %s)],
                   'M' || lpad(g::text, 8, '0'),
                   (%s::text[])[1 + mod(g * 7, 15)],
                   (%s::text[])[1 + mod(g * 13, 20)],
                   %s::date - (7300 + mod(g * 7919, 21900)),
                   CASE WHEN mod(g, 3) = 0 THEN 'male' ELSE 'female' END,
                   round((55 + random() * 45)::numeric, 1),
                   (%s::int[])[1 + mod(g, %s) * %s + mod(g / %s, %s)],
                   (%s::int[])[1 + mod(g, %s) * %s + mod(g / %s, %s)],
                   mod(g, 50) <> 0, %s, %s
            FROM generate_series(1, %s) AS g
            """,
            [
                staff["clinics"], nc, FAMILY.split(), GIVEN.split(), today,
                staff["nurses"], nc, nn, nc, nn,
                staff["clinicians"], nc, nk, nc, nk,
                now, now, scale.patients,
            ],
        )  # fmt: skip
        # One episode each, diagnosed 6 to 13 months ago.
        step(
            "episodes",
            """
            INSERT INTO patients_cvtepisode (patient_id, diagnosed_on, sinuses, hemorrhage, subdural_hematoma,
                microbleeds, anti_amyloid_therapy, delivered_on, breastfeeding, prior_cvt, prior_vte,
                notes, created_at, updated_at)
            SELECT id, %s::date - (180 + mod(id * 31, 210))::int, '["sss"]'::jsonb, mod(id, 11) = 0, false, 0, false,
                   NULL, false, false, false, '', %s, %s
            FROM patients_patient
            """,
            [today, now, now],
        )
        profiles = _profile_snapshots(today)
        step(
            "risk_factors",
            """
            INSERT INTO patients_episoderiskfactor (episode_id, code, noted_on)
            SELECT e.id, (%s::text[])[1 + mod(e.id, %s)], e.diagnosed_on
            FROM patients_cvtepisode e WHERE (%s::text[])[1 + mod(e.id, %s)] <> ''
            """,
            [[c[0] if c else "" for c in PROFILES], len(PROFILES)] * 2,
        )
        step(
            "plans",
            """
            INSERT INTO anticoag_plan (episode_id, facts, proposal, rules_version, computed_at, status, changes,
                updated_at)
            SELECT e.id, (%s::jsonb[])[1 + mod(e.id, %s)], (%s::jsonb[])[1 + mod(e.id, %s)], %s, %s,
                   CASE WHEN mod(e.id, 10) < 8 THEN 'confirmed' ELSE 'proposed' END, '[]'::jsonb, %s
            FROM patients_cvtepisode e
            """,
            [[p[0] for p in profiles], len(PROFILES), [p[1] for p in profiles], len(PROFILES), rules.RULES_VERSION,
             now, now],
        )  # fmt: skip
        # 80 % confirmed: warfarin for a year from diagnosis, decided by the patient's clinician.
        step(
            "plan_decisions",
            """
            INSERT INTO anticoag_plandecision (plan_id, proposal, rules_version, agent, indefinite, duration_months,
                end_on, overridden, override_reason, acknowledged_warnings, decided_by_id, decided_at)
            SELECT pl.id, pl.proposal, pl.rules_version, 'warfarin', false, 12, e.diagnosed_on + 365,
                   '[]'::jsonb, '', '[]'::jsonb, p.responsible_clinician_id, e.diagnosed_on + 2
            FROM anticoag_plan pl JOIN patients_cvtepisode e ON e.id = pl.episode_id
                 JOIN patients_patient p ON p.id = e.patient_id
            WHERE pl.status = 'confirmed'
            """,
        )
        # INR readings every ~18 days over the last year; values ~ N(2.5, 0.6) clipped to 0.8–9.5.
        step(
            "inr_readings",
            """
            INSERT INTO anticoag_inrreading (patient_id, drawn_at, value, source, bleeding, entered_by_id, note,
                created_at)
            SELECT p.id,
                   %s::timestamptz - make_interval(days => (365 - k * (360 / %s))::int) + make_interval(mins => mod(p.id * 37 + k * 11, 600)::int),
                   round(greatest(0.8, least(9.5, 2.5 + 0.6 * sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random())))::numeric, 2),
                   CASE WHEN mod(p.id + k, 10) < 7 THEN 'lab' WHEN mod(p.id + k, 10) < 9 THEN 'poc' ELSE 'self_test' END,
                   mod(p.id * 7 + k, 997) = 0, NULL, '', %s
            FROM patients_patient p CROSS JOIN generate_series(0, %s - 1) AS k
            """,
            [now, scale.inr_per_patient, now, scale.inr_per_patient],
        )  # fmt: skip
        # Follow-ups: venous imaging done; next INR test and annual review ahead (after the digest week).
        step(
            "follow_ups",
            """
            INSERT INTO scheduling_followup (patient_id, episode_id, kind, due_on, window_end_on, status,
                completed_on, recanalization, result_note, rule, source, key, created_at, updated_at)
            SELECT e.patient_id, e.id, v.kind,
                   CASE v.kind WHEN 'venous_imaging' THEN e.diagnosed_on + 90
                               WHEN 'inr_test' THEN %s::date + (8 + mod(e.id, 28))::int
                               ELSE %s::date + (30 + mod(e.id, 300))::int END,
                   NULL,
                   CASE v.kind WHEN 'venous_imaging' THEN 'done' ELSE 'scheduled' END,
                   CASE v.kind WHEN 'venous_imaging' THEN e.diagnosed_on + 92 END,
                   CASE v.kind WHEN 'venous_imaging' THEN 'complete' ELSE '' END,
                   '', 'bench', 'bench', 'bench:' || e.id || ':' || v.kind, %s, %s
            FROM patients_cvtepisode e
                 CROSS JOIN (VALUES ('venous_imaging'), ('inr_test'), ('annual_review')) AS v(kind)
            """,
            [today, today, now, now],
        )
        _exec(
            f"INSERT INTO {META} (scale, patients, inr, generated_at) VALUES (%s, %s, %s, %s)",
            [scale.name, scale.patients, scale.inr_readings, now],
        )
    t0 = time.perf_counter()
    with connection.cursor() as cursor:
        if connection.get_autocommit():
            cursor.execute("VACUUM ANALYZE")
            # The new network's pages written out now, not in the background while the first section measures
            # (the first export after a generation ran at half speed). Needs a superuser, as the bench's is.
            cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            if cursor.fetchone()[0]:
                cursor.execute("CHECKPOINT")
        else:
            cursor.execute("ANALYZE")
    timings["analyze"] = round(time.perf_counter() - t0, 2)
    timings["total"] = round(time.perf_counter() - started, 2)
    log(f"  generated in {timings['total']:.1f} s")
    return timings


def ensure(scale: Scale, *, log=print) -> dict[str, float] | None:
    """Generate unless the database already holds this scale. Returns the timings, or None when reused."""
    if generated_scale() == scale.name:
        log(f"Reusing the {scale.name} network already generated in {connection.settings_dict['NAME']}.")
        return None
    log(f"Generating the {scale.name} network ({scale.patients:,} patients, {scale.inr_readings:,} INR readings)…")
    return generate(scale, log=log)
