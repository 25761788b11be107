"""Streamed exports of the clinic's data sets as CSV or NDJSON, identified or pseudonymised for research.

Constant memory and a constant number of queries whatever the row count: one ``values_list`` query read
through a server-side cursor (``iterator(chunk_size=…)``; PostgreSQL declares a cursor, SQLite reads in
chunks), no model instance and no serializer per row, no list of rows, and the output written in chunks of
a few hundred rows as the client reads them.

The research variant (pseudonymised) leaves out names, MRNs, the date of birth, internal patient ids and
every free-text field; the patient appears as ``patient_key``, an HMAC-SHA256 of clinic and MRN under
``settings.ANTICOAG_PSEUDONYM_KEY`` (stable across exports and data sets, so rows join up; not reversible
without the key), and the age as a ten-year band.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import hmac
import json
import zoneinfo
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import psycopg
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, transaction
from django.db.models import Aggregate, CharField, Exists, F, Model, OuterRef, QuerySet, Subquery
from django.db.models.fields.json import KeyTextTransform
from django.utils import timezone

from anticoag.api import InrReadingFilter, PlanFilter, inr_reading_list, plan_list
from anticoag.models import InrReading, Plan, PlanDecision
from anticoag.rules import PREGNANCY_CODES
from outcomes.api import ClinicalEventFilter, OutcomeAssessmentFilter, clinical_event_list, outcome_assessment_list
from outcomes.models import ClinicalEvent, OutcomeAssessment
from patients.api import EpisodeFilter, PatientFilter, episode_list, patient_list
from patients.models import Clinic, CvtEpisode, EpisodeRiskFactor, Patient
from patients.scoping import clinic_ids_for
from scheduling.api import FollowUpFilter, follow_up_list
from scheduling.models import FollowUp

from .models import ExportDataset, ExportFormat, ExportLog
from .pgcopy import copy_blocks

#: Rows fetched per round trip from the server-side cursor.
FETCH_CHUNK_ROWS = 2000
#: Rows per chunk written to the client (a few tens of kilobytes).
WRITE_CHUNK_ROWS = 500

MEDIA_TYPES = {ExportFormat.CSV: "text/csv", ExportFormat.NDJSON: "application/x-ndjson"}

# ---------------------------------------------------------------------------------------------------------------
# Pseudonyms
# ---------------------------------------------------------------------------------------------------------------


def pseudonym_key() -> bytes:
    """``settings.ANTICOAG_PSEUDONYM_KEY``, read now. In debug mode a key derived from the secret key stands
    in; in production a missing key raises ``ImproperlyConfigured`` (research exports answer 503)."""
    key = getattr(settings, "ANTICOAG_PSEUDONYM_KEY", "")
    if key:
        return key.encode()
    if settings.DEBUG:
        return hmac.new(settings.SECRET_KEY.encode(), b"anticoag.pseudonym-key", hashlib.sha256).digest()
    raise ImproperlyConfigured("ANTICOAG_PSEUDONYM_KEY is not set: research exports are unavailable.")


def mrn_pseudonym(*, clinic_id: int, mrn: str, key: bytes) -> str:
    """The stable research key of a patient: HMAC-SHA256 (hex) of clinic id and MRN (trimmed, any case —
    MRNs are unique per clinic regardless of case)."""
    message = f"{clinic_id}:{mrn.strip().casefold()}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def age_band(born: date | None, on: date | None) -> str | None:
    """Ten-year band of the age on a day: "0-9", "10-19" … "80-89", and "90+" (rarer ages identify)."""
    if born is None or on is None:
        return None
    years = on.year - born.year - ((on.month, on.day) < (born.month, born.day))
    if years >= 90:
        return "90+"
    low = max(years, 0) // 10 * 10
    return f"{low}-{low + 9}"


# ---------------------------------------------------------------------------------------------------------------
# Data sets
# ---------------------------------------------------------------------------------------------------------------

#: Kinds of column value: written as is, free text (guarded against spreadsheet formulas in CSV), a list
#: (JSON array in NDJSON, ";"-joined in CSV) or a ";"-joined string from the database (same).
VALUE, TEXT, LIST, JOINED = "value", "text", "list", "joined"
#: A datetime shown in its clinic's zone: paths (the datetime, the clinic's zone name); see in_clinic_time.
LOCAL = "local"


@dataclass(frozen=True)
class ExportContext:
    key: bytes | None
    today: date


@dataclass(frozen=True)
class Column:
    """An output column: the database paths it reads and, for computed columns, how."""

    name: str
    paths: tuple[str, ...]
    compute: Callable[..., Any] | None = None
    kind: str = VALUE


def col(name: str, path: str | None = None, kind: str = VALUE) -> Column:
    return Column(name, (path or name,), None, kind)


def patient_key(clinic_path: str, mrn_path: str) -> Column:
    return Column(
        "patient_key",
        (clinic_path, mrn_path),
        lambda ctx, clinic_id, mrn: mrn_pseudonym(clinic_id=clinic_id, mrn=mrn, key=ctx.key),
    )


def age_band_today(name: str, born_path: str) -> Column:
    return Column(name, (born_path,), lambda ctx, born: age_band(born, ctx.today))


def age_band_on(name: str, born_path: str, on_path: str) -> Column:
    return Column(name, (born_path, on_path), lambda ctx, born, on: age_band(born, on))


class JoinedCodes(Aggregate):
    """The codes of a group joined with ";" in order: STRING_AGG on PostgreSQL, GROUP_CONCAT on SQLite."""

    function = "STRING_AGG"
    template = "%(function)s(%(expressions)s, ';' ORDER BY %(expressions)s)"
    output_field = CharField()

    def as_sqlite(self, compiler, connection, **extra_context):
        return self.as_sql(compiler, connection, function="GROUP_CONCAT", template="%(function)s(%(expressions)s, ';')")


def _episodes_with_codes(queryset: QuerySet[CvtEpisode]) -> QuerySet[CvtEpisode]:
    codes = (
        EpisodeRiskFactor.objects.filter(episode_id=OuterRef("pk"))
        .order_by()
        .values("episode_id")
        .annotate(codes=JoinedCodes("code"))
        .values("codes")
    )
    # "pregnant" keeps its column name for existing readers; since rules revision 2 it is the pregnancy or
    # puerperium code (one fact, no separate flag).
    pregnancy = EpisodeRiskFactor.objects.filter(episode_id=OuterRef("pk"), code__in=sorted(PREGNANCY_CODES))
    return queryset.annotate(risk_factor_codes=Subquery(codes), pregnant=Exists(pregnancy))


_DECISION_FIELDS = ("agent", "indefinite", "duration_months", "end_on", "overridden", "override_reason")


def _plans_with_decision(queryset: QuerySet[Plan]) -> QuerySet[Plan]:
    latest = PlanDecision.objects.filter(plan_id=OuterRef("pk")).order_by("-decided_at", "-pk")
    annotations: dict[str, Any] = {f"decision_{name}": Subquery(latest.values(name)[:1]) for name in _DECISION_FIELDS}
    annotations["decision_decided_by_id"] = Subquery(latest.values("decided_by_id")[:1])
    annotations["decision_decided_at"] = Subquery(latest.values("decided_at")[:1])
    annotations["proposal_category"] = KeyTextTransform("category", "proposal")
    return queryset.annotate(**annotations)


def days_after(name: str, on_path: str, since_path: str) -> Column:
    return Column(name, (on_path, since_path), lambda ctx, on, since: (on - since).days if on and since else None)


@dataclass(frozen=True)
class Dataset:
    """One exportable data set: its scoped selector, its filters and its columns (identified, research)."""

    name: str
    model: type[Model]
    selector: Callable[..., QuerySet]
    filterset_class: type
    columns: tuple[Column, ...]
    research_columns: tuple[Column, ...]
    annotate: Callable[[QuerySet], QuerySet] = field(default=lambda queryset: queryset)

    def queryset(self, *, user) -> QuerySet:
        """The user's rows (scoped by the same selector as the list endpoint), without prefetches."""
        return self.annotate(self.selector(user=user).prefetch_related(None))

    def columns_for(self, *, pseudonymised: bool) -> tuple[Column, ...]:
        return in_clinic_time(self.research_columns if pseudonymised else self.columns)


