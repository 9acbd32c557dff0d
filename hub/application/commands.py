"""Commands: what a caller may ask of the hub, validated before any case is loaded.

Validation is declarative (pydantic) so every bad field is reported at once, with its path, and
nothing is written. ID numbers and credit codes are checked with python-stdnum.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any, ClassVar, TypeVar
from uuid import UUID

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from stdnum.cn import ric, uscc
from stdnum.exceptions import ValidationError as StdnumError

from hub.application.ports import CaseQuery, Catalogue, DueFilter, Regions
from hub.application.text_rules import NoControl, NoControlInText
from hub.domain.case import Case
from hub.domain.errors import FieldViolation, InvalidInput
from hub.domain.lifecycle import CaseState, Step
from hub.domain.values import (
    Actor,
    Applicant,
    ApplicantKind,
    IdType,
    IssueKind,
    Material,
    Mode,
    Outcome,
    Party,
    ProcedureKind,
    RatingLevel,
    RectificationOutcome,
    ResultMethod,
    Role,
)

RegionCode = Annotated[str, StringConstraints(pattern=r"^\d{6}$")]
Text = Annotated[str, StringConstraints(max_length=500, strip_whitespace=True), NoControlInText]
ShortText = Annotated[str, StringConstraints(max_length=64, strip_whitespace=True), NoControl]
Name = Annotated[str, StringConstraints(min_length=1, max_length=100, strip_whitespace=True), NoControl]
Token = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:\-]+$")]
_STDNUM_REASONS = {
    "InvalidChecksum": "校验位错误",
    "InvalidLength": "长度不正确",
    "InvalidFormat": "格式不正确",
    "InvalidComponent": "出生日期或地区码无效",
}
_PHONE = re.compile(r"^(1[3-9]\d{9}|0\d{2,3}-?\d{7,8})$")


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)


class ActorIn(_Model):
    staff_id: Token
    role: Role
    site: RegionCode
    name: Annotated[str, StringConstraints(max_length=32), NoControl] = ""

    def to_domain(self) -> Actor:
        return Actor(self.staff_id, self.role, self.site, self.name)


class ApplicantIn(_Model):
    kind: ApplicantKind
    name: Name
    id_type: IdType
    id_number: Annotated[str, StringConstraints(min_length=1, max_length=40), NoControl]
    phone: Annotated[str, StringConstraints(max_length=20), NoControl] = ""
    address: Annotated[str, StringConstraints(max_length=200), NoControlInText] = ""

    @field_validator("id_type")
    @classmethod
    def _type_fits_kind(cls, id_type: IdType, info: ValidationInfo) -> IdType:
        kind = info.data.get("kind")
        person_types = {IdType.RESIDENT_ID, IdType.PASSPORT, IdType.HK_MACAO_PERMIT, IdType.OTHER}
        if kind is ApplicantKind.PERSON and id_type not in person_types:
            raise ValueError("自然人须使用个人证件类型")
        if kind is ApplicantKind.ORGANISATION and id_type in person_types - {IdType.OTHER}:
            raise ValueError("法人或其他组织须使用统一社会信用代码或法人证件")
        return id_type

    @field_validator("id_number")
    @classmethod
    def _checksum(cls, id_number: str, info: ValidationInfo) -> str:
        id_type = info.data.get("id_type")
        checker = {IdType.RESIDENT_ID: ric, IdType.CREDIT_CODE: uscc}.get(id_type) if id_type else None
        if checker is not None:
            try:
                return str(checker.validate(id_number))
            except StdnumError as exc:
                what = "居民身份证号码" if id_type is IdType.RESIDENT_ID else "统一社会信用代码"
                raise ValueError(f"{what}无效：{_STDNUM_REASONS.get(type(exc).__name__, '号码不正确')}") from None
        return id_number

    @field_validator("phone")
    @classmethod
    def _phone(cls, phone: str) -> str:
        if phone and not _PHONE.match(phone):
            raise ValueError("联系电话格式不正确")
        return phone

    def to_domain(self) -> Applicant:
        return Applicant(self.kind, self.name, self.id_type, self.id_number.upper(), self.phone, self.address)


class MaterialIn(_Model):
    name: Name
    copies: int = Field(1, ge=1, le=99)
    original_required: bool = False

    def to_domain(self) -> Material:
        return Material(self.name, self.copies, self.original_required)


class ReceiveCase(_Model):
    """A receipt. Pass ``context=ReferenceData(...)`` to ``parse`` to have item and region codes
    checked in the same pass as the other fields, so every problem is reported at once."""

    request_id: Token
    actor: ActorIn
    item_code: Annotated[str, StringConstraints(min_length=1, max_length=40), NoControl]
    mode: Mode
    handling_site: RegionCode
    co_handling_sites: list[RegionCode] = Field(default_factory=list, max_length=5)
    applicant: ApplicantIn
    materials: list[MaterialIn] = Field(default_factory=list, max_length=50)
    applicant_consent: bool = False
    identity_verified: bool = False
    note: Text = ""

    @field_validator("item_code")
    @classmethod
    def _known_item(cls, code: str, info: ValidationInfo) -> str:
        if isinstance(info.context, ReferenceData) and code not in info.context.catalogue:
            raise ValueError(f"未知事项编码 {code}")
        return code

    @field_validator("handling_site")
    @classmethod
    def _known_site(cls, code: str, info: ValidationInfo) -> str:
        if isinstance(info.context, ReferenceData) and not info.context.regions.is_valid(code):
            raise ValueError(f"未知或已撤销的行政区划代码 {code}")
        return code

    @field_validator("co_handling_sites")
    @classmethod
    def _known_sites(cls, codes: list[str], info: ValidationInfo) -> list[str]:
        if isinstance(info.context, ReferenceData):
            unknown = [code for code in codes if not info.context.regions.is_valid(code)]
            if unknown:
                raise ValueError(f"未知或已撤销的行政区划代码 {'、'.join(unknown)}")
        return codes


@dataclass(frozen=True)
class ReferenceData:
    """The catalogue and region directory, for validating codes while parsing."""

    catalogue: Catalogue
    regions: Regions


class CaseCommand(_Model):
    """A step on an existing case. ``expected_version`` guards against lost updates."""

    case_id: UUID
    actor: ActorIn
    expected_version: int | None = Field(None, ge=1)

    def apply(self, case: Case, site: str) -> None:
        """Take the command on ``case`` at ``site``, the site recording the event."""
        raise NotImplementedError


class StepCommand(CaseCommand):
    """A main-track step: the fields beyond the common ones are the step's recorded details."""

    STEP: ClassVar[Step]

    def apply(self, case: Case, site: str) -> None:
        details = self.model_dump(mode="json", exclude={"case_id", "actor", "expected_version"})
        case.take_step(self.STEP, self.actor.to_domain(), site=site, **details)


