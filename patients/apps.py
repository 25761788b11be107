from django.apps import AppConfig


class PatientsConfig(AppConfig):
    """Clinics, staff, patients, CVT episodes with their risk factors, and lab results."""

    name = "patients"
    verbose_name = "Patients"