def _local(context: ExportContext, value: datetime | None, zone_name: str) -> datetime | None:
    return None if value is None else value.astimezone(zoneinfo.ZoneInfo(zone_name))


def in_clinic_time(columns: tuple[Column, ...]) -> tuple[Column, ...]:
    """Times as the clinic reads them: every ``…_at`` column (the datetimes; dates are ``…_on``) in the
    record's clinic's zone with its UTC offset (``2026-11-27T00:00:00+01:00``), and a ``time_zone`` column
    (the clinic's IANA zone) after ``clinic_id``, so the file says which zone its times are in."""
    clinic = next((column for column in columns if column.name == "clinic_id"), None)
    if clinic is None or len(clinic.paths) != 1:
        return columns
    zone_path = clinic.paths[0].removesuffix("_id") + "__time_zone"
    result: list[Column] = []
    for column in columns:
        if column.name.endswith("_at") and column.kind == VALUE and column.compute is None and len(column.paths) == 1:
            column = Column(column.name, (column.paths[0], zone_path), _local, LOCAL)
        result.append(column)
        if column is clinic:
            result.append(Column("time_zone", (zone_path,)))
    return tuple(result)


DATASETS: dict[str, Dataset] = {
    ExportDataset.PATIENTS: Dataset(
        name=ExportDataset.PATIENTS,
        model=Patient,
        selector=patient_list,
        filterset_class=PatientFilter,
        columns=(
            col("id"),
            col("clinic_id"),
            col("mrn", kind=TEXT),
            col("family_name", kind=TEXT),
            col("given_name", kind=TEXT),
            col("date_of_birth"),
            col("sex"),
            col("weight_kg"),
            col("primary_nurse_id"),
            col("responsible_clinician_id"),
            col("active"),
            col("created_at"),
            col("updated_at"),
        ),
        research_columns=(
            patient_key("clinic_id", "mrn"),
            col("clinic_id"),
            age_band_today("age_band", "date_of_birth"),
            col("sex"),
            col("weight_kg"),
            col("active"),
        ),
    ),
    ExportDataset.EPISODES: Dataset(
        name=ExportDataset.EPISODES,
        model=CvtEpisode,
        selector=episode_list,
        filterset_class=EpisodeFilter,
        annotate=_episodes_with_codes,
        columns=(
            col("id"),
            col("patient_id"),
            col("clinic_id", "patient__clinic_id"),
            col("mrn", "patient__mrn", kind=TEXT),
            col("diagnosed_on"),
            col("sinuses", kind=LIST),
            col("risk_factors", "risk_factor_codes", kind=JOINED),
            col("hemorrhage"),
            col("subdural_hematoma"),
            col("microbleeds"),
            col("anti_amyloid_therapy"),
            col("pregnant"),
            col("delivered_on"),
            col("expected_delivery_on"),
            col("breastfeeding"),
            col("prior_cvt"),
            col("prior_vte"),
            col("notes", kind=TEXT),
            col("created_at"),
            col("updated_at"),
        ),
        research_columns=(
            col("episode_id", "id"),
            patient_key("patient__clinic_id", "patient__mrn"),
            col("clinic_id", "patient__clinic_id"),
            age_band_on("age_band_at_diagnosis", "patient__date_of_birth", "diagnosed_on"),
            col("diagnosed_on"),
            col("sinuses", kind=LIST),
            col("risk_factors", "risk_factor_codes", kind=JOINED),
            col("hemorrhage"),
            col("subdural_hematoma"),
            col("microbleeds"),
            col("anti_amyloid_therapy"),
            col("pregnant"),
            col("breastfeeding"),
            col("prior_cvt"),
            col("prior_vte"),
        ),
    ),
    ExportDataset.PLANS: Dataset(
        name=ExportDataset.PLANS,
        model=Plan,
        selector=plan_list,
        filterset_class=PlanFilter,
        annotate=_plans_with_decision,
        columns=(
            col("id"),
            col("episode_id"),
            col("patient_id", "episode__patient_id"),
            col("clinic_id", "episode__patient__clinic_id"),
            col("mrn", "episode__patient__mrn", kind=TEXT),
            col("status"),
            col("category", "proposal_category"),
            col("rules_version"),
            col("computed_at"),
            col("agent", "decision_agent"),
            col("indefinite", "decision_indefinite"),
            col("duration_months", "decision_duration_months"),
            col("end_on", "decision_end_on"),
            col("overridden", "decision_overridden", kind=LIST),
            col("override_reason", "decision_override_reason", kind=TEXT),
            col("decided_by_id", "decision_decided_by_id"),
            col("decided_at", "decision_decided_at"),
            col("updated_at"),
        ),
        research_columns=(
            col("plan_id", "id"),
            col("episode_id"),
            patient_key("episode__patient__clinic_id", "episode__patient__mrn"),
            col("clinic_id", "episode__patient__clinic_id"),
            col("status"),
            col("category", "proposal_category"),
            col("rules_version"),
            col("computed_at"),
            col("agent", "decision_agent"),
            col("indefinite", "decision_indefinite"),
            col("duration_months", "decision_duration_months"),
            col("end_on", "decision_end_on"),
            col("overridden", "decision_overridden", kind=LIST),
            col("decided_at", "decision_decided_at"),
        ),
    ),
    ExportDataset.INR_READINGS: Dataset(
        name=ExportDataset.INR_READINGS,
        model=InrReading,
        selector=inr_reading_list,
        filterset_class=InrReadingFilter,
        columns=(
            col("id"),
            col("patient_id"),
            col("clinic_id", "patient__clinic_id"),
            col("mrn", "patient__mrn", kind=TEXT),
            col("drawn_at"),
            col("value"),
            col("source"),
            col("bleeding"),
            col("note", kind=TEXT),
            col("entered_by_id"),
            col("created_at"),
        ),
        research_columns=(
            patient_key("patient__clinic_id", "patient__mrn"),
            col("clinic_id", "patient__clinic_id"),
            col("drawn_at"),
            col("value"),
            col("source"),
            col("bleeding"),
        ),
    ),
    ExportDataset.FOLLOW_UPS: Dataset(
        name=ExportDataset.FOLLOW_UPS,
        model=FollowUp,
        selector=follow_up_list,
        filterset_class=FollowUpFilter,
        columns=(
            col("id"),
            col("patient_id"),
            col("clinic_id", "patient__clinic_id"),
            col("mrn", "patient__mrn", kind=TEXT),
            col("episode_id"),
            col("kind"),
            col("due_on"),
            col("window_end_on"),
            col("status"),
            col("completed_on"),
            col("recanalization"),
            col("result_note", kind=TEXT),
            col("rule"),
            col("source"),
            col("created_at"),
            col("updated_at"),
        ),
        research_columns=(
            col("follow_up_id", "id"),
            col("episode_id"),
            patient_key("patient__clinic_id", "patient__mrn"),
            col("clinic_id", "patient__clinic_id"),
            col("kind"),
            col("due_on"),
            col("window_end_on"),
            col("status"),
            col("completed_on"),
            col("recanalization"),
            col("rule"),
        ),
    ),
    # Outcomes and events (reference §7): described column by column in outcomes.dictionary.
    ExportDataset.OUTCOMES: Dataset(
        name=ExportDataset.OUTCOMES,
        model=OutcomeAssessment,
        selector=outcome_assessment_list,
        filterset_class=OutcomeAssessmentFilter,
        columns=(
            col("id"),
            col("patient_id"),
            col("clinic_id", "patient__clinic_id"),
            col("mrn", "patient__mrn", kind=TEXT),
            col("episode_id"),
            col("follow_up_id"),
            col("timepoint"),
            col("assessed_on"),
            days_after("days_after_diagnosis", "assessed_on", "episode__diagnosed_on"),
            col("mrs"),
            col("seizures_since_last_review"),
            col("hit6_total"),
            col("papilledema"),
            col("visual_fields"),
            col("back_to_work"),
            col("note", kind=TEXT),
            col("created_at"),
            col("updated_at"),
        ),
        research_columns=(
            col("outcome_id", "id"),
            col("episode_id"),
            patient_key("patient__clinic_id", "patient__mrn"),
            col("clinic_id", "patient__clinic_id"),
            col("timepoint"),
            col("assessed_on"),
            days_after("days_after_diagnosis", "assessed_on", "episode__diagnosed_on"),
            col("mrs"),
            col("seizures_since_last_review"),
            col("hit6_total"),
            col("papilledema"),
            col("visual_fields"),
            col("back_to_work"),
        ),
    ),
    ExportDataset.EVENTS: Dataset(
        name=ExportDataset.EVENTS,
        model=ClinicalEvent,
        selector=clinical_event_list,
        filterset_class=ClinicalEventFilter,
        columns=(
            col("id"),
            col("patient_id"),
            col("clinic_id", "patient__clinic_id"),
            col("mrn", "patient__mrn", kind=TEXT),
            col("episode_id"),
            col("kind"),
            col("occurred_on"),
            col("on_anticoagulation"),
            col("bleeding_site"),
            col("symptomatic"),
            col("hemoglobin_fall_g_dl"),
            col("units_transfused"),
            col("fatal"),
            col("medical_intervention"),
            col("hospitalization"),
            col("face_to_face_evaluation"),
            col("isth_class"),
            col("isth_criteria", kind=LIST),
            col("ich_new"),
            col("ich_growth_percent"),
            col("neurological_worsening"),
            col("vte_site"),
            col("death_cause"),
            col("new_episode_id"),
            col("note", kind=TEXT),
            col("created_at"),
            col("updated_at"),
        ),
        research_columns=(
            col("event_id", "id"),
            col("episode_id"),
            patient_key("patient__clinic_id", "patient__mrn"),
            col("clinic_id", "patient__clinic_id"),
            col("kind"),
            col("occurred_on"),
            col("on_anticoagulation"),
            col("bleeding_site"),
            col("symptomatic"),
            col("hemoglobin_fall_g_dl"),
            col("units_transfused"),
            col("fatal"),
            col("medical_intervention"),
            col("hospitalization"),
            col("face_to_face_evaluation"),
            col("isth_class"),
            col("isth_criteria", kind=LIST),
            col("ich_new"),
            col("ich_growth_percent"),
            col("neurological_worsening"),
            col("vte_site"),
            col("death_cause"),
            col("new_episode_id"),
        ),
    ),
}


