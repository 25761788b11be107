"""Taking in a laboratory message: idempotent, all or nothing, through the same services as a typed result.

:func:`message_receive` is what the listener calls for every framed message, in a worker thread (it is blocking
database work). One transaction per message: the message row (unique per sending facility and control id), its
observations and the readings, lab results, follow-ups and urgent alerts they cause commit together, and the
ACK is returned only after that commit. A resend finds the row and gets the ACK stored on it.

A message whose patient cannot be matched (assigning authority of no clinic, unknown MRN, a date of birth that
differs or is missing) is held: kept whole, ACKed ``AA`` (it is ours now), and shown in the hold queue, where
:func:`held_message_match` stores its results for the patient a person chose, or :func:`held_message_reject`
closes it with a reason.
"""

from __future__ import annotations

import logging
import zoneinfo
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models.functions import Lower
from django.utils import timezone

from anticoag.inr import inr_reading_record, inr_readings_recorded
from anticoag.models import InrReading, InrSource
from patients.models import Clinic, LabResult, Patient

from . import hl7v2
from .hl7v2 import MessageRefused, Observation, ParsedMessage
from .models import AssigningAuthority, HoldReason, InboundMessage, LabObservation, MessageStatus, ObservationKind

logger = logging.getLogger("interfaces.hl7")


@dataclass(frozen=True)
class Receipt:
    """What the listener sends back and logs: the ACK, and the outcome in words without patient data."""

    ack: str
    code: str
    outcome: str  # stored | held | duplicate | refused | error
    control_id: str
    sender: str
    error_location: str = ""


def listener_identity() -> tuple[str, str]:
    """MSH-3 and MSH-4 of our ACKs (settings ``HL7_APPLICATION``, ``HL7_FACILITY``)."""
    return getattr(settings, "HL7_APPLICATION", "CVTCLINIC"), getattr(settings, "HL7_FACILITY", "CVTCLINIC")


def single_clinic() -> Clinic | None:
    """The clinic of a listener that serves one clinic (setting ``HL7_CLINIC``: its name): a PID-3 without an
    assigning authority is that clinic's MRN, and a message of no known clinic is held in its queue."""
    name = (getattr(settings, "HL7_CLINIC", "") or "").strip()
    if not name:
        return None
    return Clinic.objects.filter(name=name).first()


# ---------------------------------------------------------------------------------------------------------------
# Matching the patient
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class Match:
    clinic: Clinic | None
    patient: Patient | None
    hold_reason: str = ""


def _authority_clinics(names: set[str]) -> dict[str, Clinic]:
    rows = (
        AssigningAuthority.objects.annotate(key=Lower("name"))
        .filter(key__in={name.lower() for name in names})
        .select_related("clinic")
    )
    return {row.key: row.clinic for row in rows}


def patient_match(*, parsed: ParsedMessage, default_clinic: Clinic | None) -> Match:
    """The clinic and patient of the message's PID-3 and PID-7, or why it is held.

    The first PID-3 repetition whose assigning authority belongs to a clinic is that clinic's MRN (``MR`` type
    preferred); without any authority, a single-clinic listener's clinic. The patient is then found by MRN
    (case-insensitively, as the MRN is unique) and must have the date of birth of PID-7.
    """
    names = {name for pid in parsed.patient_ids for name in pid.authorities}
    clinics = _authority_clinics(names) if names else {}
    candidates = sorted(parsed.patient_ids, key=lambda pid: pid.type_code not in ("MR", ""))
    clinic, mrn = None, ""
    for pid in candidates:
        known = [clinics[name.lower()] for name in pid.authorities if name.lower() in clinics]
        if known:
            clinic, mrn = known[0], pid.value
            break
    if clinic is None and default_clinic is not None:
        bare = [pid for pid in candidates if not pid.authorities]
        if bare:
            clinic, mrn = default_clinic, bare[0].value
    if clinic is None:
        return Match(default_clinic, None, HoldReason.UNKNOWN_AUTHORITY)
    patient = Patient.objects.filter(clinic=clinic, mrn__iexact=mrn).select_related("clinic").first()
    if patient is None:
        return Match(clinic, None, HoldReason.UNKNOWN_PATIENT)
    if parsed.date_of_birth is None:
        return Match(clinic, patient, HoldReason.DOB_MISSING)
    if parsed.date_of_birth != patient.date_of_birth:
        return Match(clinic, patient, HoldReason.DOB_MISMATCH)
    return Match(clinic, patient)


# ---------------------------------------------------------------------------------------------------------------
# Validation: the same rules as every other INR and lab entry (the models' validators and clean())
# ---------------------------------------------------------------------------------------------------------------

