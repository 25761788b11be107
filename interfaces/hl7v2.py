"""HL7 v2 ``ORU^R01`` (v2.3–v2.5.1): reading a laboratory result message, and writing its ACK.

Parsing is python-hl7's (:func:`hl7.parse`); this module knows which fields matter to the clinic and refuses a
message it cannot take with a :class:`MessageRefused` that names the field, as the ACK's ERR segment will. No
database here: :mod:`interfaces.services` decides what to do with a :class:`ParsedMessage`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation

import hl7
from django.utils import timezone as dj_timezone

#: Versions this interface reads: the ORU^R01 structure is the same in each for the fields used here.
SUPPORTED_VERSIONS = ("2.3", "2.3.1", "2.4", "2.5", "2.5.1")
#: MSH-11 processing ids taken: production only (a test message must not become a patient's reading).
PROCESSING_IDS = ("P",)

#: HL7 table 0357 (message error condition codes) used in the ERR segment.
ERR_SEGMENT_SEQUENCE = (100, "Segment sequence error")
ERR_REQUIRED_FIELD = (101, "Required field missing")
ERR_DATA_TYPE = (102, "Data type error")
ERR_TABLE_VALUE = (103, "Table value not found")
ERR_UNSUPPORTED_TYPE = (200, "Unsupported message type")
ERR_UNSUPPORTED_PROCESSING_ID = (202, "Unsupported processing id")
ERR_UNSUPPORTED_VERSION = (203, "Unsupported version id")
ERR_DUPLICATE_KEY = (205, "Duplicate key identifier")
ERR_INTERNAL = (207, "Application internal error")


@dataclass(frozen=True)
class Loinc:
    """A LOINC code the clinic takes: what it measures and which units it comes in (OBX-6 → factor to ours)."""

    code: str
    kind: str
    name: str
    #: Accepted OBX-6 units, upper-cased, → factor to the stored unit. "" is "no unit sent".
    units: dict[str, Decimal]
    stored_unit: str
    point_of_care: bool = False


_ONE = Decimal(1)
_INR_UNITS = {"": _ONE, "INR": _ONE, "{INR}": _ONE, "RATIO": _ONE, "{RATIO}": _ONE, "1": _ONE}
_PLATELET_UNITS = {
    unit: _ONE for unit in ("10*3/UL", "10^3/UL", "X10E3/UL", "K/UL", "10*9/L", "10^9/L", "X10E9/L", "10E9/L", "/NL")
}

#: The results the clinic takes, by OBX-3 LOINC code. Names are LOINC's long common names. 46418-0 (capillary
#: blood, i.e. a finger-prick point-of-care INR) is listed in the NLM VSAC "INR" value set (OID
#: 2.16.840.1.113883.3.117.1.7.1.213) beside 6301-6 and 34714-6; it was checked there, not in LOINC's own
#: database. Units: INR has none; creatinine comes in the unit its code says (2160-0 mass, 14682-9 moles);
#: hemoglobin in g/dL or g/L; platelets in 10^9/L or its equal 10^3/µL.
LOINC_CODES: dict[str, Loinc] = {
    "6301-6": Loinc("6301-6", "inr", "INR in Platelet poor plasma by Coagulation assay", _INR_UNITS, ""),
    "34714-6": Loinc("34714-6", "inr", "INR in Blood by Coagulation assay", _INR_UNITS, ""),
    "46418-0": Loinc(
        "46418-0", "inr", "INR in Capillary blood by Coagulation assay", _INR_UNITS, "", point_of_care=True
    ),
    "2160-0": Loinc("2160-0", "creatinine", "Creatinine [Mass/volume] in Serum or Plasma", {"MG/DL": _ONE}, "mg_dl"),
    "14682-9": Loinc(
        "14682-9",
        "creatinine",
        "Creatinine [Moles/volume] in Serum or Plasma",
        {"UMOL/L": _ONE, "µMOL/L": _ONE, "ΜMOL/L": _ONE},
        "umol_l",
    ),
    "718-7": Loinc(
        "718-7", "hemoglobin", "Hemoglobin [Mass/volume] in Blood", {"G/DL": _ONE, "G/L": Decimal("0.1")}, "g/dL"
    ),
    "777-3": Loinc("777-3", "platelets", "Platelets [#/volume] in Blood by Automated count", _PLATELET_UNITS, "10^9/L"),
}

#: OBX-11 result status: stored (final, corrected) or kept without storing (preliminary).
STATUS_FINAL, STATUS_CORRECTED, STATUS_PRELIMINARY = "F", "C", "P"
ACCEPTED_STATUSES = (STATUS_FINAL, STATUS_CORRECTED, STATUS_PRELIMINARY)


class MessageRefused(Exception):
    """The message cannot be taken: ``AE`` (its content) or ``AR`` (its type, version or processing id, or the
    system could not process it). Names the field as ``segment``-``field`` (e.g. OBX-5) of the ``sequence``-th
    such segment, with an HL7 table 0357 ``condition``."""

    def __init__(
        self,
        text: str,
        *,
        segment: str,
        field_no: int = 0,
        sequence: int = 1,
        condition: tuple[int, str] = ERR_DATA_TYPE,
        ack_code: str = "AE",
    ) -> None:
        super().__init__(text)
        self.text = text
        self.segment = segment
        self.field_no = field_no
        self.sequence = sequence
        self.condition = condition
        self.ack_code = ack_code

    @property
    def location(self) -> str:
        """``OBX-5`` (``OBX[2]-5`` for the second OBX), or the segment alone: for logs and the admin."""
        where = self.segment if self.sequence == 1 else f"{self.segment}[{self.sequence}]"
        return f"{where}-{self.field_no}" if self.field_no else where


@dataclass(frozen=True)
class PatientId:
    """One repetition of PID-3: the identifier and the names of its assigning authority (namespace, universal)."""

    value: str
    authorities: tuple[str, ...]
    type_code: str


@dataclass(frozen=True)
class Observation:
    """One OBX with a LOINC code the clinic takes. ``observed`` is naive when the message gave no offset."""

    position: int  # 1-based among the message's OBX segments (the ERR sequence)
    loinc: Loinc
    value: Decimal  # in the stored unit
    units: str  # OBX-6 as sent
    observed: datetime
    observed_field: str  # "OBX-14" or "OBR-7": where the time came from
    abnormal_flags: str
    status: str

    def observed_in(self, zone) -> datetime:
        """The observation time as an aware datetime; a time without offset is read in ``zone``."""
        if dj_timezone.is_aware(self.observed):
            return self.observed
        return self.observed.replace(tzinfo=zone)


@dataclass
class Header:
    """MSH as far as it could be read: enough to address an ACK even to a message that is refused."""

    field_separator: str = "|"
    encoding_characters: str = "^~\\&"
    fields: dict[int, str] = field(default_factory=dict)  # raw (escaped) MSH fields by number

    def get(self, number: int) -> str:
        return self.fields.get(number, "")

    @property
    def control_id(self) -> str:
        return self.get(10).split(self.encoding_characters[0])[0]

    @property
    def version(self) -> str:
        return self.get(12).split(self.encoding_characters[0])[0]

    @property
    def sending_facility(self) -> str:
        return self.get(4)

    @property
    def sending_application(self) -> str:
        return self.get(3)


@dataclass
class ParsedMessage:
    """What the clinic reads from an ``ORU^R01``."""

    header: Header
    text: str
    message_type: str
    patient_ids: list[PatientId]
    date_of_birth: date | None
    observations: list[Observation]

    @property
    def control_id(self) -> str:
        return self.header.control_id

    @property
    def content_sha256(self) -> str:
        """The message without MSH-7 (a resending system may stamp a new time): equal for a true resend."""
        separator = self.header.field_separator
        segments = self.text.split("\r")
        msh = segments[0].split(separator)
        if len(msh) > 6:
            msh[6] = ""
        return hashlib.sha256("\r".join([separator.join(msh), *segments[1:]]).encode("utf-8")).hexdigest()


# ---------------------------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------------------------


def decode(raw: bytes) -> str:
    """HL7 v2 text: UTF-8 when it is valid UTF-8, else ISO 8859-1 (the common 8-bit set, MSH-18 ``8859/1``).
    Either way the fields this interface reads are ASCII."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def normalise(text: str) -> str:
    """Segments end with a carriage return; tolerate senders that use line feeds."""
    return text.replace("\r\n", "\r").replace("\n", "\r").strip("\r\n \t\x00")


