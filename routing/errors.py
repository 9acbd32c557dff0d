"""Routing's error types: one root, typed subclasses, so adapters map each class to a status once.

Messages are Chinese first because window staff and operators read them; ``reason`` codes are
stable English identifiers for programs.
"""

from __future__ import annotations

from collections.abc import Mapping

from hub.domain.errors import RuleViolation


class RoutingError(Exception):
    """Root of every error routing raises on purpose."""

    reason: str = "ROUTING_ERROR"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UnknownRegion(RoutingError):
    """A region code that is malformed, never existed, or has been retired (撤销).

    ``retired_name`` is the last name of a retired code, so staff can tell a stale code
    (e.g. printed on an old form) from a typo.
    """

    reason = "UNKNOWN_REGION"

    def __init__(self, code: str, retired_name: str | None = None) -> None:
        self.code = code
        self.retired_name = retired_name
        if retired_name is not None:
            super().__init__(f"行政区划代码已撤销: {code} ({retired_name})")
        else:
            super().__init__(f"未知的行政区划代码: {code!r}")


class RegionDataError(RoutingError):
    """The region overlay file is malformed; ``entry`` names the offending entry."""

    reason = "BAD_REGION_DATA"

    def __init__(self, source: str, entry: str, problem: str) -> None:
        self.source = source
        self.entry = entry
        self.problem = problem
        super().__init__(f"行政区划数据有误 [{entry}] ({source}): {problem}")


class UnknownItem(RoutingError):
    """A service item code that is not in the catalogue."""

    reason = "UNKNOWN_ITEM"

    def __init__(self, code: str) -> None:
        self.code = code
        super().__init__(f"未知的事项编码: {code!r}")


class CatalogueError(RoutingError):
    """The catalogue file breaks a rule; ``item`` names the offending item (code and name if known)."""

    reason = "BAD_CATALOGUE"

    def __init__(self, source: str, item: str, problem: str) -> None:
        self.source = source
        self.item = item
        self.problem = problem
        super().__init__(f"事项目录数据有误 [{item}] ({source}): {problem}")


class AgreementError(RoutingError):
    """A partner agreements file breaks a rule; ``agreement`` names the offending agreement (id, title)."""

    reason = "BAD_AGREEMENT"

    def __init__(self, source: str, agreement: str, problem: str) -> None:
        self.source = source
        self.agreement = agreement
        self.problem = problem
        super().__init__(f"点对点通办协议数据有误 [{agreement}] ({source}): {problem}")


class UnknownAgreement(RoutingError):
    """An agreement id this site has not loaded (e.g. named in a partner's message)."""

    reason = "UNKNOWN_AGREEMENT"

    def __init__(self, agreement_id: str) -> None:
        self.agreement_id = agreement_id
        super().__init__(f"未知的点对点通办协议: {agreement_id!r}")


class Unroutable(RoutingError, RuleViolation):
    """The case cannot be routed: no partner site may handle this item, in this mode, on this date.

    It is a RoutingError (routing's own root) and a ``hub.domain.errors.RuleViolation``, so the hub
    application maps it to FAILED_PRECONDITION without importing routing. ``reason`` is one of
    ``REASONS``; ``metadata`` carries the item, mode and regions involved as strings.
    """

    UNKNOWN_ITEM = "UNKNOWN_ITEM"
    UNKNOWN_REGION = "UNKNOWN_REGION"
    LOCAL_MATTER = "LOCAL_MATTER"
    NO_AGREEMENT = "NO_AGREEMENT"
    ITEM_NOT_COVERED = "ITEM_NOT_COVERED"
    MODE_NOT_COVERED = "MODE_NOT_COVERED"
    AGREEMENT_EXPIRED = "AGREEMENT_EXPIRED"
    REASONS = frozenset(
        {
            UNKNOWN_ITEM,
            UNKNOWN_REGION,
            LOCAL_MATTER,
            NO_AGREEMENT,
            ITEM_NOT_COVERED,
            MODE_NOT_COVERED,
            AGREEMENT_EXPIRED,
        }
    )

    def __init__(self, reason: str, message: str, metadata: Mapping[str, str] | None = None) -> None:
        if reason not in self.REASONS:
            raise ValueError(f"unknown Unroutable reason {reason!r}")
        # RuleViolation's chain (HubError -> Exception) sets message, reason and metadata;
        # RoutingError.__init__ would only set ``message`` again, and takes a different signature.
        RuleViolation.__init__(self, reason, message, metadata)