# ---------------------------------------------------------------------------------------------------------------
# Rows and formats
# ---------------------------------------------------------------------------------------------------------------


def export_rows(*, queryset: QuerySet, columns: Sequence[Column], context: ExportContext) -> Iterator[list[Any]]:
    """The output rows, one ``values_list`` query read in chunks through a server-side cursor, in id order."""
    paths = list(dict.fromkeys(path for column in columns for path in column.paths))
    index = {path: position for position, path in enumerate(paths)}
    plan = [(tuple(index[path] for path in column.paths), column.compute) for column in columns]
    for raw in queryset.order_by("pk").values_list(*paths).iterator(chunk_size=FETCH_CHUNK_ROWS):
        yield [
            raw[positions[0]] if compute is None else compute(context, *(raw[p] for p in positions))
            for positions, compute in plan
        ]


#: A cell starting with one of these is a formula to a spreadsheet: free text is prefixed with "'" in CSV.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def iso_time(value: date) -> str:
    """A date or datetime as the NDJSON exports write it: RFC 3339 (``isoformat()``), the fraction of a second
    without its trailing zeros (``2026-01-05T09:30:00.5+01:00``; none when zero), as PostgreSQL's JSON output
    writes it. CSV: :func:`csv_time`."""
    text = value.isoformat()
    if isinstance(value, datetime) and value.microsecond:
        return text[:26].rstrip("0") + text[26:]  # YYYY-MM-DDTHH:MM:SS.ffffff, then the offset
    return text


