"""The nats-server manager against the real binary, secured as sites run it (mutual TLS, an nkey per site):
JetStream dedup, persistence across restarts, crashes."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import nats
import pytest
from nats.errors import NoServersError

from adapters.nats.access import NatsAccess
from adapters.nats.server import NatsServer, NatsServerError, find_nats_server
from tests.builders import HANDLING, RECEIVING
from tests.nats_fixtures import nats_server, secured_server  # noqa: F401

STREAM = f"TONGBAN_{HANDLING}"  # 苏州's stream, which 苏州 creates and 平顶山 publishes to
SUBJECT = f"tongban.{HANDLING}.events.{RECEIVING}"


async def _connect(access: NatsAccess) -> nats.NATS:
    return await nats.connect(access.url, allow_reconnect=False, **access.connect_options())


async def _publish_twice(server: NatsServer) -> tuple[bool, bool, int]:
    owner, sender = await _connect(server.access(HANDLING)), await _connect(server.access(RECEIVING))
    try:
        await owner.jetstream().add_stream(name=STREAM, subjects=[f"tongban.{HANDLING}.>"])
        js = sender.jetstream()
        headers = {"Nats-Msg-Id": "case-0001:created"}
        first = await js.publish(SUBJECT, b"case 0001 created", headers=headers)
        second = await js.publish(SUBJECT, b"case 0001 created", headers=headers)
        info = await owner.jetstream().stream_info(STREAM)
        return first.duplicate is True, second.duplicate is True, info.state.messages
    finally:
        await owner.close()
        await sender.close()


async def _stored(server: NatsServer) -> tuple[int, bytes, str | None]:
    nc = await _connect(server.access(HANDLING))
    try:
        js = nc.jetstream()
        info = await js.stream_info(STREAM)
        msg = await js.get_msg(STREAM, seq=1)
        msg_id = (msg.headers or {}).get("Nats-Msg-Id")
        return info.state.messages, msg.data or b"", msg_id
    finally:
        await nc.close()


async def _connect_fails(access: NatsAccess) -> bool:
    try:
        nc = await nats.connect(
            access.url, allow_reconnect=False, connect_timeout=1, max_reconnect_attempts=1, reconnect_time_wait=0,
            **access.connect_options(),
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
    first_dup, second_dup, messages = asyncio.run(_publish_twice(nats_server))
    assert (first_dup, second_dup, messages) == (False, True, 1)


def test_stream_survives_restart_on_the_same_port(nats_server: NatsServer) -> None:  # noqa: F811
    asyncio.run(_publish_twice(nats_server))
    port, pid = nats_server.port, nats_server.pid
    nats_server.restart()
    assert nats_server.port == port
    assert nats_server.pid != pid
    assert asyncio.run(_stored(nats_server)) == (1, b"case 0001 created", "case-0001:created")


def test_kill_then_start_again(nats_server: NatsServer) -> None:  # noqa: F811
    asyncio.run(_publish_twice(nats_server))
    nats_server.kill()
    assert nats_server.pid is None
    assert asyncio.run(_connect_fails(nats_server.access(HANDLING)))
    nats_server.start()
    assert asyncio.run(_stored(nats_server))[0] == 1


def test_context_manager_starts_and_stops(tmp_path: Path) -> None:
    with secured_server(tmp_path) as server:
        started = time.monotonic()
        assert server.running
        assert not asyncio.run(_connect_fails(server.access(HANDLING)))
    assert not server.running
    assert asyncio.run(_connect_fails(server.access(HANDLING)))
    assert time.monotonic() - started < 10


def test_start_fails_clearly_when_the_port_is_taken(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        server = NatsServer.secured(tmp_path / "nats", secured_server(tmp_path).certs_dir or tmp_path,
                                    [HANDLING], port=squatter.getsockname()[1])
        with pytest.raises(NatsServerError, match="exited with code"):
            server.start(timeout=5)
        assert not server.running
