from django.apps import AppConfig


class SchedulingConfig(AppConfig):
    """Follow-up items, the reminder outbox, nurse e-mails and the Celery sweep."""

    name = "scheduling"
    verbose_name = "Scheduling"
