"""Retry policy as data: what is worth trying again, and how long to wait before each try.

Retries live in adapters and only for transient errors (a domain refusal is never retried). The
policies are settings values (``[retry.*]`` in the site config), so an operator can tune them and a
test can make them fast, without touching code.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import grpc


@dataclass(frozen=True)
class Backoff:
    """Pauses that grow by ``multiplier`` from ``first`` up to ``most`` seconds, each stretched by up to
    ``jitter`` of itself at random (so many followers failing together do not retry in step)."""

    first: float = 0.1
    most: float = 5.0
    multiplier: float = 2.0
    jitter: float = 0.1

    def pause(self, failures: int) -> float:
        """The pause after ``failures`` failures in a row (1: the first)."""
        base = min(self.first * self.multiplier ** max(failures - 1, 0), self.most)
        return base * (1 + random.uniform(0, self.jitter))

    def check(self, where: str) -> None:
        if not (0 < self.first <= self.most and self.multiplier >= 1 and 0 <= self.jitter <= 1):
            raise ValueError(f"{where}: need 0 < first <= most, multiplier >= 1 and 0 <= jitter <= 1")


# gRPC status codes a call may succeed on if made again; every other code is a final answer.
TRANSIENT_CODES = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED,
     grpc.StatusCode.ABORTED}
)


@dataclass(frozen=True)
class GrpcRetry:
    """One gRPC call to a partner: its deadline, and retries inside it on transient codes only."""

    timeout: float = 5.0  # seconds, each attempt
    attempts: int = 5
    backoff: Backoff = field(default_factory=lambda: Backoff(first=0.05, most=2.0, jitter=1.0))
    give_up_after: float = 30.0  # seconds over all attempts
    transient: frozenset[grpc.StatusCode] = TRANSIENT_CODES

    def is_transient(self, error: BaseException) -> bool:
        return isinstance(error, grpc.RpcError) and error.code() in self.transient