def csv_time(value: date) -> str:
    """A date or datetime as the CSV exports write it: PostgreSQL's own ISO output (DateStyle ISO), which
    COPY writes at no cost (:func:`copy_sql`) — ``2026-01-05 09:30:00+01``, ``2026-01-05 09:30:00.5+05:30``:
    ISO 8601 with a space between date and time (which spreadsheets read as a date and time), the offset in
    hours, with minutes (and seconds) only when it has them, the fraction without trailing zeros. Dates as
    ``2026-01-05``. (NDJSON keeps :func:`iso_time`, RFC 3339.)"""
    if not isinstance(value, datetime):
        return value.isoformat()
    text = iso_time(value)
    offset = value.utcoffset()
    if offset is None:
        return f"{text[:10]} {text[11:]}"
    width = 9 if offset.seconds % 60 else 6  # ±HH:MM:SS or ±HH:MM
    clock, zone = text[:-width], text[-width:]
    if width == 6 and zone.endswith(":00"):
        zone = zone[:-3]
    return f"{clock[:10]} {clock[11:]}{zone}"


def _csv_cell(value: Any, kind: str) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime | date):
        return csv_time(value)
    if kind == LIST:
        return ";".join(str(item) for item in value)
    if kind == TEXT and isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def _json_value(value: Any, kind: str) -> Any:
    if kind == JOINED:
        return value.split(";") if value else []
    if isinstance(value, datetime | date):
        return iso_time(value)
    if isinstance(value, Decimal):
        return str(value)  # exact, as the API gives decimals
    return value


