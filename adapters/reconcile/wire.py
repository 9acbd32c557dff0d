"""Reconcile messages ↔ protobuf (tongban.v1.reconcile). Decoding checks shapes; rbsr.check_message
checks meaning (order, bounds, sizes) before anything is read from the store."""

from __future__ import annotations

from adapters.grpc.errors import parse_uuid
from hub.domain.errors import InvalidInput
from reconciliation.messages import (
    KEY_BYTES,
    PREFIX_BYTES,
    CaseCounts,
    CaseDescription,
    Mode,
    OriginState,
    Params,
    Range,
)
from tongban.v1 import reconcile_pb2 as pb

_ITEM = KEY_BYTES + PREFIX_BYTES


def params_message(p: Params) -> pb.ReconcileParams:
    return pb.ReconcileParams(digest_version=p.version, branching=p.branching, id_list_threshold=p.id_list_threshold,
                              max_frame_bytes=p.max_frame_bytes, max_rounds=p.max_rounds)


def params_from(m: pb.ReconcileParams) -> Params:
    return Params(version=m.digest_version, branching=m.branching, id_list_threshold=m.id_list_threshold,
                  max_frame_bytes=m.max_frame_bytes, max_rounds=m.max_rounds)


def range_message(r: Range) -> pb.ReconcileRange:
    return pb.ReconcileRange(
        lower=r.lo, upper=r.hi or b"", open_ended=r.hi is None, mode=int(r.mode),  # type: ignore[arg-type]
        count=r.count, fingerprint=r.fingerprint, items=b"".join(k + d for k, d in r.items),
        missing=b"".join(r.missing),
    )


def range_from(m: pb.ReconcileRange, where: str) -> Range:
    if m.mode not in (1, 2, 3):
        raise InvalidInput.one(where, f"未知的区间类型 {m.mode}")
    if len(m.items) % _ITEM or len(m.missing) % KEY_BYTES:
        raise InvalidInput.one(where, "清单长度不是条目大小的整数倍")
    items = tuple((m.items[i:i + KEY_BYTES], m.items[i + KEY_BYTES:i + _ITEM]) for i in range(0, len(m.items), _ITEM))
    missing = tuple(m.missing[i:i + KEY_BYTES] for i in range(0, len(m.missing), KEY_BYTES))
    return Range(m.lower, None if m.open_ended else m.upper, Mode(m.mode), m.count, m.fingerprint, items, missing)


def ranges_from(ranges: object) -> tuple[Range, ...]:
    return tuple(range_from(m, f"ranges.{i}") for i, m in enumerate(ranges))  # type: ignore[call-overload]


def counts_message(c: CaseCounts) -> pb.CaseCounts:
    return pb.CaseCounts(case_id=str(c.case_id),
                         origins=[pb.OriginCount(origin_site=o, count=n) for o, n in sorted(c.origins.items())])


def counts_from(m: pb.CaseCounts, where: str) -> CaseCounts:
    return CaseCounts(parse_uuid(m.case_id, where), {o.origin_site: int(o.count) for o in m.origins})


def description_message(d: CaseDescription) -> pb.CaseDescription:
    return pb.CaseDescription(
        case_id=str(d.case_id), found=d.found, receiving_site=d.receiving_site,
        origins=[
            pb.OriginCount(origin_site=o, count=s.count, chain_head=s.head, head_at_your_count=s.head_at_your_count)
            for o, s in sorted(d.origins.items())
        ],
    )


def description_from(m: pb.CaseDescription, where: str) -> CaseDescription:
    return CaseDescription(
        parse_uuid(m.case_id, where), m.found, m.receiving_site,
        {o.origin_site: OriginState(int(o.count), o.chain_head, o.head_at_your_count) for o in m.origins},
    )