#: Model field → the OBX field that carried it, for the ERR segment.
_OBX_FIELD = {"value": 5, "serum_creatinine": 5, "hemoglobin_g_dl": 5, "creatinine_unit": 6, "drawn_at": 14}
_OBX_FIELD |= {"drawn_on": 14}

#: Platelets have no model of their own to validate them: a count that is not a positive number below this is a
#: unit or typing error, never a result (a plausibility guard, not a clinical threshold).
PLATELETS_MAX = Decimal(10_000)


def _refusal(exc: ValidationError, observation: Observation) -> MessageRefused:
    errors = exc.message_dict if hasattr(exc, "error_dict") else {"value": exc.messages}
    name, messages = next(iter(errors.items()))
    field_no = _OBX_FIELD.get(name, 5)
    condition = hl7v2.ERR_DUPLICATE_KEY if "already" in " ".join(messages) else hl7v2.ERR_DATA_TYPE
    return MessageRefused(
        f"OBX-{field_no} ({observation.loinc.code}): {' '.join(messages)}",
        segment="OBX",
        field_no=field_no,
        sequence=observation.position,
        condition=condition,
    )


def _inr_source(observation: Observation) -> str:
    return InrSource.POINT_OF_CARE if observation.loinc.point_of_care else InrSource.LAB


def _lab_result(observation: Observation, patient: Patient | None, zone) -> LabResult:
    drawn_on = timezone.localdate(observation.observed_in(zone), timezone=zone)
    lab = LabResult(patient=patient, drawn_on=drawn_on)
    if observation.loinc.kind == ObservationKind.CREATININE:
        lab.serum_creatinine, lab.creatinine_unit = observation.value, observation.loinc.stored_unit
    else:
        lab.hemoglobin_g_dl = observation.value.quantize(Decimal("0.1"))
    return lab


def observations_check(*, parsed: ParsedMessage, zone) -> None:
    """Refuse the message (``AE`` naming the OBX field) when a value is implausible or a time in the future, by
    the models' own validators: an INR outside 0.5-20, a creatinine outside 0.1-20 mg/dL, a hemoglobin outside
    1-25 g/dL. Held messages are checked too: a message is refused or taken whole, never half."""
    for observation in parsed.observations:
        kind = observation.loinc.kind
        try:
            if kind == ObservationKind.INR:
                reading = InrReading(
                    drawn_at=observation.observed_in(zone), value=observation.value, source=_inr_source(observation)
                )
                reading.clean_fields(exclude=["patient", "entered_by", "note"])
            elif kind in (ObservationKind.CREATININE, ObservationKind.HEMOGLOBIN):
                lab = _lab_result(observation, None, zone)
                lab.clean_fields(exclude=["patient"])
                lab.clean()
            elif not Decimal(0) < observation.value < PLATELETS_MAX:
                raise ValidationError({"value": f"A platelet count of {observation.value} 10^9/L is not plausible."})
            if observation.observed_in(zone) > timezone.now() + timedelta(minutes=5):
                raise ValidationError({"drawn_at": "The observation time is in the future."})
        except ValidationError as exc:
            raise _refusal(exc, observation) from None


# ---------------------------------------------------------------------------------------------------------------
# Storing the results of a matched message
# ---------------------------------------------------------------------------------------------------------------


def _previous(patient: Patient, observation: Observation, observed_at: datetime) -> LabObservation | None:
    """The current stored observation of the same patient, kind and time: what a correction replaces, or what a
    repeated final result repeats."""
    return (
        LabObservation.objects.filter(
            patient=patient, kind=observation.loinc.kind, observed_at=observed_at, stored=True, current=True
        )
        .order_by("-pk")
        .first()
    )


def _note(message: InboundMessage, observation: Observation) -> str:
    return (
        f"HL7 {message.message_type} from {message.sending_facility or '?'}, control id {message.control_id}, "
        f"OBX {observation.position} ({observation.loinc.code}, status {observation.status})"
        + (f", flags {observation.abnormal_flags}" if observation.abnormal_flags else "")
    )[:500]