class _Line:
    """csv.writer's file: hands back the line instead of storing it."""

    def write(self, value: str) -> str:
        return value


def csv_chunks(rows: Iterable[list[Any]], columns: Sequence[Column], counter: list[int]) -> Iterator[bytes]:
    writer = csv.writer(_Line(), lineterminator="\r\n")
    kinds = [column.kind for column in columns]
    yield writer.writerow([column.name for column in columns]).encode()
    buffer: list[str] = []
    for row in rows:
        buffer.append(writer.writerow([_csv_cell(value, kind) for value, kind in zip(row, kinds, strict=True)]))
        counter[0] += 1
        if len(buffer) >= WRITE_CHUNK_ROWS:
            yield "".join(buffer).encode()
            buffer.clear()
    if buffer:
        yield "".join(buffer).encode()


def ndjson_chunks(rows: Iterable[list[Any]], columns: Sequence[Column], counter: list[int]) -> Iterator[bytes]:
    names = [column.name for column in columns]
    kinds = [column.kind for column in columns]
    buffer: list[str] = []
    for row in rows:
        record = {name: _json_value(value, kind) for name, value, kind in zip(names, row, kinds, strict=True)}
        buffer.append(json.dumps(record, ensure_ascii=False, separators=(",", ":")))
        buffer.append("\n")
        counter[0] += 1
        if len(buffer) >= 2 * WRITE_CHUNK_ROWS:
            yield "".join(buffer).encode()
            buffer.clear()
    if buffer:
        yield "".join(buffer).encode()


