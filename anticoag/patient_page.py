"""The patient page's "Current medicines" part (rules revision 2, reference §5a): its context, read-only."""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from patients.models import Patient

from . import medicines


def current_medicines_context(*, patient: Patient, agent: str | None = None) -> dict[str, Any]:
    """The medicines current today, each with its effect on ``agent`` (the confirmed one), or on every agent."""
    today = timezone.localdate()
    rows = []
    for medication in patient.medications.all():
        if not medication.current_on(today):
            continue
        medicine = medicines.MEDICINES.get(medication.code)
        if medicine is None:
            continue
        if agent in medicines.AGENTS:
            effect = medicine.effect_on(agent).text
        else:
            effect = "; ".join(f"{a}: {e.text}" for a, e in medicine.effects.items() if e.kind != medicines.NONE)
        rows.append(
            {
                "name": medicine.name,
                "drug_class": medicine.drug_class,
                "started_on": medication.started_on,
                "effect": effect or "none",
                "verified": medicine.verified,
            }
        )
    return {"rows": rows, "source": medicines.MEDICINES_SOURCE}
