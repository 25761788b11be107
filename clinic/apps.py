"""The staff-facing pages: dashboard, Today, work lists, the patient page and the patient's letters.

This app reads ``patients``, ``anticoag`` and ``scheduling``; nothing below it imports it.
"""

from __future__ import annotations

from django.apps import AppConfig


class ClinicConfig(AppConfig):
    """The clinic's pages (admin views, templates and template tags)."""

    name = "clinic"
    verbose_name = "Clinic"
