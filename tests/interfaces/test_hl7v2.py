"""Reading ORU^R01 and writing ACKs: the parts without a database (the listener tests cover the rest)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from interfaces import hl7v2
from interfaces.hl7v2 import MessageRefused, build_ack, parse_message, read_header

MSH = "MSH|^~\\&|LIS|CITYLAB|CVT|CVT|20260101120000||ORU^R01|X1|P|{version}"
PID = "PID|1||123^^^CVTA&1.2.3&ISO^MR~999^^^OTHER^PI||Doe^Jane||19800517|F"


def message(*results: str, version: str = "2.5.1") -> str:
    return "\r".join([MSH.format(version=version), PID, "OBR|1||F1|6301-6^INR^LN|||202601050800", *results])


def test_identifiers_dob_and_observations_are_read():
    parsed = parse_message(
        message(
            "OBX|1|SN|6301-6^INR^LN||=^2.45|INR||HH~A|||F|||202601050930+0100",
            "OBX|2|NM|5902-2^PT^LN||12.5|s|||||F",  # not ours: kept in the message, not read
            "OBX|3|NM|718-7^Hgb^LN||131|g/L||L|||C",  # no OBX-14: the order's OBR-7
            "OBX|4|NM|LOCAL1^Plt^99LAB^777-3^Platelets^LN||250|10*3/uL|||||P|||202601050930",
        )
    )
    assert [(p.value, p.authorities, p.type_code) for p in parsed.patient_ids] == [
        ("123", ("CVTA", "1.2.3"), "MR"),
        ("999", ("OTHER",), "PI"),
    ]
    assert parsed.date_of_birth.isoformat() == "1980-05-17"
    inr, hgb, plt = parsed.observations
    assert (inr.position, inr.value, inr.abnormal_flags, inr.status) == (1, Decimal("2.45"), "HH~A", "F")
    assert inr.observed.astimezone(UTC) == datetime(2026, 1, 5, 8, 30, tzinfo=UTC)
    assert (hgb.position, hgb.value, hgb.observed_field, hgb.status) == (3, Decimal("13.1"), "OBR-7", "C")
    assert hgb.observed.tzinfo is None  # no offset: read in the clinic's zone later
    assert (plt.loinc.code, plt.value, plt.status) == ("777-3", Decimal("250"), "P")  # the alternate LOINC code


@pytest.mark.parametrize(
    ("obx", "location"),
    [
        ("OBX|1|SN|6301-6^INR^LN||>^8.0||||||F|||202601050930", "OBX-5"),
        ("OBX|1|NM|6301-6^INR^LN||abc||||||F|||202601050930", "OBX-5"),
        ("OBX|1|NM|6301-6^INR^LN||2.5||||||W|||202601050930", "OBX-11"),
        ("OBX|1|NM|6301-6^INR^LN||2.5|||||||||202601050930", "OBX-11"),
        ("OBX|1|NM|2160-0^Creat^LN||1.0|umol/L|||||F|||202601050930", "OBX-6"),
        ("OBX|1|NM|6301-6^INR^LN||2.5||||||F|||20260105", "OBX-14"),
        ("OBX|1|CE|6301-6^INR^LN||2.5||||||F|||202601050930", "OBX-2"),
    ],
)
def test_a_result_that_cannot_be_stored_names_its_field(obx: str, location: str):
    with pytest.raises(MessageRefused) as refused:
        parse_message(message(obx))
    assert refused.value.location == location
    assert refused.value.ack_code == "AE"


def test_the_ack_of_a_v25_message_has_err_2_3_4_8_and_of_a_v23_message_err_1():
    refusal = MessageRefused("INR | too ^ high", segment="OBX", field_no=5, sequence=2)
    now = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
    for version, err in [
        ("2.5.1", "ERR||OBX^2^5|102^Data type error^HL70357|E||||INR \\F\\ too \\S\\ high"),
        ("2.3", "ERR|OBX^2^5^102&Data type error&HL70357"),
    ]:
        header = read_header(message(version=version))
        ack = build_ack(header, code="AE", refusal=refusal, application="CVTCLINIC", facility="CVT", now=now)
        msh, msa, err_segment = ack.rstrip("\r").split("\r")
        assert msh.startswith("MSH|^~\\&|CVTCLINIC|CVT|LIS|CITYLAB|20260105120000+0000||ACK^R01")
        assert msh.endswith(f"|{hl7v2.ack_control_id(header)}|P|{version}")
        assert msa == "MSA|AE|X1|INR \\F\\ too \\S\\ high"
        assert err_segment == err
    assert len(hl7v2.ack_control_id(header)) == 20


def test_a_resend_with_a_new_timestamp_has_the_same_content_hash():
    first = parse_message(message("OBX|1|NM|6301-6^INR^LN||2.5||||||F|||202601050930"))
    again = parse_message(
        message("OBX|1|NM|6301-6^INR^LN||2.5||||||F|||202601050930").replace("20260101120000", "20260101130000")
    )
    other = parse_message(message("OBX|1|NM|6301-6^INR^LN||2.6||||||F|||202601050930"))
    assert first.content_sha256 == again.content_sha256 != other.content_sha256