Reason = Annotated[str, StringConstraints(min_length=1, max_length=500, strip_whitespace=True), NoControlInText]


class RefuseIntake(StepCommand):
    STEP = Step.REFUSE_INTAKE
    reasons: list[Annotated[str, StringConstraints(min_length=1, max_length=200), NoControlInText]] = Field(
        min_length=1, max_length=20)


class ForwardCase(StepCommand):
    STEP = Step.FORWARD
    courier: ShortText = ""
    tracking_number: ShortText = ""


class SignCase(StepCommand):
    STEP = Step.SIGN


class RequestSupplement(StepCommand):
    STEP = Step.REQUEST_SUPPLEMENT
    missing_materials: list[Name] = Field(min_length=1, max_length=50)
    note: Text = ""


class SubmitSupplement(StepCommand):
    STEP = Step.SUBMIT_SUPPLEMENT
    materials: list[MaterialIn] = Field(min_length=1, max_length=50)


class RejectCase(StepCommand):
    STEP = Step.REJECT
    reason: Reason
    notice_number: ShortText = ""


class ReturnCase(StepCommand):
    STEP = Step.RETURN
    reason: Reason


class AcceptCase(StepCommand):
    STEP = Step.ACCEPT
    committed_days: int | None = Field(None, ge=0, le=365)


class SuspendCase(StepCommand):
    STEP = Step.SUSPEND
    reason: Reason


class ResumeCase(StepCommand):
    STEP = Step.RESUME


class StartSpecialProcedure(StepCommand):
    STEP = Step.START_SPECIAL
    kind: ProcedureKind
    reason: Text = ""


class EndSpecialProcedure(StepCommand):
    STEP = Step.END_SPECIAL
    conclusion: Text = ""


class DecideCase(StepCommand):
    STEP = Step.DECIDE
    outcome: Outcome
    reason: Text = ""
    decision_number: ShortText = ""


class DispatchResult(StepCommand):
    STEP = Step.DISPATCH
    method: ResultMethod
    licence_reference: ShortText = ""
    courier: ShortText = ""
    tracking_number: ShortText = ""


class ConfirmDelivery(StepCommand):
    STEP = Step.CONFIRM_DELIVERY
    received_by: ShortText = ""


class ArchiveCase(StepCommand):
    STEP = Step.ARCHIVE


class WithdrawCase(StepCommand):
    STEP = Step.WITHDRAW
    reason: Reason


class RaiseIssue(CaseCommand):
    kind: IssueKind
    description: Reason

    def apply(self, case: Case, site: str) -> None:
        case.raise_issue(self.actor.to_domain(), self.kind, self.description, site=site)


class AssignResponsibility(CaseCommand):
    issue_id: Annotated[str, StringConstraints(pattern=r"^Q\d{1,4}(-\d{6})?$")]
    party: Party
    note: Text = ""

    def apply(self, case: Case, site: str) -> None:
        case.assign_responsibility(self.actor.to_domain(), self.issue_id, self.party, self.note, site=site)


class ResolveIssue(CaseCommand):
    issue_id: Annotated[str, StringConstraints(pattern=r"^Q\d{1,4}(-\d{6})?$")]
    resolution: Reason

    def apply(self, case: Case, site: str) -> None:
        case.resolve_issue(self.actor.to_domain(), self.issue_id, self.resolution, site=site)


