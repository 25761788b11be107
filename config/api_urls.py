"""The REST API, mounted under ``/api/v1/`` by ``config/urls.py``. Views live in each app's ``api.py``."""

from csp.decorators import csp_update
from django.http import HttpRequest, JsonResponse
from django.urls import path, re_path
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.routers import SimpleRouter

from anticoag.api import InrImportApi, InrImportStatusApi, InrReadingViewSet, PlanViewSet
from anticoag.procedure_api import ProcedureViewSet
from outcomes.api import (
    ClinicalEventViewSet,
    OutcomeAssessmentViewSet,
    QualityReportApi,
    QualityReportCsvApi,
    RecanalizationApi,
)
from patients.api import EpisodeViewSet, MedicationViewSet, PatientViewSet
from reporting.api import (
    AuthTokenApi,
    CalendarFeedViewSet,
    CalendarIcsApi,
    ExportDictionaryApi,
    PatientFhirApi,
    export_view,
)
from reporting.models import ExportDataset
from scheduling.api import FollowUpViewSet, ReminderViewSet


@csrf_exempt  # answers every method with the same 404; it changes nothing
def api_not_found(request: HttpRequest, rest: str = "") -> JsonResponse:
    """Anything else under /api/v1/: a JSON 404 like every other API answer (no HTML page, no redirect)."""
    return JsonResponse({"detail": "Not found."}, status=404)


router = SimpleRouter()
router.register("patients", PatientViewSet, basename="patient")
router.register("episodes", EpisodeViewSet, basename="episode")
router.register("medications", MedicationViewSet, basename="medication")
router.register("plans", PlanViewSet, basename="plan")
router.register("inr-readings", InrReadingViewSet, basename="inr-reading")
router.register("follow-ups", FollowUpViewSet, basename="follow-up")
router.register("reminders", ReminderViewSet, basename="reminder")
router.register("calendar-feeds", CalendarFeedViewSet, basename="calendar-feed")
router.register("procedures", ProcedureViewSet, basename="procedure")
router.register("outcome-assessments", OutcomeAssessmentViewSet, basename="outcome-assessment")
router.register("clinical-events", ClinicalEventViewSet, basename="clinical-event")

exports = []
for dataset in ExportDataset.values:
    exports += [
        re_path(
            rf"^exports/{dataset}\.(?P<fmt>csv|ndjson)$",
            export_view(dataset, pseudonymised=False).as_view(),
            name=f"api-export-{dataset}",
        ),
        re_path(
            rf"^exports/research/{dataset}\.(?P<fmt>csv|ndjson)$",
            export_view(dataset, pseudonymised=True).as_view(),
            name=f"api-export-research-{dataset}",
        ),
    ]

urlpatterns = [
    path("auth/token/", AuthTokenApi.as_view(), name="api-auth-token"),
    # Before the router, whose detail route would otherwise take "import" for an id.
    path("inr-readings/import/", InrImportApi.as_view(), name="api-inr-reading-import"),
    path("inr-imports/<str:id>/", InrImportStatusApi.as_view(), name="api-inr-import-status"),
    path("patients/<str:id>/fhir/", PatientFhirApi.as_view(), name="api-patient-fhir"),
    re_path(r"^calendar/(?P<token>[A-Za-z0-9_\-]{1,200})\.ics$", CalendarIcsApi.as_view(), name="api-calendar-ics"),
    path("exports/dictionary.csv", ExportDictionaryApi.as_view(), name="api-export-dictionary"),
    path("recanalizations/", RecanalizationApi.as_view(), name="api-recanalizations"),
    path("quality-report/", QualityReportApi.as_view(), name="api-quality-report"),
    path("quality-report.csv", QualityReportCsvApi.as_view(), name="api-quality-report-csv"),
    *exports,
    *router.urls,
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view loads its start script from a URL (no inline script); its page has one inline <style>.
    path(
        "docs/",
        csp_update({"style-src": ["'unsafe-inline'"]})(SpectacularSwaggerSplitView.as_view(url_name="api-schema")),
        name="api-docs",
    ),
    re_path(r"^(?P<rest>[\s\S]*)$", api_not_found),  # [\s\S]: a newline in the path too
]