def _store_inr(
    *, patient: Patient, observation: Observation, observed_at: datetime, row: LabObservation, message
) -> None:
    existing = InrReading.objects.filter(patient=patient, drawn_at=observed_at).first()
    if existing is not None and observation.status == hl7v2.STATUS_CORRECTED:
        # The correction replaces the value of the reading it corrects (an UPDATE: audited, never a second row),
        # and the advice, follow-ups and alerts are worked out again as for any changed reading.
        row.inr_reading = existing
        if existing.value != observation.value:
            existing.value = observation.value
            existing.note = _note(message, observation)
            try:
                existing.full_clean()
            except ValidationError as exc:
                raise _refusal(exc, observation) from None
            existing.save()
            inr_readings_recorded(patient=patient, readings=[existing])
        return
    if existing is not None:
        if existing.value == observation.value:
            row.inr_reading = existing  # the same result again (a resend under a new control id): nothing new
            return
        raise MessageRefused(
            f"OBX-5 ({observation.loinc.code}): the patient already has a different INR at that time; "
            "send a correction (OBX-11 C) to replace it.",
            segment="OBX",
            field_no=5,
            sequence=observation.position,
            condition=hl7v2.ERR_DUPLICATE_KEY,
        )
    try:
        row.inr_reading = inr_reading_record(
            patient=patient,
            drawn_at=observed_at,
            value=observation.value,
            source=_inr_source(observation),
            note=_note(message, observation),
        )
    except ValidationError as exc:
        raise _refusal(exc, observation) from None


def _store_lab(*, patient: Patient, observation: Observation, previous: LabObservation | None, row, zone) -> None:
    lab = previous.lab_result if previous is not None and previous.lab_result_id else None
    if lab is not None and observation.status == hl7v2.STATUS_CORRECTED:
        fresh = _lab_result(observation, patient, zone)
        lab.serum_creatinine, lab.creatinine_unit = (
            fresh.serum_creatinine or lab.serum_creatinine,
            (fresh.creatinine_unit or lab.creatinine_unit),
        )
        if fresh.hemoglobin_g_dl is not None:
            lab.hemoglobin_g_dl = fresh.hemoglobin_g_dl
    elif lab is not None and previous.value == observation.value:
        row.lab_result = lab
        return
    elif lab is not None:
        raise MessageRefused(
            f"OBX-5 ({observation.loinc.code}): a different result at that time is already stored; "
            "send a correction (OBX-11 C) to replace it.",
            segment="OBX",
            field_no=5,
            sequence=observation.position,
            condition=hl7v2.ERR_DUPLICATE_KEY,
        )
    else:
        lab = _lab_result(observation, patient, zone)
    try:
        lab.full_clean()
    except ValidationError as exc:
        raise _refusal(exc, observation) from None
    lab.save()  # post_save: the plan is refreshed and a DOAC patient's renal follow-up scheduled (scheduling)
    row.lab_result = lab


def results_store(*, message: InboundMessage, parsed: ParsedMessage, patient: Patient) -> list[LabObservation]:
    """Store the message's results for ``patient`` (in the caller's transaction), through the services a typed
    entry uses: an INR by :func:`anticoag.inr.inr_reading_record` (advice, next INR test, critical alert), a
    creatinine or hemoglobin as a lab result (plan refresh, renal schedule). A preliminary result is kept as an
    observation only. A corrected result replaces the one it corrects. Raises :class:`MessageRefused`."""
    zone = zoneinfo.ZoneInfo(patient.clinic.time_zone)
    observations_check(parsed=parsed, zone=zone)
    rows = []
    for observation in parsed.observations:
        observed_at = observation.observed_in(zone)
        previous = _previous(patient, observation, observed_at)
        row = LabObservation(
            message=message,
            patient=patient,
            position=observation.position,
            loinc=observation.loinc.code,
            kind=observation.loinc.kind,
            value=observation.value,
            units=observation.units[:40],
            observed_at=observed_at,
            abnormal_flags=observation.abnormal_flags,
            result_status=observation.status,
            stored=observation.status != hl7v2.STATUS_PRELIMINARY,
        )
        if row.stored:
            kind = observation.loinc.kind
            if kind == ObservationKind.INR:
                _store_inr(patient=patient, observation=observation, observed_at=observed_at, row=row, message=message)
            elif kind in (ObservationKind.CREATININE, ObservationKind.HEMOGLOBIN):
                _store_lab(patient=patient, observation=observation, previous=previous, row=row, zone=zone)
            elif previous is not None and previous.value == observation.value:
                pass  # the same platelet count again
            elif previous is not None and observation.status != hl7v2.STATUS_CORRECTED:
                raise MessageRefused(
                    f"OBX-5 ({observation.loinc.code}): a different result at that time is already stored; "
                    "send a correction (OBX-11 C) to replace it.",
                    segment="OBX",
                    field_no=5,
                    sequence=observation.position,
                    condition=hl7v2.ERR_DUPLICATE_KEY,
                )
            if observation.status == hl7v2.STATUS_CORRECTED and previous is not None:
                row.replaces = previous
        row.save()
        if row.replaces_id:
            previous.current = False
            previous.save(update_fields=["current"])
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------------------------
# Receiving
# ---------------------------------------------------------------------------------------------------------------


