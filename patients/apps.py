from django.apps import AppConfig
from django.db.models.signals import post_migrate


class PatientsConfig(AppConfig):
    """Clinics, staff, patients, CVT episodes with their risk factors, and lab results."""

    name = "patients"
    verbose_name = "Patients"

    def ready(self) -> None:
        from auditlog.registry import auditlog

        from .roles import sync_role_groups

        # Every change to clinical data is audited: who, when, what changed.
        for model_name in (
            "Patient",
            "CvtEpisode",
            "EpisodeRiskFactor",
            "DeteriorationEvent",
            "LabResult",
            "PatientContact",
            "PatientMedication",
        ):
            auditlog.register(self.get_model(model_name))
        auditlog.register(self.get_model("Clinic"), m2m_fields={"staff"})
        post_migrate.connect(sync_role_groups, dispatch_uid="patients.sync_role_groups")
        # A new password revokes the user's API tokens (config.hardening).
        from django.contrib.auth import get_user_model
        from django.db.backends.signals import connection_created
        from django.db.models.signals import pre_save

        from config.hardening import safe_date_loaders, tokens_deleted_on_password_change

        connection_created.connect(safe_date_loaders, dispatch_uid="safe_date_loaders")
        pre_save.connect(tokens_deleted_on_password_change, sender=get_user_model(), dispatch_uid="tokens_on_password")
