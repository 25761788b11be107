"""Demo data of the laboratory interface (``manage.py seed_demo``): the demo clinic's assigning authority, so a
laboratory (or ``nc``) can send it results at once, and one held message for the hold queue. Idempotent."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from patients.models import Clinic

from .models import AssigningAuthority, InboundMessage
from .services import message_receive

#: The PID-3.4 assigning authority of the demo clinic's MRNs.
DEMO_AUTHORITY = "DEMOCLINIC"


def demo_lab_interface(*, clinic: Clinic) -> None:
    AssigningAuthority.objects.get_or_create(name=DEMO_AUTHORITY, defaults={"clinic": clinic})
    if InboundMessage.objects.filter(sending_facility="DEMOLAB", control_id="DEMO-HELD-1").exists():
        return
    drawn = (timezone.now() - timedelta(hours=3)).strftime("%Y%m%d%H%M%S+0000")
    held = "\r".join(
        [
            "MSH|^~\\&|LIS|DEMOLAB|CVTCLINIC|CVTCLINIC|20260101120000+0000||ORU^R01^ORU_R01|DEMO-HELD-1|P|2.5.1",
            f"PID|1||UNKNOWN-42^^^{DEMO_AUTHORITY}^MR||Example^Pat||19700101|F",
            f"OBR|1||DEMO1|6301-6^INR^LN|||{drawn}",
            f"OBX|1|NM|6301-6^INR^LN||2.4|{{INR}}|2.0-3.0|N|||F|||{drawn}",
        ]
    )
    message_receive(raw=held + "\r")
