"""The reconcile protocol's messages, independent of the wire (adapters/reconcile/wire.py encodes them).

A message is a list of ranges over the 16-byte case keys, in ascending order. Bounds are key
prefixes (trailing zero bytes dropped); ``hi`` None means "to the end". Each range is a
fingerprint (count and XOR of digests), an id list (every key with a digest prefix), or, from the
responder only, an id diff (its items that differ from the initiator's list, and the keys it lacks).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from uuid import UUID

from hub.domain.digests import DIGEST_VERSION

KEY_BYTES = 16
PREFIX_BYTES = 8  # digest bytes carried in id lists: a false "equal" needs a 2^-64 collision


class Mode(IntEnum):
    FINGERPRINT = 1
    ID_LIST = 2
    ID_DIFF = 3


@dataclass(frozen=True)
class Range:
    lo: bytes
    hi: bytes | None
    mode: Mode
    count: int = 0
    fingerprint: bytes = b""
    items: tuple[tuple[bytes, bytes], ...] = ()
    missing: tuple[bytes, ...] = ()

    def size(self) -> int:
        """Bytes on the wire, near enough to keep frames under their bound (protobuf adds a few)."""
        return (
            8 + len(self.lo) + len(self.hi or b"") + len(self.fingerprint) + 6
            + len(self.items) * (KEY_BYTES + PREFIX_BYTES) + len(self.missing) * KEY_BYTES
        )


@dataclass(frozen=True)
class Message:
    ranges: tuple[Range, ...] = ()
    consumed: int = 0  # in a reply: how many of the request's ranges it answers; the rest come again
    more: bool = False  # in a request: the asker has more ranges queued after this frame

    def size(self) -> int:
        return 8 + sum(r.size() for r in self.ranges)


@dataclass(frozen=True)
class Params:
    """Agreed in the handshake. The responder may lower the bounds; it never raises them."""

    version: int = DIGEST_VERSION
    branching: int = 16
    id_list_threshold: int = 32
    max_frame_bytes: int = 1 << 20
    max_rounds: int = 256  # a bound against a peer that never stops; small frames need many rounds


@dataclass(frozen=True)
class OriginState:
    count: int
    head: str
    head_at_your_count: str = ""  # the chain head at the asker's count, when we hold that many


@dataclass(frozen=True)
class CaseCounts:
    """What the asker holds of a case: events per origin (their heads are checked against ours)."""

    case_id: UUID
    origins: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class CaseDescription:
    case_id: UUID
    found: bool
    receiving_site: str = ""
    origins: dict[str, OriginState] = field(default_factory=dict)
