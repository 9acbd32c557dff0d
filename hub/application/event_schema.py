"""The schema of every case event a partner may send: one strict model per event type's ``data``.

What a partner sends becomes part of our store and is folded on every read of the case, so its
``data`` must be exactly what our own hub records for that type (the step commands in commands.py
and the domain's commands in case.py): every field typed, texts bounded and free of control
characters, enums closed, numbers bounded, nothing missing that the fold reads and nothing extra
(an extra key is how a payload would override the envelope's identity). The models only judge;
the event is stored as it was sent, so its hash stays the sender's.

Free texts (notes, reasons) may hold line breaks and tabs; codes, names and numbers hold no control
character at all. Every field of an event class is required (the class cannot be constructed
without it; tests pin the two together); inside a step's ``details``, fields the step's command fills
with a default are optional (older events, and domain-level callers, may leave them out).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    StringConstraints,
    create_model,
    model_validator,
)
from stdnum.cn import ric, uscc

from hub.application.text_rules import NoControl, NoControlInText
from hub.domain.values import (
    ApplicantKind,
    CaseType,
    IdType,
    IssueKind,
    Mode,
    Outcome,
    Party,
    ProcedureKind,
    RectificationOutcome,
    ResultMethod,
    Role,
)

MAX_DAYS = 365  # the longest commitment AcceptCase allows, and more than any legal limit in the catalogue

SiteCode = Annotated[StrictStr, StringConstraints(pattern=r"^[0-9]{6}$"), NoControl]
Token = Annotated[StrictStr, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:\-]+$")]
Code = Annotated[StrictStr, StringConstraints(min_length=1, max_length=40), NoControl]
Name = Annotated[StrictStr, StringConstraints(min_length=1, max_length=100), NoControl]
StaffName = Annotated[StrictStr, StringConstraints(max_length=32), NoControl]
IdNumber = Annotated[StrictStr, StringConstraints(min_length=1, max_length=40), NoControl]
Phone = Annotated[StrictStr, StringConstraints(max_length=20), NoControl]
CaseNumber = Annotated[StrictStr, StringConstraints(pattern=r"^[0-9]{22}[0-9X]$")]
Label = Annotated[StrictStr, StringConstraints(max_length=200), NoControl]
ShortText = Annotated[StrictStr, StringConstraints(max_length=64), NoControl]
Address = Annotated[StrictStr, StringConstraints(max_length=200), NoControlInText]
Text = Annotated[StrictStr, StringConstraints(max_length=500), NoControlInText]
Reason = Annotated[StrictStr, StringConstraints(min_length=1, max_length=500), NoControlInText]
ShortReason = Annotated[StrictStr, StringConstraints(min_length=1, max_length=200), NoControlInText]
IssueId = Annotated[StrictStr, StringConstraints(pattern=r"^Q[0-9]{1,4}(-[0-9]{6})?$")]
Days = Annotated[StrictInt, Field(ge=0, le=MAX_DAYS)]


class Schema(BaseModel):
    """Strict: no coercion of types (an enum takes its stored string value), no extra keys."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------------------- envelope parts
class ActorData(Schema):
    staff_id: Token
    role: Role
    site: SiteCode
    name: StaffName = ""


# ---------------------------------------------------------------------------- CaseReceived
class ItemData(Schema):
    code: Code
    name: Label
    department: Label
    legal_days: Days
    committed_days: Days
    case_type: CaseType


class ApplicantData(Schema):
    kind: ApplicantKind
    name: Name
    id_type: IdType
    id_number: IdNumber
    phone: Phone = ""
    address: Address = ""


class MaterialData(Schema):
    name: Name
    copies: Annotated[StrictInt, Field(ge=1, le=99)] = 1
    original_required: StrictBool = False


class RouteData(Schema):
    handling_site: SiteCode
    co_handling_sites: list[SiteCode] = Field(max_length=5)
    department: Label
    agreement_id: Code
    agreement_version: Annotated[StrictInt, Field(ge=1, le=1_000_000)]


def _no_route(value: Any) -> Any:
    return None if value == {} else value  # a case routed without a router (or before routes) stores {}


