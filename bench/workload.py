"""The bench's cases: the same shape as real ones (a person's proxy application for KSTB-006)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

from hub.domain.case import Case
from hub.domain.identifiers import format_case_number, new_case_id
from hub.domain.shared import SharedEvent
from hub.domain.values import Actor, Applicant, ApplicantKind, IdType, Material, Mode, Role
from routing.catalogue import Catalogue
from tongban.v1 import case_pb2 as pb
from tongban.v1 import case_service_pb2 as svc

RECEIVING, HANDLING = "410400", "320500"  # 平顶山 receives, 苏州 handles (agreed in routing/data)
ITEM_CODE = "KSTB-006"
ID_NUMBER = "410402199003072416"
CLERK = Actor("PDS-0107", Role.WINDOW_CLERK, RECEIVING, "李敏")
_APPLICANT = Applicant(ApplicantKind.PERSON, "王建国", IdType.RESIDENT_ID, ID_NUMBER, "13837512345",
                       "平顶山市新华区建设路 18 号")


def partner_receipts(count: int, receiving: str = RECEIVING, handling: str = HANDLING) -> list[SharedEvent]:
    """``count`` cases opened at the receiving site, as the first shared event the handling site gets."""
    return list(receipts_of(count, receiving, handling))


def receipts_of(count: int, receiving: str, handling: str) -> Iterator[SharedEvent]:
    """The same, one at a time (a preload of a million cases never holds them all)."""
    item = Catalogue.load().get(ITEM_CODE)
    day = datetime.now(UTC).date()
    clerk = Actor(CLERK.staff_id, CLERK.role, receiving, CLERK.name)
    for n in range(count):
        case = Case.receive(
            case_id=new_case_id(), case_number=format_case_number(receiving, day, n), request_id=uuid.uuid4().hex,
            item=item, mode=Mode.PROXY, handling_site=handling, co_handling_sites=[], applicant=_APPLICANT,
            materials=[Material("居民身份证")], applicant_consent=True, identity_verified=True, note="", actor=clerk,
        )
        yield case.shared_events()[0]


def receive_request() -> svc.ReceiveCaseRequest:
    """A staff ReceiveCase call, with a fresh request id."""
    return svc.ReceiveCaseRequest(
        request_id=uuid.uuid4().hex,
        actor=pb.Actor(staff_id=CLERK.staff_id, role=pb.ROLE_WINDOW_CLERK, site=RECEIVING, name=CLERK.name),
        item_code=ITEM_CODE, mode=pb.MODE_PROXY, handling_site=HANDLING,
        applicant=pb.Applicant(kind=pb.APPLICANT_KIND_PERSON, name=_APPLICANT.name, id_type=pb.ID_TYPE_RESIDENT_ID,
                               id_number=ID_NUMBER, phone=_APPLICANT.phone, address=_APPLICANT.address),
        materials=[pb.Material(name="居民身份证", copies=1)], applicant_consent=True, identity_verified=True,
    )
