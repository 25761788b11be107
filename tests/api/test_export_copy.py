"""The CSV export through PostgreSQL's COPY writes the same bytes as the row-by-row writer (issue 9)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model

from anticoag.models import InrReading
from reporting.exports import (
    DATASETS,
    ExportContext,
    copy_sql,
    csv_chunks,
    csv_copy_chunks,
    export_rows,
)
from tests.factories import PatientFactory

pytestmark = pytest.mark.django_db

NOTES = ["", "plain", "=SUM(A1)", "-2 tablets", "@home", "\ttab", 'say "hi", twice', "two\nlines", "cr\r\nlf", "é ü"]


@pytest.mark.parametrize("dataset", ["inr-readings", "patients"])
def test_copy_csv_equals_the_python_csv(dataset):
    patient = PatientFactory(mrn="=MRN-1", given_name='A "quoted", name')
    PatientFactory(clinic=patient.clinic, mrn="", family_name="")
    for index, note in enumerate(NOTES):
        InrReading.objects.create(
            patient=patient,
            drawn_at=datetime(2026, 1, 1 + index, 8, 30, 0, 123456 if index % 2 else 0, tzinfo=UTC),
            value=Decimal("2.50") + index,
            bleeding=index % 3 == 0,
            note=note,
        )
    admin = get_user_model().objects.create(username="root", is_superuser=True, is_staff=True)
    spec = DATASETS[dataset]
    columns = spec.columns_for(pseudonymised=False)
    queryset = spec.queryset(user=admin)
    sql = copy_sql(queryset, columns)
    assert sql is not None
    python_count, copy_count = [0], [0]
    rows = export_rows(queryset=queryset, columns=columns, context=ExportContext(key=None, today=None))
    expected = b"".join(csv_chunks(rows, columns, python_count))
    got = b"".join(csv_copy_chunks(sql, columns, copy_count))
    assert got == expected
    assert copy_count == python_count


def test_computed_columns_fall_back_to_python():
    spec = DATASETS["inr-readings"]
    admin = get_user_model().objects.create(username="root", is_superuser=True, is_staff=True)
    assert copy_sql(spec.queryset(user=admin), spec.columns_for(pseudonymised=True)) is None
