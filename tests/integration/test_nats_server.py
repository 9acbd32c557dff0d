"""The nats-server manager against the real binary: JetStream dedup, persistence across restarts, crashes."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import nats
import pytest
from nats.errors import NoServersError

from adapters.nats.server import NatsServer, NatsServerError, find_nats_server
from tests.nats_fixtures import nats_server  # noqa: F401

STREAM = "TEST_CASES"
SUBJECT = "test.cases.created"


async def _publish_twice(url: str) -> tuple[bool, bool, int]:
    nc = await nats.connect(url, allow_reconnect=False)
    try:
        js = nc.jetstream()
        await js.add_stream(name=STREAM, subjects=["test.cases.>"])
        headers = {"Nats-Msg-Id": "case-0001:created"}
        first = await js.publish(SUBJECT, b"case 0001 created", headers=headers)
        second = await js.publish(SUBJECT, b"case 0001 created", headers=headers)
        info = await js.stream_info(STREAM)
        return first.duplicate is True, second.duplicate is True, info.state.messages
    finally:
        await nc.close()


async def _stored(url: str) -> tuple[int, bytes, str | None]:
    nc = await nats.connect(url, allow_reconnect=False)
    try:
        js = nc.jetstream()
        info = await js.stream_info(STREAM)
        msg = await js.get_msg(STREAM, seq=1)
        msg_id = (msg.headers or {}).get("Nats-Msg-Id")
        return info.state.messages, msg.data or b"", msg_id
    finally:
        await nc.close()


async def _connect_fails(url: str) -> bool:
    try:
        nc = await nats.connect(
            url, allow_reconnect=False, connect_timeout=1, max_reconnect_attempts=1, reconnect_time_wait=0
        )
    except (NoServersError, OSError):
        return True
    await nc.close()
    return False


def test_binary_comes_from_the_wheel() -> None:
    binary = find_nats_server()
    assert binary.name.startswith("nats-server")
    assert binary.is_file()


def test_server_binds_loopback_and_exposes_url_and_pid(nats_server: NatsServer) -> None:  # noqa: F811
    assert nats_server.url == f"nats://127.0.0.1:{nats_server.port}"
    assert nats_server.pid is not None
    assert nats_server.running


def test_duplicate_msg_id_is_stored_once(nats_server: NatsServer) -> None:  # noqa: F811
    first_dup, second_dup, messages = asyncio.run(_publish_twice(nats_server.url))
    assert (first_dup, second_dup, messages) == (False, True, 1)


def test_stream_survives_restart_on_the_same_port(nats_server: NatsServer) -> None:  # noqa: F811
    asyncio.run(_publish_twice(nats_server.url))
    port, pid = nats_server.port, nats_server.pid
    nats_server.restart()
    assert nats_server.port == port
    assert nats_server.pid != pid
    assert asyncio.run(_stored(nats_server.url)) == (1, b"case 0001 created", "case-0001:created")


def test_kill_then_start_again(nats_server: NatsServer) -> None:  # noqa: F811
    asyncio.run(_publish_twice(nats_server.url))
    nats_server.kill()
    assert nats_server.pid is None
    assert asyncio.run(_connect_fails(nats_server.url))
    nats_server.start()
    assert asyncio.run(_stored(nats_server.url))[0] == 1


def test_context_manager_starts_and_stops(tmp_path: Path) -> None:
    with NatsServer(tmp_path / "nats") as server:
        started = time.monotonic()
        assert server.running
        url = server.url
    assert not server.running
    assert asyncio.run(_connect_fails(url))
    assert time.monotonic() - started < 10


def test_start_fails_clearly_when_the_port_is_taken(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        server = NatsServer(tmp_path / "nats", port=squatter.getsockname()[1])
        with pytest.raises(NatsServerError, match="exited with code"):
            server.start(timeout=5)
        assert not server.running
