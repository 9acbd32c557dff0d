"""Loopback ports for the processes we start, chosen where the kernel never hands ports out itself.

Binding port 0 to find a free port draws from the ephemeral range, the same range the kernel uses for
the local end of every outgoing connection. Between closing that probe and the child's own bind, a
client socket (to PostgreSQL, NATS, a partner) can take the port, and the child fails with "Address
already in use": CI saw exactly that. A port below the ephemeral range is only ever taken by an explicit
bind, so a successful probe there still holds when the child binds.
"""

from __future__ import annotations

import random
import socket
import warnings
from pathlib import Path

_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST = 10_000
_TRIES = 500
_HANDED_OUT: set[int] = set()
_pick = random.Random()  # its own generator: a test that seeds the global one must not make us collide


def ephemeral_start() -> int:
    """The first port of the kernel's ephemeral range (Linux reads it; elsewhere the IANA default)."""
    try:
        return int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 49_152


def free_port(host: str = "127.0.0.1") -> int:
    """A port on ``host`` that binds now, lies below the ephemeral range, and this process has not
    handed out before (a port handed out may not be bound yet)."""
    top = ephemeral_start()
    if top - _LOWEST < 1_000:  # an unusual kernel setting: no room below, take the kernel's choice
        warnings.warn(f"the ephemeral port range starts at {top}: ports are taken from it, and a client "
                      "socket may take one before its process binds it", RuntimeWarning, stacklevel=2)
        return _kernel_choice(host)
    for _ in range(_TRIES):
        port = _pick.randrange(_LOWEST, top)
        if port not in _HANDED_OUT and _binds(host, port):
            _HANDED_OUT.add(port)
            return port
    raise RuntimeError(f"no free port on {host} in {_LOWEST}-{top - 1} after {_TRIES} tries")


def _binds(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _kernel_choice(host: str) -> int:
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind((host, 0))
            port = int(probe.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port