def read_header(text: str) -> Header:
    """MSH-1, MSH-2 and the raw MSH fields, without judging them (for the ACK of whatever arrives)."""
    header = Header()
    if not text.startswith("MSH") or len(text) < 8:
        return header
    separator = text[3]
    first = text.split("\r", 1)[0]
    parts = first.split(separator)
    header.field_separator = separator
    candidate = parts[1] if len(parts) > 1 else ""
    if _encoding_problem(separator, candidate) is None:
        header.encoding_characters = candidate
    # parts[0] is "MSH", parts[1] is MSH-2: MSH-n is parts[n - 1].
    header.fields = {number: parts[number - 1] for number in range(3, len(parts) + 1)}
    return header


def _encoding_problem(separator: str, characters: str) -> str | None:
    if separator.isalnum() or separator.isspace():
        return f"MSH-1 {separator!r} cannot be a field separator."
    if len(characters) != 4:
        return f"MSH-2 must hold the 4 encoding characters (component, repetition, escape, subcomponent: ^~\\&); got {characters!r}."
    if len(set(characters + separator)) != 5:
        return f"MSH-2 {characters!r}: the encoding characters and the field separator must all differ."
    if any(char.isalnum() or char.isspace() for char in characters):
        return f"MSH-2 {characters!r}: encoding characters cannot be letters, digits or spaces."
    return None


