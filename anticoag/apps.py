from django.apps import AppConfig
from django.db.models.signals import post_migrate


class AnticoagConfig(AppConfig):
    """Plans (snapshots of the rules' recommendation), INR readings, dose records and DOAC lab follow-up."""

    name = "anticoag"
    verbose_name = "Anticoagulation"

    def ready(self) -> None:
        from auditlog.registry import auditlog

        from . import signals  # noqa: F401  (connects the plan refresh)
        from .replan import replan_outdated

        auditlog.register(self.get_model("Plan"), exclude_fields=["updated_at"])
        auditlog.register(self.get_model("PlanDecision"))
        auditlog.register(self.get_model("InrReading"))
        auditlog.register(self.get_model("WarfarinDose"))
        auditlog.register(self.get_model("Procedure"), exclude_fields=["updated_at"])
        auditlog.register(self.get_model("ProcedureDecision"))
        # Who imported which file when; the file itself (MRNs) and the running counts stay out of the log.
        auditlog.register(self.get_model("InrImport"), exclude_fields=["content", "rows_done", "errors"])
        # After an upgrade that changes RULES_VERSION, every open plan is recomputed once (reference rev 2).
        post_migrate.connect(replan_outdated, sender=self, dispatch_uid="anticoag.replan_outdated")