class RateCase(CaseCommand):
    score: int = Field(ge=1, le=5)
    reason: Text = ""
    about: Party = Party.HANDLING_PLACE

    def apply(self, case: Case, site: str) -> None:
        case.rate(self.actor.to_domain(), RatingLevel.from_score(self.score), self.reason, self.about, site=site)


class RecordCallback(CaseCommand):
    note: Reason

    def apply(self, case: Case, site: str) -> None:
        case.record_callback(self.actor.to_domain(), self.note, site=site)


class CloseBadReview(CaseCommand):
    outcome: RectificationOutcome
    note: Text = ""

    def apply(self, case: Case, site: str) -> None:
        case.close_bad_review(self.actor.to_domain(), self.outcome, self.note, site=site)


class RecordFeedback(CaseCommand):
    satisfied: bool
    note: Text = ""

    def apply(self, case: Case, site: str) -> None:
        case.record_feedback(self.actor.to_domain(), self.satisfied, self.note, site=site)


MAX_PAGE = 500
DEFAULT_PAGE = 50
_STATE_VALUES = frozenset(s.value for s in CaseState)
_DUE_VALUES = frozenset(f.value for f in DueFilter)


class ListCasesQuery(_Model):
    """A page of the case list as a staff client asks for it; ``to_query`` is the read model's query.

    Enum fields arrive as domain values, like every command's: UNSPECIFIED as None (ignored in
    ``states``), a number this version does not know as a value no enum has (refused). ``page_token``
    is the opaque token from ``page_token(last_case_id)``; ``as_of`` is filled in by the caller
    (the request's day, or today).
    """

    model_config = ConfigDict(str_strip_whitespace=False)  # filters are checked as given, not stripped

    as_of: date
    states: frozenset[CaseState] = frozenset()
    due: DueFilter | None = None
    partner: str = ""
    page_size: int = 0
    after: str | None = Field(None, validation_alias="page_token")

    @field_validator("page_size")
    @classmethod
    def _page_size(cls, size: int) -> int:
        if not 0 <= size <= MAX_PAGE:
            raise ValueError(f"须在 0 到 {MAX_PAGE} 之间")
        return size

    @field_validator("states", mode="before")
    @classmethod
    def _known_states(cls, states: Any) -> Any:
        given = [s for s in states if s is not None]
        if any(s not in _STATE_VALUES for s in given):
            raise ValueError("包含未知的状态")
        return given

    @field_validator("due", mode="before")
    @classmethod
    def _known_due(cls, due: Any) -> Any:
        if due is not None and due not in _DUE_VALUES:
            raise ValueError("取值无效")
        return due

    @field_validator("partner")
    @classmethod
    def _region(cls, partner: str) -> str:
        if partner and not (len(partner) == 6 and partner.isdigit()):
            raise ValueError("须为 6 位行政区划代码")
        return partner

    @field_validator("after", mode="before")
    @classmethod
    def _decode_token(cls, token: Any) -> str | None:
        if not token:
            return None
        try:
            return str(UUID(base64.urlsafe_b64decode(str(token).encode()).decode()))
        except (ValueError, UnicodeDecodeError):
            raise ValueError("无效的分页标记") from None

    def to_query(self) -> CaseQuery:
        return CaseQuery(
            as_of=self.as_of,
            states=frozenset(s.value for s in self.states),
            due=self.due,
            partner=self.partner or None,
            page_size=self.page_size or DEFAULT_PAGE,
            after=self.after,
        )


def page_token(last_case_id: str) -> str:
    """The opaque token for the page after the one ending at ``last_case_id`` (see ListCasesQuery)."""
    return base64.urlsafe_b64encode(last_case_id.encode()).decode()


M = TypeVar("M", bound=BaseModel)


def parse(model: type[M], data: dict[str, Any], context: object = None) -> M:
    """Validate ``data`` as ``model``; every problem becomes a field violation of InvalidInput."""
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        raise InvalidInput(_violations(exc)) from None


_MESSAGES = {
    "missing": "必填",
    "string_too_short": "不能为空",
    "string_too_long": "不能超过 {max_length} 个字符",
    "string_pattern_mismatch": "格式不正确",
    "enum": "取值无效",
    "too_short": "至少 {min_length} 项",
    "too_long": "最多 {max_length} 项",
    "greater_than_equal": "不能小于 {ge}",
    "less_than_equal": "不能大于 {le}",
    "uuid_parsing": "不是有效的办件编号(UUID)",
    "uuid_type": "不是有效的办件编号(UUID)",
    "extra_forbidden": "不允许的字段",
    "int_parsing": "须为整数",
    "bool_parsing": "须为是/否",
}


def _violations(exc: ValidationError) -> list[FieldViolation]:
    out = []
    for error in exc.errors(include_url=False):
        path = ".".join(str(part) for part in error["loc"]) or "request"
        template = _MESSAGES.get(error["type"])
        if template is not None:
            message = template.format(**error.get("ctx", {}))
        else:
            message = str(error["msg"]).removeprefix("Value error, ")
        out.append(FieldViolation(path, message))
    return out
