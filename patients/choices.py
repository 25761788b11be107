"""Every choice list of the patients app in one place."""

from django.db import models


class Sex(models.TextChoices):
    """Sex as used by Cockcroft-Gault (reference §3)."""

    FEMALE = "female", "Female"
    MALE = "male", "Male"


class CreatinineUnit(models.TextChoices):
    MG_DL = "mg_dl", "mg/dL"
    UMOL_L = "umol_l", "µmol/L"


class Sinus(models.TextChoices):
    """Dural sinuses and cerebral veins that CVT involves."""

    SUPERIOR_SAGITTAL = "superior_sagittal", "Superior sagittal sinus"
    TRANSVERSE_LEFT = "transverse_left", "Transverse sinus, left"
    TRANSVERSE_RIGHT = "transverse_right", "Transverse sinus, right"
    SIGMOID_LEFT = "sigmoid_left", "Sigmoid sinus, left"
    SIGMOID_RIGHT = "sigmoid_right", "Sigmoid sinus, right"
    STRAIGHT = "straight", "Straight sinus"
    CONFLUENCE = "confluence", "Confluence of sinuses"
    JUGULAR_LEFT = "jugular_left", "Internal jugular vein, left"
    JUGULAR_RIGHT = "jugular_right", "Internal jugular vein, right"
    DEEP_VENOUS = "deep_venous", "Deep venous system (internal cerebral veins, vein of Galen)"
    CORTICAL_VEINS = "cortical_veins", "Cortical veins"
    CAVERNOUS = "cavernous", "Cavernous sinus"


class Role(models.TextChoices):
    """Staff roles are Django groups of these names (created by a data migration)."""

    CLINICIAN = "clinician", "Clinician"
    NURSE = "nurse", "Nurse"
    REPORTING = "reporting", "Reporting"


class ContactChannel(models.TextChoices):
    """How a patient prefers to be contacted."""

    PHONE = "phone", "Phone call"
    TEXT = "text", "Text message"
    LETTER = "letter", "Letter"
    EMAIL = "email", "E-mail"


class ContactKind(models.TextChoices):
    """What kind of contact a contact-log entry records."""

    CALL = "call", "Call"
    MESSAGE = "message", "Message"
    LETTER = "letter", "Letter"
    VISIT = "visit", "Visit"


class ContactOutcome(models.TextChoices):
    """What came of a contact."""

    REACHED = "reached", "Reached the patient"
    NO_ANSWER = "no_answer", "No answer"
    LEFT_MESSAGE = "left_message", "Left a message"
    SENT = "sent", "Sent"
    ATTENDED = "attended", "Attended"
    WRONG_NUMBER = "wrong_number", "Wrong number"