def _get(segment, field_no: int, repetition: int = 1, component: int = 1, subcomponent: int = 1) -> str:
    """A field's value (unescaped), or "" when the message does not have it."""
    try:
        return str(segment.extract_field(1, field_no, repetition, component, subcomponent) or "").strip()
    except (IndexError, KeyError):
        return ""


def _repetitions(segment, field_no: int) -> int:
    try:
        value = segment(field_no)
    except IndexError:
        return 0
    return len(value) if isinstance(value, hl7.Field) and value and isinstance(value[0], hl7.Repetition) else 1


def parse_datetime(value: str) -> datetime:
    """An HL7 DTM/TS (``YYYY[MM[DD[HH[MM[SS[.S…]]]]]][+/-ZZZZ]``) as a datetime, aware when it has an offset.

    python-hl7 reads the digits; the offset is turned into a standard :class:`datetime.timezone`. A value
    without a time of day is not an observation time: refused.
    """
    moment = hl7.parse_datetime(value)
    digits = value.split("+")[0].split("-")[0]
    if len(digits.split(".")[0]) < 12:
        raise ValueError("needs at least the hour and minute (YYYYMMDDHHMM)")
    if moment.tzinfo is not None:
        offset = moment.utcoffset()
        moment = moment.replace(tzinfo=timezone(timedelta(minutes=round(offset.total_seconds() / 60))))
    return moment


def _number(text: str, position: int) -> Decimal:
    try:
        number = Decimal(text)
    except InvalidOperation:
        number = None
    if number is None or not number.is_finite():
        raise MessageRefused(
            f"OBX-5 {text!r} is not a number; send the exact value (a result such as '>8.0' must be telephoned).",
            segment="OBX",
            field_no=5,
            sequence=position,
            condition=ERR_DATA_TYPE,
        )
    return number