# ---------------------------------------------------------------------------------------------------------------
# CSV through PostgreSQL's COPY (issue 9): the database formats the rows, Python only passes bytes on
# ---------------------------------------------------------------------------------------------------------------

_PLAIN_TYPES = {
    "AutoField", "BigAutoField", "SmallAutoField", "IntegerField", "BigIntegerField", "SmallIntegerField",
    "PositiveIntegerField", "PositiveBigIntegerField", "PositiveSmallIntegerField", "DecimalField", "ForeignKey",
    "OneToOneField",
}  # fmt: skip
_STRING_TYPES = {"CharField", "TextField", "EmailField", "SlugField", "URLField"}
#: _FORMULA_STARTS as character codes (``ascii()`` of a cell's first character).
_SQL_FORMULA_CODES = ", ".join(str(ord(start)) for start in _FORMULA_STARTS)


_UTC = "'UTC'"


def _sql_timestamp(x: str) -> str:
    """:func:`csv_time` of the UTC value Django returns for a timestamp, whatever the session's zone (the COPY
    runs with DateStyle ISO: :func:`csv_copy_chunks`)."""
    return f"({x} AT TIME ZONE {_UTC})::text || '+00'"


def _sql_cell(alias: str, field: Any, kind: str) -> str | None:
    """SQL text of one CSV cell, exactly as :func:`_csv_cell` writes it (NULL for an empty cell), or None
    when the column's type is not handled here."""
    x = f'q."{alias}"'
    internal = field.get_internal_type()
    if internal == "BooleanField":  # boolean::text is 'true' / 'false'
        return f"{x}::text"
    if internal == "DateTimeField":
        return _sql_timestamp(x)
    if internal == "DateField":  # COPY writes a date as its text: under DateStyle ISO, 2026-01-05
        return x
    if internal in _PLAIN_TYPES:  # COPY writes numbers as their ::text, NULL as an empty cell
        return x
    if internal in _STRING_TYPES:
        if kind == TEXT:
            return f"CASE WHEN ascii({x}) IN ({_SQL_FORMULA_CODES}) THEN '''' || {x} ELSE NULLIF({x}, '') END"
        return f"NULLIF({x}, '')"
    return None


def _sql_local_cell(wall: str, offset: str) -> str:
    """SQL text of a datetime in its clinic's zone (rows of several zones), as :func:`csv_time` writes it
    (``2026-11-27 00:00:00+01``), from its wall clock there (text under DateStyle ISO) and its offset from UTC
    (an interval), which :func:`copy_sql` computes once per row: hours, then minutes and seconds only when
    the offset has them (``+05:30``, ``+00:53:28``), as PostgreSQL writes an offset."""
    size = f"CASE WHEN {offset} < interval '0' THEN -{offset} ELSE {offset} END"
    pattern = (
        f"CASE WHEN date_trunc('hour', {offset}) = {offset} THEN 'HH24' "
        f"WHEN date_trunc('minute', {offset}) = {offset} THEN 'HH24:MI' ELSE 'HH24:MI:SS' END"
    )
    return f"{wall}::text || CASE WHEN {offset} < interval '0' THEN '-' ELSE '+' END || to_char({size}, {pattern})"


@dataclass(frozen=True)
class CopyQuery:
    """``COPY … TO STDOUT`` of an export, and the session time zone its clinic-time cells are written in
    (``time_zone``: every row's clinic is in that zone), or None (each row converted to its clinic's zone)."""

    sql: str
    time_zone: str | None = None


def copies(columns: Sequence[Column]) -> bool:
    """Whether :func:`copy_sql` can write these columns: on PostgreSQL, every column a stored value, free text
    or a datetime in clinic time (no computed, list or joined column)."""
    if connection.vendor != "postgresql":
        return False
    return all(
        (c.compute is None and c.kind in (VALUE, TEXT) and len(c.paths) == 1) or (c.kind == LOCAL and len(c.paths) == 2)
        for c in columns
    )


