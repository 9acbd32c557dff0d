"""Value objects of the case domain: who acts, for whom, on what item, in which mode.

Enum values are the stored schema (they appear in event payloads), so they are English
codes that never change; the Chinese labels are what window staff read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class LabelledEnum(str, Enum):
    """A string enum whose members carry a Chinese label for people."""

    label: str

    def __new__(cls, value: str, label: str = "") -> LabelledEnum:
        member = str.__new__(cls, value)
        member._value_ = value
        member.label = label
        return member


class Mode(LabelledEnum):
    """The four 通办 modes. Decision authority never moves, whatever the mode."""

    ONLINE = ("online", "全程网办")
    PROXY = ("proxy", "异地代收代办")
    JOINT = ("joint", "多地联办")
    SELF_SERVICE = ("self_service", "跨省自助办")


class Role(LabelledEnum):
    WINDOW_CLERK = ("window_clerk", "收件窗口人员")
    HANDLER = ("handler", "办理人员")
    SUPERVISOR = ("supervisor", "监督管理人员")
    APPLICANT = ("applicant", "申请人")
    SYSTEM = ("system", "系统")
    AUDITOR = ("auditor", "审计人员")


class Party(LabelledEnum):
    """Who can hold a clock or be held responsible (谁办理谁负责)."""

    RECEIVING_PLACE = ("receiving_place", "收件地")
    HANDLING_PLACE = ("handling_place", "办理地")
    COURIER = ("courier", "寄递企业")
    APPLICANT = ("applicant", "申请人")


class ApplicantKind(LabelledEnum):
    PERSON = ("person", "自然人")
    ORGANISATION = ("organisation", "法人或其他组织")


class IdType(LabelledEnum):
    """ID document types, with the codes seen in provincial schemas (keep a mapping for others)."""

    RESIDENT_ID = ("111", "居民身份证")
    PASSPORT = ("414", "普通护照")
    HK_MACAO_PERMIT = ("516", "港澳居民来往内地通行证")
    CREDIT_CODE = ("001", "统一社会信用代码")
    OTHER_LEGAL_ENTITY = ("099", "其他法人证件")
    OTHER = ("999", "其他")


class CaseType(LabelledEnum):
    INSTANT = ("instant", "即办件")
    COMMITTED = ("committed", "承诺件")


class Outcome(LabelledEnum):
    APPROVED = ("approved", "准予许可")
    DENIED = ("denied", "不予许可")


class ResultMethod(LabelledEnum):
    ELECTRONIC_LICENCE = ("electronic_licence", "电子证照")
    COURIER_TO_APPLICANT = ("courier_to_applicant", "邮寄申请人")
    PICKUP_AT_RECEIVING_PLACE = ("pickup_at_receiving_place", "收件地窗口领取")


class ProcedureKind(LabelledEnum):
    """Special procedures whose time does not count towards the committed deadline."""

    HEARING = ("hearing", "听证")
    TESTING = ("testing", "检验检测")
    EXPERT_REVIEW = ("expert_review", "专家评审")
    ON_SITE_INSPECTION = ("on_site_inspection", "现场核查")
    PUBLIC_NOTICE = ("public_notice", "公示")


class IssueKind(LabelledEnum):
    LOST_PARCEL = ("lost_parcel", "材料寄递丢失")
    MISROUTED = ("misrouted", "流转错误")
    DISPUTE = ("dispute", "争议")
    OVERDUE = ("overdue", "超期")
    OTHER = ("other", "其他")


class RatingLevel(LabelledEnum):
    """好差评 five levels; the value is the score."""

    VERY_SATISFIED = ("5", "非常满意")
    SATISFIED = ("4", "满意")
    BASICALLY_SATISFIED = ("3", "基本满意")
    DISSATISFIED = ("2", "不满意")
    VERY_DISSATISFIED = ("1", "非常不满意")

    @property
    def score(self) -> int:
        return int(self.value)

    @classmethod
    def from_score(cls, score: int) -> RatingLevel:
        return cls(str(score))


class RectificationOutcome(LabelledEnum):
    RECTIFIED = ("rectified", "已整改")
    EXPLAINED = ("explained", "已解释说明")
    APPEAL_UPHELD = ("appeal_upheld", "申诉成立")


@dataclass(frozen=True)
class Actor:
    """Who did a step: the staff member, their role and the site (region code) they work for."""

    staff_id: str
    role: Role
    site: str
    name: str = ""


@dataclass(frozen=True)
class Applicant:
    """The applicant. id_number, phone and address are PII: stored encrypted, shown masked."""

    kind: ApplicantKind
    name: str
    id_type: IdType
    id_number: str
    phone: str = ""
    address: str = ""


@dataclass(frozen=True)
class Material:
    name: str
    copies: int = 1
    original_required: bool = False


@dataclass(frozen=True)
class ServiceItem:
    """A catalogued service item and the legal rules the hub enforces for it.

    Limits are in working days (工作日). ``legal_days`` is the statutory limit; the committed
    deadline set at acceptance may not exceed it. ``extension_days`` is the extension a head of
    department may grant (not applied automatically).
    """

    code: str
    name: str
    department: str
    modes: frozenset[Mode]
    legal_days: int
    committed_days: int
    case_type: CaseType = CaseType.COMMITTED
    extension_days: int = 0
    materials: tuple[str, ...] = field(default=())
    paper_originals: bool = False
