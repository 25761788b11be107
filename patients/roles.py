"""The permission matrix: role × model × action, in one table.

Roles are Django groups (``patients.choices.Role``). The groups and their permissions are (re)built after
every ``migrate`` from this table, so the table in code is the single source of truth; the README shows it.
Models are named ``app_label.model``; a model of an app that is not installed yet is skipped.
"""

from __future__ import annotations

from collections.abc import Iterable

from .choices import Role

VIEW, ADD, CHANGE, DELETE = "view", "add", "change", "delete"
#: Bulk export of data sets (CSV/NDJSON, identified or pseudonymised): ``reporting.export_exportlog``.
EXPORT = "export"
#: The clinic's quality report (outcomes, events, indicators): ``outcomes.report_clinicalevent``.
REPORT = "report"
READ = (VIEW,)
WRITE = (VIEW, ADD, CHANGE)

#: role → {model → actions}. Nobody but an administrator deletes clinical data: records are corrected,
#: not removed, so the audit trail stays whole. Exports (every one logged) are for the reporting role and
#: for clinicians (audits of their own clinic); nurses work from lists and their calendar feed instead. A
#: nurse's calendar feed is hers to create and revoke (DELETE revokes it; the row stays). Lab messages arrive by
#: themselves: clinicians and nurses work the hold queue (CHANGE: match to a patient, or reject).
PERMISSION_MATRIX: dict[str, dict[str, tuple[str, ...]]] = {
    Role.CLINICIAN: {
        "patients.clinic": READ,
        "patients.patient": WRITE,
        "patients.cvtepisode": WRITE,
        "patients.episoderiskfactor": (*WRITE, DELETE),
        "patients.deteriorationevent": WRITE,
        "patients.labresult": WRITE,
        "patients.patientcontact": WRITE,
        "patients.patientmedication": WRITE,
        "anticoag.plan": WRITE,
        "anticoag.plandecision": (VIEW, ADD),
        "anticoag.inrreading": WRITE,
        "anticoag.warfarindose": WRITE,
        "scheduling.followup": WRITE,
        "scheduling.reminder": READ,
        "reporting.exportlog": (EXPORT,),
        "anticoag.procedure": WRITE,
        "anticoag.proceduredecision": (VIEW, ADD),
        "interfaces.inboundmessage": (VIEW, CHANGE),
        "outcomes.outcomeassessment": WRITE,
        "outcomes.sinusrecanalization": WRITE,
        "outcomes.clinicalevent": (*WRITE, REPORT),
    },
    Role.NURSE: {
        "patients.clinic": READ,
        "patients.patient": WRITE,
        "patients.cvtepisode": READ,
        "patients.episoderiskfactor": READ,
        "patients.deteriorationevent": (VIEW, ADD),
        "patients.labresult": WRITE,
        "patients.patientcontact": WRITE,
        "patients.patientmedication": WRITE,
        "anticoag.plan": READ,
        "anticoag.plandecision": READ,
        "anticoag.inrreading": WRITE,
        # Nurses record the dosing decision (accept or change within the guardrail); beyond it, a clinician.
        "anticoag.warfarindose": (VIEW, ADD),
        "scheduling.followup": WRITE,
        "scheduling.reminder": READ,
        "reporting.calendarfeed": (VIEW, ADD, DELETE),
        "anticoag.procedure": WRITE,
        "anticoag.proceduredecision": READ,
        "interfaces.inboundmessage": (VIEW, CHANGE),
        "outcomes.outcomeassessment": WRITE,
        "outcomes.sinusrecanalization": WRITE,
        "outcomes.clinicalevent": (VIEW, ADD),
    },
    Role.REPORTING: {
        "patients.clinic": READ,
        "patients.patient": READ,
        "patients.cvtepisode": READ,
        "patients.episoderiskfactor": READ,
        "patients.deteriorationevent": READ,
        "patients.labresult": READ,
        "patients.patientcontact": READ,
        "patients.patientmedication": READ,
        "anticoag.plan": READ,
        "anticoag.plandecision": READ,
        "anticoag.inrreading": READ,
        "anticoag.warfarindose": READ,
        "scheduling.followup": READ,
        "scheduling.reminder": READ,
        "reporting.exportlog": (EXPORT,),
        "anticoag.procedure": READ,
        "anticoag.proceduredecision": READ,
        "interfaces.inboundmessage": READ,
        "outcomes.outcomeassessment": READ,
        "outcomes.sinusrecanalization": READ,
        "outcomes.clinicalevent": (VIEW, REPORT),
    },
}


def permission_codenames(role: str) -> Iterable[tuple[str, str]]:
    """(app_label, codename) pairs the role is granted."""
    for model_label, actions in PERMISSION_MATRIX[role].items():
        app_label, model = model_label.split(".")
        for action in actions:
            yield app_label, f"{action}_{model}"


def sync_role_groups(**_: object) -> None:
    """Create the role groups and give each exactly the permissions of the matrix (post_migrate)."""
    from django.contrib.auth.models import Group, Permission

    for role in Role:
        group, _ = Group.objects.get_or_create(name=role.value)
        wanted = list(permission_codenames(role))
        perms = [
            perm
            for perm in Permission.objects.filter(codename__in=[c for _, c in wanted]).select_related("content_type")
            if (perm.content_type.app_label, perm.codename) in wanted
        ]
        group.permissions.set(perms)
