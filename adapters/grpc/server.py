"""The site's gRPC server: CaseService plus standard health checking and reflection."""

from __future__ import annotations

from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from adapters.grpc.case_servicer import CaseServicer
from adapters.grpc.interceptors import LoggingInterceptor
from hub.application.group_commit import GroupCommitter
from hub.application.service import CaseHub
from ops.metrics import SiteMetrics
from tongban.v1 import case_service_pb2, case_service_pb2_grpc

CASE_SERVICE = case_service_pb2.DESCRIPTOR.services_by_name["CaseService"].full_name
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
LIVENESS = "liveness"
READINESS = ("", "readiness", CASE_SERVICE)


class SiteServer:
    """A started gRPC server bound to ``port``; ``stop`` drains in-flight calls first."""

    def __init__(
        self, hub: CaseHub, listen: str, workers: int = 16, metrics: SiteMetrics | None = None,
        committer: GroupCommitter | None = None,
    ) -> None:
        self.hub = hub
        self.committer = committer
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rpc"),
            interceptors=[LoggingInterceptor(hub.site, metrics)],
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.so_reuseport", 0),
            ],
        )
        case_service_pb2_grpc.add_CaseServiceServicer_to_server(CaseServicer(hub, metrics, committer), self.server)
        self.health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            (CASE_SERVICE, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
            self.server,
        )
        self._stopped = False
        self.port = self.server.add_insecure_port(listen)
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
        if self.committer is not None:
            self.committer.close()
        self.hub.close()