class CaseReceivedData(Schema):
    case_number: CaseNumber
    request_id: Token
    item: ItemData
    mode: Mode
    receiving_site: SiteCode
    handling_site: SiteCode
    co_handling_sites: list[SiteCode] = Field(max_length=5)
    applicant: ApplicantData
    materials: list[MaterialData] = Field(max_length=50)
    note: Text
    route: Annotated[RouteData | None, BeforeValidator(_no_route)]

    @model_validator(mode="after")
    def _as_the_window_would(self) -> CaseReceivedData:
        """The rules ``Case.receive`` applies at the window, which a partner's receipt must also meet:
        the sites of the case, its mode, its limits, its number and route, the applicant's id."""
        co = self.co_handling_sites
        if self.handling_site == self.receiving_site:
            raise ValueError("办理地与收件地相同")
        if len(set(co)) != len(co) or self.handling_site in co or self.receiving_site in co:
            raise ValueError("联办地重复，或与办理地、收件地相同")
        if (self.mode is Mode.JOINT) != bool(co):
            raise ValueError("多地联办须指定联办地；其他模式不能指定联办地")
        if not self.item.legal_days >= 1 or self.item.committed_days > self.item.legal_days:
            raise ValueError("事项时限无效：承诺时限超过法定时限，或法定时限为 0")
        if not self.case_number.startswith(self.receiving_site):
            raise ValueError("办件编号须以收件地行政区划代码开头")
        if self.route is not None and (self.route.handling_site, sorted(self.route.co_handling_sites)) != (
                self.handling_site, sorted(co)):
            raise ValueError("路由决定与办件的办理地、联办地不一致")
        checker = {IdType.RESIDENT_ID: ric, IdType.CREDIT_CODE: uscc}.get(self.applicant.id_type)
        if checker is not None and not checker.is_valid(self.applicant.id_number):
            raise ValueError("申请人证件号码校验不通过")
        return self


# ---------------------------------------------------------------------------- main-track step details
class NoDetails(Schema):
    pass


class RefusalDetails(Schema):
    reasons: list[ShortReason] = Field(min_length=1, max_length=20)


class ForwardDetails(Schema):
    courier: ShortText = ""
    tracking_number: ShortText = ""


class SupplementRequestDetails(Schema):
    missing_materials: list[Name] = Field(min_length=1, max_length=50)
    note: Text = ""


class SupplementDetails(Schema):
    materials: list[MaterialData] = Field(min_length=1, max_length=50)


class ReasonDetails(Schema):
    reason: Reason


class NotAcceptedDetails(Schema):
    reason: Reason
    notice_number: ShortText = ""


class AcceptDetails(Schema):
    """The rule fills in the item's usual commitment when none is given, so a stored one is never null."""

    committed_days: Days


class SpecialStartDetails(Schema):
    kind: ProcedureKind
    reason: Text = ""


class SpecialEndDetails(Schema):
    conclusion: Text = ""


class DecisionDetails(Schema):
    outcome: Outcome
    reason: Text = ""
    decision_number: ShortText = ""


class DispatchDetails(Schema):
    method: ResultMethod
    licence_reference: ShortText = ""
    courier: ShortText = ""
    tracking_number: ShortText = ""


class DeliveryDetails(Schema):
    received_by: ShortText = ""


def _step(details: type[Schema]) -> type[Schema]:
    """The data of a main-track event: its details, as the step's command recorded them."""
    return create_model(f"{details.__name__}Data", __base__=Schema, details=(details, ...))


# ---------------------------------------------------------------------------- issues and ratings
class IssueRaisedData(Schema):
    issue_id: IssueId
    kind: IssueKind
    description: Reason


class ResponsibilityAssignedData(Schema):
    issue_id: IssueId
    party: Party
    note: Text


class IssueResolvedData(Schema):
    issue_id: IssueId
    resolution: Reason


class CaseRatedData(Schema):
    score: Annotated[StrictInt, Field(ge=1, le=5)]
    reason: Text
    about: Party


class CallbackData(Schema):
    note: Reason


class ReviewClosedData(Schema):
    outcome: RectificationOutcome
    note: Reason


class FeedbackData(Schema):
    satisfied: StrictBool
    note: Text


# Every event type a partner may send (the names are the stored event types, case.EVENT_TYPES).
DATA_SCHEMAS: dict[str, type[Schema]] = {
    "CaseReceived": CaseReceivedData,
    "IntakeRefused": _step(RefusalDetails),
    "CaseForwarded": _step(ForwardDetails),
    "CaseSignedIn": _step(NoDetails),
    "SupplementRequested": _step(SupplementRequestDetails),
    "SupplementSubmitted": _step(SupplementDetails),
    "CaseNotAccepted": _step(NotAcceptedDetails),
    "CaseReturned": _step(ReasonDetails),
    "CaseAccepted": _step(AcceptDetails),
    "CaseSuspended": _step(ReasonDetails),
    "CaseResumed": _step(NoDetails),
    "SpecialProcedureStarted": _step(SpecialStartDetails),
    "SpecialProcedureEnded": _step(SpecialEndDetails),
    "CaseDecided": _step(DecisionDetails),
    "ResultDispatched": _step(DispatchDetails),
    "ResultDelivered": _step(DeliveryDetails),
    "CaseArchived": _step(NoDetails),
    "CaseWithdrawn": _step(ReasonDetails),
    "IssueRaised": IssueRaisedData,
    "ResponsibilityAssigned": ResponsibilityAssignedData,
    "IssueResolved": IssueResolvedData,
    "CaseRated": CaseRatedData,
    "BadReviewCallbackMade": CallbackData,
    "BadReviewClosed": ReviewClosedData,
    "RectificationFeedbackRecorded": FeedbackData,
}
