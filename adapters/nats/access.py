"""How one site connects to the NATS server: the URL, mutual TLS from the site CA, its nkey, its inbox.

A secured server (``tongban nats-config``) lets a site in only with a client certificate from the CA
and a signature by the site's nkey, and lets it subscribe only under its own inbox prefix
``_INBOX.<site>``: the replies to its requests (pull deliveries, publish acknowledgements) go there,
and no other site may listen in. Without TLS files and a seed it connects as before, to an open
server (the benchmarks' raw baseline).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapters.tls import TlsFiles, client_ssl_context

__all__ = ["NatsAccess", "inbox_prefix"]


def inbox_prefix(site: str) -> str:
    """The subject prefix of a site's reply inboxes, the one it may subscribe to."""
    return f"_INBOX.{site}"


@dataclass(frozen=True)
class NatsAccess:
    """Where the server is and the credentials of ``site`` there (both optional for an open server).

    Attributes:
        url: ``nats://host:port``.
        site: the site these credentials are for (names the inbox prefix).
        tls: the site's CA, certificate and key; the server is verified against the CA.
        seed_file: the site's nkey seed (``tongban nats-config`` writes it, mode 0600); read by the
            client library at each connect and never kept in our memory.
    """

    url: str
    site: str = ""
    tls: TlsFiles | None = None
    seed_file: Path | None = None

    @property
    def secured(self) -> bool:
        return self.tls is not None or self.seed_file is not None

    def ssl_context(self) -> ssl.SSLContext | None:
        return client_ssl_context(self.tls) if self.tls is not None else None

    def connect_options(self) -> dict[str, Any]:
        """Keyword arguments for ``nats.aio.client.Client.connect``, beyond the server and timeouts."""
        options: dict[str, Any] = {}
        if self.tls is not None:
            options["tls"] = self.ssl_context()
        if self.seed_file is not None:
            options["nkeys_seed"] = str(self.seed_file)
        if self.site and self.secured:
            options["inbox_prefix"] = inbox_prefix(self.site)
        return options
