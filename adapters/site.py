"""A running site: what the composition root built, started in order and stopped in reverse.

`tongban serve`, the demo and the multi-site tests all start sites built by ``build_site``, so what
is tested is what runs. The site owns nothing it did not get from the root: it starts and stops its
services, then calls the root's closers (clients, stores) in reverse order of building.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import structlog

from adapters.grpc.server import SiteServer
from adapters.settings import Settings

log = structlog.get_logger("tongban.site")


class Service(Protocol):
    """Something the site starts and stops: a server, a relay, a follower, a periodic job."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


class Site:
    def __init__(
        self, settings: Settings, staff: SiteServer, services: Sequence[Service],
        closers: Sequence[Callable[[], None]], *, partner_port: int = 0, audit_port: int = 0,
        partners: Sequence[str] = (),
    ) -> None:
        self.settings, self.staff = settings, staff
        self.services, self.closers = list(services), list(closers)
        self.partner_port, self.audit_port, self.partners = partner_port, audit_port, tuple(partners)
        self._started: list[Service] = []
        self._closed = False

    def start(self) -> None:
        """Start every service in order; if one fails, whatever did start keeps running until ``stop``."""
        for service in self.services:
            service.start()
            self._started.append(service)
        log.info("site_running", staff_port=self.staff.port, partner_port=self.partner_port,
                 partners=list(self.partners))

    def stop(self) -> None:
        """Stop the started services in reverse order (servers drain their calls first), then close
        what the root built (each once)."""
        while self._started:
            self._started.pop().stop()
        if self._closed:
            return
        self._closed = True
        for close in reversed(self.closers):
            close()
