"""gRPC servers of a site: the staff port (CaseService, health, reflection) and the mutual-TLS ports.

The composition root (adapters/bootstrap.py) builds every servicer and hands it here; a server owns
only itself: stopping it drains in-flight calls and closes nothing it did not build.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from adapters.auth.servicer import AuthServicer
from adapters.grpc.case_servicer import CaseServicer
from tongban.v1 import auth_pb2, auth_pb2_grpc, case_service_pb2, case_service_pb2_grpc

CASE_SERVICE = case_service_pb2.DESCRIPTOR.services_by_name["CaseService"].full_name
AUTH_SERVICE = auth_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
LIVENESS = "liveness"
READINESS = ("", "readiness", CASE_SERVICE)


def grpc_server(
    name: str, workers: int, interceptors: Sequence[grpc.ServerInterceptor], *,
    max_receive: int | None = MAX_MESSAGE_BYTES, max_send: int | None = None,
) -> grpc.Server:
    """A server whose port is never shared with another by accident (no SO_REUSEPORT). Message limits
    left None keep gRPC's defaults (4 MiB in, unlimited out)."""
    options: list[tuple[str, int]] = [("grpc.so_reuseport", 0)]
    if max_receive is not None:
        options.append(("grpc.max_receive_message_length", max_receive))
    if max_send is not None:
        options.append(("grpc.max_send_message_length", max_send))
    return grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name),
        interceptors=list(interceptors), options=options,
    )


class PortServer:
    """A built server on its bound ``port``, started and stopped with the site."""

    def __init__(self, server: grpc.Server, port: int) -> None:
        self.server, self.port = server, port

    def start(self) -> None:
        self.server.start()

    def stop(self, grace: float = 5.0) -> None:
        self.server.stop(grace).wait()


def secure_server(
    name: str, listen: str, credentials: grpc.ServerCredentials, workers: int,
    interceptors: Sequence[grpc.ServerInterceptor], register: Sequence[Callable[[grpc.Server], None]],
    max_receive: int | None = None,
) -> PortServer:
    server = grpc_server(name, workers, interceptors, max_receive=max_receive)
    for add in register:
        add(server)
    port = server.add_secure_port(listen, credentials)
    if port == 0:
        raise OSError(f"cannot listen on {listen}")
    return PortServer(server, port)


class SiteServer:
    """The staff port, bound to ``port``: CaseService and AuthService behind the credential gate (an
    interceptor the composition root passes), health and reflection open. Plaintext unless given
    ``credentials`` (TLS; the embedded demo listens in plaintext on loopback); ``stop`` drains first."""

    def __init__(
        self, servicer: CaseServicer, auth: AuthServicer, listen: str, workers: int = 16,
        interceptors: Sequence[grpc.ServerInterceptor] = (), credentials: grpc.ServerCredentials | None = None,
    ) -> None:
        self.servicer = servicer
        self.server = grpc_server("rpc", workers, interceptors, max_send=MAX_MESSAGE_BYTES)
        case_service_pb2_grpc.add_CaseServiceServicer_to_server(servicer, self.server)
        auth_pb2_grpc.add_AuthServiceServicer_to_server(auth, self.server)
        self.health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            (CASE_SERVICE, AUTH_SERVICE, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
             reflection.SERVICE_NAME),
            self.server,
        )
        self._stopped = False
        self.tls = credentials is not None
        if credentials is None:
            self.port = self.server.add_insecure_port(listen)
        else:
            self.port = self.server.add_secure_port(listen, credentials)
        if self.port == 0:
            raise OSError(f"cannot listen on {listen}")

    def start(self) -> None:
        self.server.start()
        self.health.set(LIVENESS, health_pb2.HealthCheckResponse.SERVING)
        self.set_ready(True)

    def set_ready(self, ready: bool) -> None:
        """Readiness: "" (the server), "readiness" and CaseService are NOT_SERVING while a dependency
        (the store, NATS) is unreachable. "liveness" stays SERVING while the process can answer."""
        status = health_pb2.HealthCheckResponse.SERVING if ready else health_pb2.HealthCheckResponse.NOT_SERVING
        for service in READINESS:
            self.health.set(service, status)

    def stop(self, grace: float = 5.0) -> None:
        if self._stopped:
            return
        self._stopped = True
        self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait()