def _ack(parsed_or_header, *, code: str, refusal: MessageRefused | None = None) -> str:
    application, facility = listener_identity()
    header = parsed_or_header.header if isinstance(parsed_or_header, ParsedMessage) else parsed_or_header
    return hl7v2.build_ack(header, code=code, refusal=refusal, application=application, facility=facility)


def _log(receipt: Receipt) -> Receipt:
    # Control id, sender and outcome only: never a name, an MRN, a date of birth or a value.
    logger.info(
        "hl7 message control_id=%s sender=%s outcome=%s ack=%s%s",
        receipt.control_id or "-",
        receipt.sender or "-",
        receipt.outcome,
        receipt.code,
        f" error={receipt.error_location}" if receipt.error_location else "",
    )
    return receipt


def _refused(header: hl7v2.Header, refusal: MessageRefused) -> Receipt:
    ack = _ack(header, code=refusal.ack_code, refusal=refusal)
    location = f"{refusal.location}/{refusal.condition[0]}"
    return _log(Receipt(ack, refusal.ack_code, "refused", header.control_id, header.sending_facility, location))


def _replay(existing: InboundMessage, parsed: ParsedMessage) -> Receipt:
    if existing.content_sha256 != parsed.content_sha256:
        refusal = MessageRefused(
            f"MSH-10 {parsed.control_id!r} was already used by {existing.sending_facility or 'this sender'} for a "
            "different message: give each message its own control id.",
            segment="MSH",
            field_no=10,
            condition=hl7v2.ERR_DUPLICATE_KEY,
        )
        return _refused(parsed.header, refusal)
    return _log(Receipt(existing.ack, hl7v2.ack_code_of(existing.ack), "duplicate", existing.control_id,
                        existing.sending_facility))  # fmt: skip


def _take_in(parsed: ParsedMessage, default_clinic: Clinic | None) -> InboundMessage:
    """In one transaction: the message row, then its results or its place in the hold queue."""
    match = patient_match(parsed=parsed, default_clinic=default_clinic)
    zone = zoneinfo.ZoneInfo(match.clinic.time_zone if match.clinic else settings.TIME_ZONE)
    with transaction.atomic():
        message = InboundMessage.objects.create(
            sending_application=parsed.header.sending_application[:200],
            sending_facility=parsed.header.sending_facility[:200],
            control_id=parsed.control_id[:200],
            message_type=parsed.message_type,
            version=parsed.header.version,
            content_sha256=parsed.content_sha256,
            raw=parsed.text,
            ack=_ack(parsed, code="AA"),  # the ACK does not depend on the row: written with it, in one INSERT
            status=MessageStatus.HELD if match.hold_reason else MessageStatus.STORED,
            hold_reason=match.hold_reason,
            clinic=match.clinic,
            patient=match.patient,
        )
        if match.hold_reason:
            observations_check(parsed=parsed, zone=zone)
        else:
            results_store(message=message, parsed=parsed, patient=match.patient)
    return message


def message_receive(*, raw: bytes | str, default_clinic: Clinic | None = None) -> Receipt:
    """Take in one framed message and return the ACK to send (after the transaction committed).

    ``AA``: stored, or held for a person. ``AE``: malformed or implausible, nothing stored (ERR names the
    field). ``AR``: a message type, version or processing id we don't take, or a failure on our side (the
    sender may resend it later). A resend (same sender and control id, same content) gets the ACK it got.
    """
    text = hl7v2.normalise(hl7v2.decode(raw) if isinstance(raw, bytes) else raw)
    header = hl7v2.read_header(text)
    try:
        parsed = hl7v2.parse_message(text)
    except MessageRefused as refusal:
        return _refused(header, refusal)
    existing = InboundMessage.objects.filter(
        sending_facility=parsed.header.sending_facility[:200], control_id=parsed.control_id[:200]
    ).first()
    if existing is not None:
        return _replay(existing, parsed)
    if default_clinic is None:
        default_clinic = single_clinic()
    try:
        message = _take_in(parsed, default_clinic)
    except MessageRefused as refusal:
        return _refused(parsed.header, refusal)
    except IntegrityError:
        # The same message on another connection won the INSERT: answer as it was answered.
        existing = InboundMessage.objects.filter(
            sending_facility=parsed.header.sending_facility[:200], control_id=parsed.control_id[:200]
        ).first()
        if existing is None:
            raise
        return _replay(existing, parsed)
    outcome = "held" if message.status == MessageStatus.HELD else "stored"
    return _log(Receipt(message.ack, "AA", outcome, message.control_id, message.sending_facility))


