from django.apps import AppConfig


class SchedulingConfig(AppConfig):
    """Follow-up items, the reminder outbox, nurse e-mails and the Celery sweep."""

    name = "scheduling"
    verbose_name = "Scheduling"

    def ready(self) -> None:
        from auditlog.registry import auditlog

        from . import receivers  # noqa: F401  (generates follow-ups when plans, readings and labs change)

        auditlog.register(self.get_model("FollowUp"), exclude_fields=["updated_at"])