def _value(obx, position: int) -> Decimal:
    value_type = _get(obx, 2).upper()
    if value_type not in ("", "NM", "SN", "ST"):
        raise MessageRefused(
            f"OBX-2 {value_type!r}: a numeric result is sent as NM (or SN).",
            segment="OBX",
            field_no=2,
            sequence=position,
            condition=ERR_DATA_TYPE,
        )
    if value_type == "SN":
        comparator, number = _get(obx, 5, 1, 1), _get(obx, 5, 1, 2)
        if comparator not in ("", "="):
            raise MessageRefused(
                f"OBX-5 {comparator}{number}: only an exact value can be stored; telephone the result.",
                segment="OBX",
                field_no=5,
                sequence=position,
                condition=ERR_DATA_TYPE,
            )
        text = number
    else:
        text = _get(obx, 5)
    if not text:
        raise MessageRefused(
            "OBX-5 is empty: no result to store.",
            segment="OBX",
            field_no=5,
            sequence=position,
            condition=ERR_REQUIRED_FIELD,
        )
    return _number(text, position)


def _observation(obx, position: int, loinc: Loinc, obr_time: str) -> Observation:
    status = _get(obx, 11).upper()
    if not status:
        raise MessageRefused(
            "OBX-11 (result status) is required: F, C or P.",
            segment="OBX",
            field_no=11,
            sequence=position,
            condition=ERR_REQUIRED_FIELD,
        )
    if status not in ACCEPTED_STATUSES:
        raise MessageRefused(
            f"OBX-11 {status!r}: this interface takes F (final), C (corrected) and P (preliminary); "
            "a withdrawn or deleted result is corrected in the clinic's record by hand.",
            segment="OBX",
            field_no=11,
            sequence=position,
            condition=ERR_TABLE_VALUE,
        )
    number = _value(obx, position)
    units = _get(obx, 6)
    factor = loinc.units.get(units.upper())
    if factor is None:
        allowed = ", ".join(sorted(unit for unit in loinc.units if unit)) or "none"
        raise MessageRefused(
            f"OBX-6 {units!r} is not a unit of {loinc.code} ({loinc.name}); expected: {allowed}.",
            segment="OBX",
            field_no=6,
            sequence=position,
            condition=ERR_TABLE_VALUE,
        )
    time_text, time_field = _get(obx, 14), "OBX-14"
    if not time_text:
        time_text, time_field = obr_time, "OBR-7"
    if not time_text:
        raise MessageRefused(
            "OBX-14 (observation time) is required (or OBR-7 on the order).",
            segment="OBX",
            field_no=14,
            sequence=position,
            condition=ERR_REQUIRED_FIELD,
        )
    try:
        observed = parse_datetime(time_text)
    except (ValueError, TypeError) as exc:
        raise MessageRefused(
            f"{time_field} {time_text!r} is not an HL7 date-time: {exc}.",
            segment="OBX",
            field_no=14,
            sequence=position,
            condition=ERR_DATA_TYPE,
        ) from None
    flags = "~".join(flag for flag in (_get(obx, 8, rep) for rep in range(1, max(_repetitions(obx, 8), 1) + 1)) if flag)
    return Observation(
        position=position,
        loinc=loinc,
        value=number * factor,
        units=units,
        observed=observed,
        observed_field=time_field,
        abnormal_flags=flags[:40],
        status=status,
    )


def _loinc_of(obx) -> Loinc | None:
    """OBX-3's LOINC code: the identifier (component 1) when its coding system is LOINC or absent, else the
    alternate identifier (component 4) when the alternate system is LOINC."""
    for code_component, system_component in ((1, 3), (4, 6)):
        code, system = _get(obx, 3, 1, code_component), _get(obx, 3, 1, system_component).upper()
        if code in LOINC_CODES and system in ("LN", "LOINC", ""):
            return LOINC_CODES[code]
    return None


