"""The laboratory interface's records: which assigning authority is which clinic, every message taken in (with
the ACK it got), and the results each stored message produced.

A message is taken in once per sending facility and control id (MSH-4, MSH-10): a resend finds its row and gets
the ACK stored on it. A message whose patient cannot be matched is kept whole (``raw``) in the hold queue until a
person matches it to a patient or rejects it.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower

from anticoag.models import InrReading
from patients.models import Clinic, LabResult, Patient


class AssigningAuthority(models.Model):
    """An assigning authority of patient identifiers (PID-3.4) and the clinic whose MRNs it issues.

    This is the clinic's setting for the laboratory interface: a PID-3 identifier whose authority (namespace id
    or universal id, compared case-insensitively) is listed here is that clinic's MRN.
    """

    clinic = models.ForeignKey(Clinic, on_delete=models.PROTECT, related_name="assigning_authorities")
    name = models.CharField(
        max_length=200,
        help_text="As the laboratory sends it in PID-3.4: the namespace id (e.g. CVTCLINIC) or the universal id "
        "(e.g. an OID).",
    )

    class Meta:
        ordering = ["clinic", "name"]
        verbose_name_plural = "assigning authorities"
        constraints = [
            models.UniqueConstraint(
                Lower("name"),
                name="assigning_authority_unique",
                violation_error_message="This assigning authority already belongs to a clinic.",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class MessageStatus(models.TextChoices):
    STORED = "stored", "Stored"
    HELD = "held", "Held: patient not matched"
    MATCHED = "matched", "Matched by hand and stored"
    REJECTED = "rejected", "Rejected by hand"


class HoldReason(models.TextChoices):
    UNKNOWN_AUTHORITY = "unknown_authority", "Assigning authority of no clinic"
    UNKNOWN_PATIENT = "unknown_patient", "No patient with this MRN"
    DOB_MISMATCH = "dob_mismatch", "Date of birth differs"
    DOB_MISSING = "dob_missing", "No date of birth in the message"


class InboundMessage(models.Model):
    """One HL7 v2 message the listener accepted (ACK ``AA``), with the ACK it was sent, kept whole.

    Refused messages (``AE``/``AR``) store nothing: they are only logged. ``status`` says where the message's
    results went: stored at once, held for a person (``hold_reason``), matched by hand or rejected by hand.
    """

    sending_application = models.CharField(max_length=200, blank=True)
    sending_facility = models.CharField(max_length=200, blank=True)
    control_id = models.CharField("message control id", max_length=200)
    message_type = models.CharField(max_length=20)
    version = models.CharField(max_length=10)
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)
    content_sha256 = models.CharField(max_length=64, help_text="Of the message without MSH-7, to spot reuse.")
    raw = models.TextField(help_text="The message as received (segments separated by carriage returns).")
    ack = models.TextField(help_text="The ACK sent; a resend of the message gets exactly this ACK.")
    status = models.CharField(max_length=10, choices=MessageStatus.choices)
    hold_reason = models.CharField(max_length=20, choices=HoldReason.choices, blank=True)
    clinic = models.ForeignKey(
        Clinic, on_delete=models.PROTECT, null=True, blank=True, related_name="+", help_text="Empty: no clinic known."
    )
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    resolved_at = models.DateTimeField(null=True, blank=True)
    rejection_reason = models.TextField(blank=True)

    class Meta:
        ordering = ["-received_at", "-pk"]
        verbose_name = "lab message"
        constraints = [
            models.UniqueConstraint(fields=["sending_facility", "control_id"], name="lab_message_once_per_sender"),
        ]
        indexes = [
            # The hold queue: held messages of a clinic, oldest first, read from a small partial index.
            models.Index(fields=["clinic", "received_at"], name="lab_message_held_idx", condition=Q(status="held")),
        ]

    def __str__(self) -> str:
        return f"{self.message_type} {self.control_id} from {self.sending_facility or '?'}"


class ObservationKind(models.TextChoices):
    INR = "inr", "INR"
    CREATININE = "creatinine", "Creatinine"
    HEMOGLOBIN = "hemoglobin", "Hemoglobin"
    PLATELETS = "platelets", "Platelets"


class LabObservation(models.Model):
    """One result (OBX) of a stored message, as received, and the clinical record it became.

    An INR becomes an INR reading, a creatinine or hemoglobin a lab result, through the same services as a typed
    entry; platelets are kept here only. A preliminary result (OBX-11 ``P``) is kept but not stored as a
    reading (``stored`` false). A corrected result (``C``) ``replaces`` the observation it corrects, which stops
    being ``current``, and its reading or lab result is updated in place, never doubled.
    """

    message = models.ForeignKey(InboundMessage, on_delete=models.PROTECT, related_name="observations")
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="lab_observations")
    position = models.PositiveSmallIntegerField(help_text="The OBX's place among the message's OBX segments.")
    loinc = models.CharField("LOINC code", max_length=20)
    kind = models.CharField(max_length=12, choices=ObservationKind.choices)
    value = models.DecimalField(max_digits=10, decimal_places=3)
    units = models.CharField(max_length=40, blank=True, help_text="OBX-6 as sent.")
    observed_at = models.DateTimeField(help_text="OBX-14 (or OBR-7), in the clinic's zone when the message had none.")
    abnormal_flags = models.CharField(max_length=40, blank=True)
    result_status = models.CharField(max_length=1, help_text="OBX-11: F final, C corrected, P preliminary.")
    stored = models.BooleanField(default=True, help_text="False for a preliminary result: held until the final.")
    current = models.BooleanField(default=True, help_text="False once a correction replaced it.")
    replaces = models.ForeignKey("self", on_delete=models.PROTECT, null=True, blank=True, related_name="corrections")
    inr_reading = models.ForeignKey(InrReading, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    lab_result = models.ForeignKey(LabResult, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")

    class Meta:
        ordering = ["message", "position"]
        constraints = [
            models.UniqueConstraint(fields=["message", "position"], name="lab_observation_once_per_obx"),
        ]
        indexes = [
            models.Index(fields=["patient", "kind", "observed_at"], name="lab_obs_patient_kind_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} of {self.observed_at:%Y-%m-%d %H:%M}"