def message_receive_safely(*, raw: bytes | str, default_clinic: Clinic | None = None) -> Receipt:
    """:func:`message_receive`, but a failure on our side (database down, a defect) answers ``AR`` with ERR
    207 instead of closing the connection: nothing was stored, and the sender may resend the message."""
    try:
        return message_receive(raw=raw, default_clinic=default_clinic)
    except Exception:
        logger.exception("hl7 message could not be processed")
        text = hl7v2.normalise(hl7v2.decode(raw) if isinstance(raw, bytes) else raw)
        header = hl7v2.read_header(text)
        refusal = MessageRefused(
            "The clinic could not process the message now; nothing was stored. Resend it later.",
            segment="MSH",
            condition=hl7v2.ERR_INTERNAL,
            ack_code="AR",
        )
        receipt = _refused(header, refusal)
        return Receipt(receipt.ack, receipt.code, "error", receipt.control_id, receipt.sender, receipt.error_location)


def oversized_receipt(*, head: bytes, limit: int) -> Receipt:
    """The ACK of a message larger than the listener takes (only its start was kept, to address the ACK)."""
    header = hl7v2.read_header(hl7v2.normalise(hl7v2.decode(head)))
    refusal = MessageRefused(
        f"The message is larger than {limit:,} bytes, the most this interface takes; nothing was stored.",
        segment="MSH",
        condition=hl7v2.ERR_DATA_TYPE,
    )
    return _refused(header, refusal)


# ---------------------------------------------------------------------------------------------------------------
# The hold queue
# ---------------------------------------------------------------------------------------------------------------


def _held(message: InboundMessage) -> InboundMessage:
    locked = InboundMessage.objects.select_for_update().get(pk=message.pk)
    if locked.status != MessageStatus.HELD:
        raise ValidationError(f"This message is no longer held: it was {locked.get_status_display().lower()}.")
    return locked


def held_message_match(
    *, message: InboundMessage, patient: Patient, user, identity_confirmed: bool = False
) -> list[LabObservation]:
    """Store a held message's results for ``patient``, chosen by ``user``; the message becomes ``matched``.

    The patient must belong to the message's clinic (when it has one). When the message's date of birth is
    missing or differs from the patient's, the person must confirm the identity (``identity_confirmed``).
    The results go through the same checks as on arrival: a result that can no longer be stored (e.g. the
    patient now has a different INR at that time) refuses the match with the reason, and nothing changes.
    """
    with transaction.atomic():
        message = _held(message)
        if message.clinic_id and patient.clinic_id != message.clinic_id:
            raise ValidationError({"patient": "Choose a patient of the message's clinic."})
        parsed = hl7v2.parse_message(message.raw)
        if parsed.date_of_birth != patient.date_of_birth and not identity_confirmed:
            said = parsed.date_of_birth.isoformat() if parsed.date_of_birth else "no date of birth"
            raise ValidationError(
                {
                    "identity_confirmed": f"The message gives {said}, the patient's record "
                    f"{patient.date_of_birth.isoformat()}: confirm that you checked the identity."
                }
            )
        try:
            rows = results_store(message=message, parsed=parsed, patient=patient)
        except MessageRefused as refusal:
            raise ValidationError({"patient": f"{refusal.location}: {refusal.text}"}) from None
        message.status = MessageStatus.MATCHED
        message.patient, message.clinic = patient, patient.clinic
        message.resolved_by, message.resolved_at = user, timezone.now()
        message.save(update_fields=["status", "patient", "clinic", "resolved_by", "resolved_at"])
    logger.info("hl7 held message matched control_id=%s sender=%s", message.control_id, message.sending_facility)
    return rows


def held_message_reject(*, message: InboundMessage, user, reason: str) -> InboundMessage:
    """Close a held message without storing its results; the reason is required and kept."""
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": "Give the reason for rejecting the message."})
    with transaction.atomic():
        message = _held(message)
        message.status = MessageStatus.REJECTED
        message.rejection_reason = reason[:2000]
        message.resolved_by, message.resolved_at = user, timezone.now()
        message.save(update_fields=["status", "rejection_reason", "resolved_by", "resolved_at"])
    logger.info("hl7 held message rejected control_id=%s sender=%s", message.control_id, message.sending_facility)
    return message