def scope_time_zone(clinic_ids: list[int] | None) -> str | None:
    """The time zone of the clinics ``clinic_ids`` (None: every clinic) when they all share one, else None:
    one small query."""
    clinics = Clinic.objects.all() if clinic_ids is None else Clinic.objects.filter(pk__in=clinic_ids)
    zones = list(clinics.order_by().values_list("time_zone", flat=True).distinct()[:2])
    return zones[0] if len(zones) == 1 else None


def copy_sql(queryset: QuerySet, columns: Sequence[Column], *, time_zone: str | None = None) -> CopyQuery | None:
    """``COPY (…) TO STDOUT`` of the CSV rows of ``queryset`` in id order when :func:`copies` holds, else None
    (rows go through Python).

    Datetimes in clinic time: given ``time_zone``, the zone of every row's clinic, the COPY runs with the
    session's TimeZone set to it (:func:`csv_copy_chunks`) and PostgreSQL writes each one in it, offset
    included, with no conversion and no offset arithmetic per row. Otherwise each row is converted to its own
    clinic's zone and its offset written from the difference to UTC."""
    if not copies(columns):
        return None
    # One zone: a column of the clinics' zone itself is that zone, a constant (no join to the clinics for it).
    zone_paths = {column.paths[1] for column in columns if column.kind == LOCAL} if time_zone else set()
    aliases: dict[str, F] = {}
    for i, column in enumerate(columns):
        if column.paths[0] in zone_paths and column.kind == VALUE:
            continue
        aliases[f"c{i}"] = F(column.paths[0])
        if column.kind == LOCAL and time_zone is None:
            aliases[f"z{i}"] = F(column.paths[1])
    rows = queryset.order_by("pk").values(**aliases)
    connection.ensure_connection()
    literal = psycopg.ClientCursor(connection.connection).mogrify
    cells = []
    for i, column in enumerate(columns):
        if f"c{i}" not in aliases:
            cells.append(literal("%s", [time_zone]))
            continue
        if column.kind == LOCAL:
            # One zone: the session's (csv_copy_chunks), so COPY's own output of the value is the cell.
            cell = f'q."c{i}"' if time_zone else _sql_local_cell(f'q."w{i}"', f'q."o{i}"')
        else:
            cell = _sql_cell(f"c{i}", rows.query.annotations[f"c{i}"].output_field, column.kind)
        if cell is None:
            return None
        cells.append(cell)
    inner, params = rows.query.get_compiler(connection=connection).as_sql()
    inner = literal(inner, params)
    source = f"({inner}) q"
    local = [i for i, column in enumerate(columns) if column.kind == LOCAL]
    if local and time_zone is None:
        walls = ", ".join(f'(q."c{i}" AT TIME ZONE q."z{i}") AS "w{i}"' for i in local)
        offsets = ", ".join(f'(q."w{i}" - (q."c{i}" AT TIME ZONE {_UTC})) AS "o{i}"' for i in local)
        # Each zone conversion once per row: OFFSET 0 keeps the layers as subqueries, so the planner does not
        # pull them up and repeat the conversion in every place the cell's expression uses it.
        source = f"(SELECT q.*, {offsets} FROM (SELECT q.*, {walls} FROM {source} OFFSET 0) q OFFSET 0) q"
    sql = f"COPY (SELECT {', '.join(cells)} FROM {source}) TO STDOUT WITH (FORMAT csv)"
    return CopyQuery(sql, time_zone if local else None)


def _crlf(data: bytes, in_quotes: bool) -> tuple[bytes, bool, int]:
    """COPY ends rows with LF, csv.writer with CRLF: turn every LF outside quotes into CRLF (an LF inside a
    quoted cell stays, as csv.writer leaves it). Returns (bytes, inside quotes at the end, rows ended)."""
    if b'"' not in data:
        if in_quotes:
            return data, in_quotes, 0
        return data.replace(b"\n", b"\r\n"), in_quotes, data.count(b"\n")
    parts = data.split(b'"')
    rows = 0
    for index in range(1 if in_quotes else 0, len(parts), 2):
        count = parts[index].count(b"\n")
        if count:
            rows += count
            parts[index] = parts[index].replace(b"\n", b"\r\n")
    return b'"'.join(parts), in_quotes != ((len(parts) - 1) % 2 == 1), rows


