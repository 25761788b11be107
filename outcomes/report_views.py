"""The quality report's period form and its three faces: the page, the API (JSON) and CSV.

All three read :func:`outcomes.report.quality_report` over the user's clinics only.
"""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from typing import Any

from dateutil.relativedelta import relativedelta
from django import forms
from django.contrib.auth import get_user_model
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from anticoag.inr import clinic_today
from patients.choices import Role
from patients.models import Clinic
from patients.scoping import scope_to_user_clinics

from .report import quality_report, report_columns, report_rows

DATE_INPUT = {"type": "date"}

EARLIEST_YEAR = 1900

#: The longest period one report covers (its queries read every record of the period).
MAX_PERIOD_YEARS = 10


class ReportPeriodForm(forms.Form):
    """Which period, clinic and nurse; defaults: the 12 months ending today, every clinic of the user."""

    start = forms.DateField(label="From", required=False, widget=forms.DateInput(attrs=DATE_INPUT, format="%Y-%m-%d"))
    end = forms.DateField(label="To", required=False, widget=forms.DateInput(attrs=DATE_INPUT, format="%Y-%m-%d"))
    clinic = forms.TypedChoiceField(label="Clinic", required=False, coerce=int, empty_value=None)
    nurse = forms.TypedChoiceField(label="Primary nurse", required=False, coerce=int, empty_value=None)

    def __init__(self, *args, clinics: list[Clinic], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.clinics = clinics
        self.fields["clinic"].choices = [("", "All my clinics"), *((c.pk, c.name) for c in clinics)]
        nurses = (
            get_user_model()
            .objects.filter(clinics__in=clinics, groups__name=Role.NURSE)
            .distinct()
            .order_by("last_name", "first_name", "username")
        )
        self.fields["nurse"].choices = [
            ("", "Every nurse"),
            *((u.pk, u.get_full_name() or u.get_username()) for u in nurses),
        ]

    def clean_start(self):
        return self._plausible(self.cleaned_data.get("start"))

    def clean_end(self):
        return self._plausible(self.cleaned_data.get("end"))

    @staticmethod
    def _plausible(value):
        if value is not None and value.year < EARLIEST_YEAR:
            raise forms.ValidationError(f"A date before {EARLIEST_YEAR} is not plausible: check the year.")
        return value

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        today = clinic_today(self.clinics[0]) if self.clinics else timezone.localdate()
        end = data.get("end") or today
        start = data.get("start") or (end - relativedelta(months=12) + timedelta(days=1))
        if "end" not in self.errors and "start" not in self.errors:
            if end < start:
                self.add_error("end", "The end of the period is before its start.")
            elif end - start > timedelta(days=366 * MAX_PERIOD_YEARS):
                self.add_error("start", f"A report covers at most {MAX_PERIOD_YEARS} years.")
            elif end > today:
                self.add_error("end", f"{end.isoformat()} is in the future.")
        data["start"], data["end"] = start, end
        return data

    def selected_clinics(self) -> list[Clinic]:
        wanted = self.cleaned_data.get("clinic")
        return [c for c in self.clinics if wanted is None or c.pk == wanted]


def user_clinics(user) -> list[Clinic]:
    return list(scope_to_user_clinics(Clinic.objects.order_by("name"), user, "pk"))


def report_for(form: ReportPeriodForm) -> dict[str, Any]:
    data = form.cleaned_data
    return quality_report(
        clinics=form.selected_clinics(), start=data["start"], end=data["end"], nurse_id=data.get("nurse")
    )


def report_context(request: HttpRequest) -> dict[str, Any]:
    form = ReportPeriodForm(request.GET or None, clinics=user_clinics(request.user))
    if request.GET and not form.is_valid():
        return {"title": "Quality report", "form": form, "report": None}
    if not request.GET:  # the default period, shown in the form's fields
        defaults = ReportPeriodForm({}, clinics=form.clinics)
        defaults.is_valid()
        data = defaults.cleaned_data
        form = ReportPeriodForm(
            {"start": data["start"].isoformat(), "end": data["end"].isoformat()}, clinics=form.clinics
        )
        form.is_valid()
    query = request.GET.urlencode()
    return {"title": "Quality report", "form": form, "report": report_for(form), "csv_query": query}


#: A text cell starting with one of these is a formula to a spreadsheet: it is written with a leading quote.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def report_csv(report: dict[str, Any]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(report_columns())
    for row in report_rows(report):
        writer.writerow([_cell(value) for value in row])
    return buffer.getvalue()


def report_csv_response(request: HttpRequest) -> HttpResponse:
    form = ReportPeriodForm(request.GET, clinics=user_clinics(request.user))
    if not form.is_valid():
        return HttpResponse(
            "\n".join(f"{name}: {'; '.join(msgs)}" for name, msgs in form.errors.items()),
            status=400,
            content_type="text/plain; charset=utf-8",
        )
    body = report_csv(report_for(form))
    response = HttpResponse(body, content_type="text/csv; charset=utf-8")
    data = form.cleaned_data
    response["Content-Disposition"] = (
        f'attachment; filename="quality-report-{data["start"].isoformat()}-{data["end"].isoformat()}.csv"'
    )
    response["Cache-Control"] = "no-store"
    return response