def parse_message(raw: bytes | str) -> ParsedMessage:
    """Read an ``ORU^R01``, or raise :class:`MessageRefused` naming the first field that stops it."""
    text = normalise(decode(raw) if isinstance(raw, bytes) else raw)
    if not text.startswith("MSH"):
        raise MessageRefused(
            "The message must begin with an MSH segment.", segment="MSH", condition=ERR_SEGMENT_SEQUENCE
        )
    header = read_header(text)
    separator = text[3] if len(text) > 3 else ""
    problem = _encoding_problem(separator, text[4:].split(separator, 1)[0] if separator else "")
    if problem:
        raise MessageRefused(problem, segment="MSH", field_no=2, condition=ERR_DATA_TYPE)
    try:
        message = hl7.parse(text)
        msh = message.segment("MSH")
    except Exception as exc:  # python-hl7 raises several types on broken input
        raise MessageRefused(f"Not readable as HL7 v2: {exc}.", segment="MSH", condition=ERR_SEGMENT_SEQUENCE) from None

    if not header.control_id:
        raise MessageRefused(
            "MSH-10 (message control id) is required.", segment="MSH", field_no=10, condition=ERR_REQUIRED_FIELD
        )
    message_type = f"{_get(msh, 9, 1, 1)}^{_get(msh, 9, 1, 2)}".upper()
    if message_type != "ORU^R01":
        raise MessageRefused(
            f"MSH-9 {message_type!r}: this interface takes ORU^R01 (laboratory results) only.",
            segment="MSH",
            field_no=9,
            condition=ERR_UNSUPPORTED_TYPE,
            ack_code="AR",
        )
    if header.version not in SUPPORTED_VERSIONS:
        raise MessageRefused(
            f"MSH-12 {header.version!r}: versions taken are {', '.join(SUPPORTED_VERSIONS)}.",
            segment="MSH",
            field_no=12,
            condition=ERR_UNSUPPORTED_VERSION,
            ack_code="AR",
        )
    processing_id = _get(msh, 11).upper()
    if processing_id not in PROCESSING_IDS:
        raise MessageRefused(
            f"MSH-11 {processing_id!r}: only production messages (P) are taken.",
            segment="MSH",
            field_no=11,
            condition=ERR_UNSUPPORTED_PROCESSING_ID,
            ack_code="AR",
        )

    try:
        pids = message.segments("PID")
    except KeyError:
        raise MessageRefused(
            "The PID segment (the patient) is missing.", segment="PID", condition=ERR_SEGMENT_SEQUENCE
        ) from None
    if len(pids) > 1:
        raise MessageRefused(
            "One patient per message: send each patient's results as a message of its own.",
            segment="PID",
            sequence=2,
            condition=ERR_SEGMENT_SEQUENCE,
        )
    pid = pids[0]
    patient_ids = []
    for rep in range(1, _repetitions(pid, 3) + 1):
        value = _get(pid, 3, rep, 1)
        if value:
            authorities = tuple(name for name in (_get(pid, 3, rep, 4, 1), _get(pid, 3, rep, 4, 2)) if name)
            patient_ids.append(PatientId(value, authorities, _get(pid, 3, rep, 5).upper()))
    if not patient_ids:
        raise MessageRefused(
            "PID-3 (the patient's identifier, the MRN) is required.",
            segment="PID",
            field_no=3,
            condition=ERR_REQUIRED_FIELD,
        )
    dob_text = _get(pid, 7)
    date_of_birth = None
    if dob_text:
        try:
            date_of_birth = datetime.strptime(dob_text[:8], "%Y%m%d").date()  # noqa: DTZ007 (a calendar date)
        except ValueError:
            raise MessageRefused(
                f"PID-7 {dob_text!r} is not a date of birth (YYYYMMDD).",
                segment="PID",
                field_no=7,
                condition=ERR_DATA_TYPE,
            ) from None

    observations: list[Observation] = []
    obr_time = ""
    position = 0
    for segment in message:
        name = str(segment[0][0]) if segment and segment[0] else ""
        if name == "OBR":
            obr_time = _get(segment, 7)
        elif name == "OBX":
            position += 1
            loinc = _loinc_of(segment)
            if loinc is not None:
                observations.append(_observation(segment, position, loinc, obr_time))
    return ParsedMessage(
        header=header,
        text=text,
        message_type=message_type,
        patient_ids=patient_ids,
        date_of_birth=date_of_birth,
        observations=observations,
    )


