from django.apps import AppConfig


class InterfacesConfig(AppConfig):
    """Inbound laboratory results: the HL7 v2 MLLP listener, its message log and the hold queue."""

    name = "interfaces"
    verbose_name = "Laboratory interface"

    def ready(self) -> None:
        from auditlog.registry import auditlog

        # The raw message and its ACK are the interface's record, not clinical data that anyone edits: the
        # audit trail follows the hold-queue decisions (status, patient, who, why) and the observations.
        auditlog.register(self.get_model("InboundMessage"), exclude_fields=["raw", "ack", "content_sha256"])
        auditlog.register(self.get_model("LabObservation"))
