"""Ports for the processes we start stay clear of the kernel's ephemeral range (CI once lost a site's
port to an outgoing connection between the probe and the site's bind)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from adapters import free_port as port_picker
from adapters.free_port import ephemeral_start, free_port


def test_ports_lie_below_the_ephemeral_range_bind_and_are_never_handed_out_twice() -> None:
    handed = [free_port() for _ in range(200)]
    assert len(set(handed)) == len(handed)
    assert all(10_000 <= port < ephemeral_start() for port in handed)
    for port in handed[:20]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
            server.bind(("127.0.0.1", port))


def test_a_port_someone_else_bound_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(port_picker, "_HANDED_OUT", set())  # ports handed out earlier in the session are skipped too
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        taken = next(port for port in range(20_000, 30_000) if _bind(squatter, port))
        other = next(port for port in range(taken + 1, 30_000) if _bind(socket.socket(), port, close=True))
        draws = iter([taken, taken, other])
        monkeypatch.setattr(port_picker._pick, "randrange", lambda lo, hi: next(draws))
        assert free_port() == other


def _bind(sock: socket.socket, port: int, close: bool = False) -> bool:
    try:
        sock.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        if close:
            sock.close()


def test_without_the_kernel_file_the_iana_dynamic_range_is_assumed(monkeypatch: pytest.MonkeyPatch,
                                                                   tmp_path: Path) -> None:
    monkeypatch.setattr(port_picker, "_EPHEMERAL_RANGE", tmp_path / "absent")
    assert ephemeral_start() == 49_152
    assert free_port() < 49_152


def test_with_no_room_below_the_ephemeral_range_the_kernel_chooses_and_says_so(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "range").write_text("10500\t60999\n")
    monkeypatch.setattr(port_picker, "_EPHEMERAL_RANGE", tmp_path / "range")
    with pytest.warns(RuntimeWarning, match="ephemeral port range starts at 10500"):
        assert free_port() > 0
