"""Every staff page runs the same number of queries at a small and at a larger data size (issue #7, "Scale").

The data are built once for the module inside a transaction that is rolled back at the end: 5 patients first
(each page measured), then 60 more patients of three nurses in two clinics (each page measured again). A page
that queried per row would show it at once. The counts are written to test-output/query-counts.json.
"""

from __future__ import annotations

import difflib
import json
import re
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext

from .clinic_data import add_patient, grow, make_clinic_data

# The marker makes pytest-django create the test database; the data live in the module fixture's transaction.
pytestmark = pytest.mark.django_db

OUTPUT = Path(__file__).resolve().parents[2] / "test-output" / "query-counts.json"

CHANGELISTS = {
    "patients": "/admin/patients/patient/",
    "episodes": "/admin/patients/cvtepisode/",
    "plans": "/admin/anticoag/plan/",
    "inr_readings": "/admin/anticoag/inrreading/",
    "warfarin_doses": "/admin/anticoag/warfarindose/",
    "follow_ups": "/admin/scheduling/followup/",
    "reminders": "/admin/scheduling/reminder/",
    "labs": "/admin/patients/labresult/",
}
#: Filtered lists staff use every day (my work, a search by MRN, out-of-range INRs).
FILTERED = {
    "my_work": ("/admin/scheduling/followup/", {"mine": "1", "due": "due"}),
    "inr_above_range": ("/admin/anticoag/inrreading/", {"inr_range": "above"}),
    "pending_plans": ("/admin/anticoag/plan/", {"status__exact": "proposed"}),
}
PAGES = ["dashboard_nurse", "dashboard_clinician", "patient_page", *CHANGELISTS, *FILTERED, "mrn_search"]

TEST_SETTINGS = {
    "PASSWORD_HASHERS": ["django.contrib.auth.hashers.MD5PasswordHasher"],
    "STORAGES": {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    },
}


def _measure(client: Client, url: str, params: dict | None = None) -> tuple[int, list[str], object]:
    client.get(url, params or {})  # warm caches (content types, permissions) outside the measurement
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url, params or {})
    assert response.status_code == 200, (url, response.status_code)
    return len(queries), [q["sql"] for q in queries.captured_queries], response


def _shape(sql: str) -> str:
    """A query without its literal values and savepoint names, to compare the two sizes' queries."""
    sql = re.sub(r'"s\d+_x\d+"|"_django_curs_\w+"', '"name"', sql)
    return re.sub(r"'[^']*'|\b\d+\b", "?", sql)[:300]


def _rows(response) -> int | None:
    cl = (response.context or {}).get("cl")
    return None if cl is None else len(cl.result_list)


def _measure_all(data, patient, mrn) -> dict[str, dict]:
    nurse_client, clinician_client = Client(), Client()
    nurse_client.force_login(data.nurses[0])
    clinician_client.force_login(data.clinician)
    results: dict[str, dict] = {}

    def record(name, client, url, params=None):
        n, sql, response = _measure(client, url, params)
        results[name] = {"queries": n, "sql": sql, "rows": _rows(response), "bytes": len(response.content)}

    record("dashboard_nurse", nurse_client, "/admin/")
    record("dashboard_clinician", clinician_client, "/admin/")
    record("patient_page", clinician_client, f"/admin/patients/patient/{patient.pk}/change/")
    for name, url in CHANGELISTS.items():
        record(name, clinician_client, url)
    for name, (url, params) in FILTERED.items():
        record(name, nurse_client if name == "my_work" else clinician_client, url, params)
    record("mrn_search", clinician_client, "/admin/anticoag/inrreading/", {"q": mrn})
    return results


@pytest.fixture(scope="module")
def measured(django_db_setup, django_db_blocker) -> dict[str, tuple[dict, dict]]:
    with django_db_blocker.unblock(), override_settings(**TEST_SETTINGS), transaction.atomic():
        data = make_clinic_data()
        grow(data, 5)  # patient 4 has a recent critical INR: the urgent-alert list has rows at both sizes
        small_patient = add_patient(data, 100, readings=3, doses=1)
        small = _measure_all(data, small_patient, data.patients[0].mrn)
        grow(data, 60)
        large_patient = add_patient(data, 101, readings=40, doses=12)
        large = _measure_all(data, large_patient, data.patients[-3].mrn)
        assert get_user_model().objects.count() >= 4
        transaction.set_rollback(True)
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(
        json.dumps(
            {page: {"small": small[page]["queries"], "large": large[page]["queries"]} for page in PAGES}, indent=2
        )
    )
    return {page: (small[page], large[page]) for page in PAGES}


@pytest.mark.parametrize("page", PAGES)
def test_the_query_count_does_not_grow_with_the_data(measured, page):
    small, large = measured[page]
    if small["rows"] is not None and page in CHANGELISTS:
        assert large["rows"] > small["rows"], "the larger size must show more rows, or the test proves nothing"
    assert large["bytes"] > small["bytes"] or page == "mrn_search"
    assert large["queries"] == small["queries"], (
        f"{page}: {small['queries']} → {large['queries']} queries:\n"
        + "\n".join(
            difflib.unified_diff([_shape(q) for q in small["sql"]], [_shape(q) for q in large["sql"]], lineterm="")
        )
    )


def test_changelists_never_count_a_whole_table(measured):
    """No page runs an unbounded COUNT: the paginator counts at most 10,001 rows (LIMIT in the subquery)."""
    for page in [*CHANGELISTS, *FILTERED]:
        _, large = measured[page]
        counts = [sql for sql in large["sql"] if "COUNT(" in sql.upper()]
        assert counts, page
        for sql in counts:
            assert "LIMIT 10001" in sql, f"{page}: unbounded count: {sql}"


def test_the_patient_page_reads_its_select_choices_without_a_cursor(measured):
    """The scoped selects (clinic, primary nurse, clinician) read their choices as one query each, not through
    a server-side cursor (DECLARE, FETCH, CLOSE: three round trips each; patients.admin.ListedChoices)."""
    for page in ("patient_page", "dashboard_nurse"):
        _, large = measured[page]
        assert not [sql for sql in large["sql"] if sql.lstrip().upper().startswith("DECLARE")], page
    _, large = measured["patient_page"]
    assert [sql for sql in large["sql"] if 'FROM "auth_user"' in sql and "primary_nurse" not in sql]
