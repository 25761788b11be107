from django.apps import AppConfig


class ReportingConfig(AppConfig):
    """Exports (CSV, NDJSON, pseudonymised for research), the FHIR view of a patient, nurses' calendar feeds."""

    name = "reporting"
    verbose_name = "Reporting"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the deployment check of the pseudonym key)
