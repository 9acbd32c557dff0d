"""Calling a service's method by its name in the protos, for the table-driven CLI and the demo.

The method, its request type and its response type all come from the service's descriptor, so a
table of RPC names is checked against the contract itself: a name the service does not declare is a
KeyError at once, never an attribute looked for on a stub.
"""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import Message

from tongban.v1 import audit_pb2, case_service_pb2

CASE_SERVICE: ServiceDescriptor = case_service_pb2.DESCRIPTOR.services_by_name["CaseService"]
AUDIT_SERVICE: ServiceDescriptor = audit_pb2.DESCRIPTOR.services_by_name["AuditService"]


def request_type(service: ServiceDescriptor, rpc: str) -> type[Message]:
    return message_factory.GetMessageClass(service.methods_by_name[rpc].input_type)


def unary(channel: grpc.Channel, service: ServiceDescriptor, rpc: str) -> Any:
    """The callable for one unary method: ``call(request, timeout=..., metadata=...)``."""
    method = service.methods_by_name[rpc]
    response = message_factory.GetMessageClass(method.output_type)
    return channel.unary_unary(
        f"/{service.full_name}/{rpc}",
        request_serializer=request_type(service, rpc).SerializeToString,
        response_deserializer=response.FromString,
    )