def csv_copy_chunks(query: CopyQuery, columns: Sequence[Column], counter: list[int]) -> Iterator[bytes]:
    """The CSV export from ``COPY … TO STDOUT``: the same bytes as :func:`csv_chunks`, one query, constant
    memory (chunks of ``WRITE_CHUNK_ROWS`` rows). The query shows in Django's query log like any other.

    PostgreSQL sends a COPY message per row; :func:`reporting.pgcopy.copy_blocks` takes them from libpq and
    joins them in blocks, so this loop turns once per chunk, not per row (issue 18).

    The COPY runs in a transaction with DateStyle ISO (the cells are PostgreSQL's own text of dates and
    times: :func:`csv_time`), with ``query.time_zone``, TimeZone that zone, and without JIT compilation
    (issue 18: for these simple cells PostgreSQL spent more compiling them, about 1.8 s at 2,000,000 rows,
    than it saved) — each ``set_config`` local to it: a stream abandoned by the client rolls back, one read to
    its end sets them back before the commit (so an enclosing transaction too goes on with the connection's
    own settings)."""
    writer = csv.writer(_Line(), lineterminator="\r\n")
    yield writer.writerow([column.name for column in columns]).encode()
    in_quotes = False
    zone = query.time_zone
    with transaction.atomic(), connection.cursor() as cursor:
        connection.ensure_connection()
        status = connection.connection.info.parameter_status
        own = {
            "DateStyle": status("DateStyle") or "ISO, MDY",
            "TimeZone": status("TimeZone") or connection.timezone_name,
        }
        cursor.execute(
            "SELECT current_setting('jit'), set_config('DateStyle', 'ISO, MDY', true), "
            "set_config('TimeZone', %s, true), set_config('jit', 'off', true)",
            [zone or own["TimeZone"]],
        )
        own["jit"] = cursor.fetchone()[0]
        logged = cursor.debug_sql(query.sql) if hasattr(cursor, "debug_sql") else contextlib.nullcontext()
        with logged, cursor.cursor.copy(query.sql) as copy:
            for block in copy_blocks(copy, rows=WRITE_CHUNK_ROWS):
                out, in_quotes, ended = _crlf(block, in_quotes)
                counter[0] += ended
                yield out
        cursor.execute(
            "SELECT set_config('DateStyle', %s, true), set_config('TimeZone', %s, true), set_config('jit', %s, true)",
            [own["DateStyle"], own["TimeZone"], own["jit"]],
        )


def export_stream(
    *, log: ExportLog, queryset: QuerySet, columns: Sequence[Column], context: ExportContext
) -> Iterator[bytes]:
    """The export's bytes, chunk by chunk. When the stream ends — finished, failed or abandoned by the
    client — the log row gets its row count and end time (``completed`` only when every row went out).

    CSV goes through COPY when it can (:func:`copy_sql`); when the clinics in the export's scope (as logged)
    share one time zone, its times are written in that zone without a conversion per row."""
    counter = [0]
    completed = False
    try:
        query = None
        if log.format == ExportFormat.CSV and copies(columns):
            local = any(column.kind == LOCAL for column in columns)
            zone = scope_time_zone(log.clinic_ids) if local else None
            query = copy_sql(queryset, columns, time_zone=zone)
        if query is not None:
            yield from csv_copy_chunks(query, columns, counter)
        else:
            rows = export_rows(queryset=queryset, columns=columns, context=context)
            chunks = csv_chunks if log.format == ExportFormat.CSV else ndjson_chunks
            yield from chunks(rows, columns, counter)
        completed = True
    finally:
        ExportLog.objects.filter(pk=log.pk).update(
            row_count=counter[0], finished_at=timezone.now(), completed=completed
        )


def export_start(
    *, user, dataset: Dataset, fmt: str, pseudonymised: bool, filters: dict[str, Any], queryset: QuerySet
) -> tuple[ExportLog, Iterator[bytes]]:
    """Log the export (who, what, filters, scope) and return the log row with the stream of its bytes.

    ``queryset`` is the user's filtered rows of ``dataset``. Raises ``ImproperlyConfigured`` for a research
    export without a pseudonym key (before anything is logged).
    """
    context = ExportContext(key=pseudonym_key() if pseudonymised else None, today=timezone.localdate())
    log = ExportLog.objects.create(
        user=user,
        dataset=dataset.name,
        format=fmt,
        pseudonymised=pseudonymised,
        filters=filters,
        clinic_ids=clinic_ids_for(user),
    )
    columns = dataset.columns_for(pseudonymised=pseudonymised)
    return log, export_stream(log=log, queryset=queryset, columns=columns, context=context)
