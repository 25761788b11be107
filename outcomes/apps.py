from django.apps import AppConfig


class OutcomesConfig(AppConfig):
    """How patients do (reference §7): outcome assessments, recanalization per sinus, clinical events and the
    clinic's quality report. Depends on patients, anticoag and scheduling; nothing below depends on it."""

    name = "outcomes"
    verbose_name = "Outcomes and events"

    def ready(self) -> None:
        from auditlog.registry import auditlog

        # Clinical data: every change is audited.
        auditlog.register(self.get_model("OutcomeAssessment"), exclude_fields=["updated_at"])
        auditlog.register(self.get_model("SinusRecanalization"))
        auditlog.register(self.get_model("ClinicalEvent"), exclude_fields=["updated_at"])
