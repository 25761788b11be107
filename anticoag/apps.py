from django.apps import AppConfig


class AnticoagConfig(AppConfig):
    """Plans (snapshots of the rules' recommendation), INR readings, dose records and DOAC lab follow-up."""

    name = "anticoag"
    verbose_name = "Anticoagulation"
