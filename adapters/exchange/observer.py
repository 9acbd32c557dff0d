"""What the exchange tells whoever watches it (SiteMetrics in a site, nothing in a unit test).

A typed observer handed in at the composition root: the relay, the NATS inbox and the partner port
report what happened; they never reach for a metric, and a test need not build a registry.
"""

from __future__ import annotations

from typing import Protocol


class ExchangeObserver(Protocol):
    def received(self, sender: str, channel: str, events: int) -> None:
        """A partner's events were stored."""
        ...

    def refused(self, sender: str, reason: str) -> None:
        """A partner's batch (or message) was refused with ``reason``, one of partner_intake.REFUSAL_REASONS
        or OTHER: nothing of it was stored."""
        ...

    def delivered(self, partner: str, channel: str, events: int, seconds: float) -> None:
        """A batch of ours reached the partner (``seconds`` from sending to its answer)."""
        ...

    def delivery_failed(self, partner: str, channel: str) -> None: ...

    def retried(self, partner: str, channel: str) -> None:
        """A transient error inside one delivery, retried there."""
        ...

    def relay_lag(self, partner: str, channel: str, events: int, seconds: float) -> None:
        """How far behind the relay is: log entries after its position, age of its oldest unsent event."""
        ...

    def awaiting_receipts(self, partner: str, sent: int = 0, confirmed: int = 0) -> None:
        """Our events sent to the partner and not yet confirmed: ``sent`` more, ``confirmed`` fewer."""
        ...

    def parked_deliveries(self, partner: str, channel: str, cases: int) -> None:
        """Cases of ours the partner refused for good, parked and waiting for an operator (now ``cases``)."""
        ...


class Unobserved:
    """An observer that keeps nothing."""

    def received(self, sender: str, channel: str, events: int) -> None:
        return None

    def refused(self, sender: str, reason: str) -> None:
        return None

    def delivered(self, partner: str, channel: str, events: int, seconds: float) -> None:
        return None

    def delivery_failed(self, partner: str, channel: str) -> None:
        return None

    def retried(self, partner: str, channel: str) -> None:
        return None

    def relay_lag(self, partner: str, channel: str, events: int, seconds: float) -> None:
        return None

    def awaiting_receipts(self, partner: str, sent: int = 0, confirmed: int = 0) -> None:
        return None

    def parked_deliveries(self, partner: str, channel: str, cases: int) -> None:
        return None