# ---------------------------------------------------------------------------------------------------------------
# Writing the ACK
# ---------------------------------------------------------------------------------------------------------------


def _escape(text: str, header: Header) -> str:
    """HL7 escape sequences for the delimiters (the escape character first), and no segment break."""
    component, repetition, escape, subcomponent = header.encoding_characters
    text = text.replace(escape, f"{escape}E{escape}")
    for char, code in ((header.field_separator, "F"), (component, "S"), (repetition, "R"), (subcomponent, "T")):
        text = text.replace(char, f"{escape}{code}{escape}")
    return text.replace("\r", " ").replace("\n", " ")


def ack_control_id(header: Header) -> str:
    """The ACK's own MSH-10: derived from the message's sender and control id, so a resend gets the same ACK.
    20 characters: the length of MSH-10 up to v2.5."""
    digest = hashlib.sha256(f"{header.sending_facility}\x1f{header.control_id}".encode()).hexdigest()
    return "A" + digest[:19].upper()


def build_ack(
    header: Header,
    *,
    code: str,
    refusal: MessageRefused | None = None,
    application: str,
    facility: str,
    now: datetime | None = None,
) -> str:
    """The ACK (original acknowledgment mode) in the message's own delimiters: MSH, MSA and, for ``AE``/``AR``,
    an ERR segment naming the field (HL7 table 0357), in the v2.5 layout (ERR-2, -3, -4, -8) or the v2.3/2.4
    one (ERR-1) as the message's version has it."""
    sep = header.field_separator
    comp, _rep, _esc, sub = header.encoding_characters
    version = header.version if header.version in SUPPORTED_VERSIONS else "2.5"
    now = (now or dj_timezone.now()).astimezone(UTC)
    trigger = header.get(9).split(comp)[1] if comp in header.get(9) else ""
    message_type = f"ACK{comp}{trigger}" + ("" if version.startswith("2.3") else f"{comp}ACK")
    msh = [
        "MSH",
        header.encoding_characters,
        _escape(application, header),
        _escape(facility, header),
        header.get(3),
        header.get(4),
        now.strftime("%Y%m%d%H%M%S+0000"),
        "",
        message_type,
        ack_control_id(header),
        "P",
        version,
    ]
    msa = ["MSA", code, _escape(header.control_id, header)]
    segments = [sep.join(msh)]
    if refusal is None:
        segments.append(sep.join(msa))
        return "\r".join(segments) + "\r"
    text = _escape(refusal.text[:1000], header)  # cut before escaping: never half an escape sequence
    msa.append(_escape(refusal.text[:80], header))  # MSA-3 (text message): short, read by older systems
    segments.append(sep.join(msa))
    number, name = refusal.condition
    location = comp.join([refusal.segment, str(refusal.sequence), str(refusal.field_no or "")])
    if version.startswith(("2.3", "2.4")):
        segments.append(sep.join(["ERR", location + comp + sub.join([str(number), name, "HL70357"])]))
    else:
        err = ["ERR", "", location, comp.join([str(number), name, "HL70357"]), "E", "", "", "", text]
        segments.append(sep.join(err))
    return "\r".join(segments) + "\r"


def ack_code_of(ack: str) -> str:
    """MSA-1 of an ACK built by :func:`build_ack`."""
    for segment in ack.split("\r"):
        if segment.startswith("MSA"):
            return segment[4:6]
    return ""
