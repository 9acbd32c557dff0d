"""/metrics over HTTP (prometheus-client's own server), as a service the site starts and stops."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, start_http_server


class MetricsEndpoint:
    def __init__(self, listen: str, registry: CollectorRegistry) -> None:
        self.host, port = listen.rsplit(":", 1)
        self.port, self.registry = int(port), registry
        self._server: Any = None

    def start(self) -> None:
        """Binds here, not when built: a port already taken fails the site's start (exit 1, one line)."""
        self._server, _thread = start_http_server(self.port, addr=self.host, registry=self.registry)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
