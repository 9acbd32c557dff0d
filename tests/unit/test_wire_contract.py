"""The wire contract (protos/tongban/v1) stays in step with the domain vocabulary.

The adapters translate domain enums to wire enums by member name (``Mode.PROXY`` <->
``MODE_PROXY``), so a member added on one side only would fail at run time in translation;
these tests make it fail here instead. They also pin the RPC naming convention every
generated client and the gRPC adapter rely on: ``Foo`` takes ``FooRequest`` and returns
``FooResponse``.
"""

from __future__ import annotations

import importlib
import re
from enum import Enum

import pytest
from google.protobuf.descriptor import EnumDescriptor, ServiceDescriptor

from hub.domain import values
from tongban.v1 import case_pb2, case_service_pb2, case_service_pb2_grpc

DOMAIN_ENUMS: dict[str, tuple[str, str]] = {
    # proto enum name: (domain module, domain enum class name)
    "Mode": ("hub.domain.values", "Mode"),
    "Role": ("hub.domain.values", "Role"),
    "Party": ("hub.domain.values", "Party"),
    "ApplicantKind": ("hub.domain.values", "ApplicantKind"),
    "IdType": ("hub.domain.values", "IdType"),
    "Outcome": ("hub.domain.values", "Outcome"),
    "ResultMethod": ("hub.domain.values", "ResultMethod"),
    "ProcedureKind": ("hub.domain.values", "ProcedureKind"),
    "IssueKind": ("hub.domain.values", "IssueKind"),
    "RectificationOutcome": ("hub.domain.values", "RectificationOutcome"),
    "CaseState": ("hub.domain.lifecycle", "CaseState"),
}


def _service() -> ServiceDescriptor:
    return case_service_pb2.DESCRIPTOR.services_by_name["CaseService"]


def _enum_prefix(enum_name: str) -> str:
    """``IdType`` -> ``ID_TYPE``: the buf STANDARD prefix of an enum's values."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", enum_name).upper()


def _domain_enum(module_name: str, class_name: str) -> type[Enum]:
    if module_name != values.__name__:
        # CaseState's module may not exist yet while the lifecycle is being written.
        module = pytest.importorskip(module_name)
    else:
        module = importlib.import_module(module_name)
    enum_cls: object = getattr(module, class_name)
    assert isinstance(enum_cls, type) and issubclass(enum_cls, Enum)
    return enum_cls


def _proto_enum(name: str) -> EnumDescriptor:
    return case_pb2.DESCRIPTOR.enum_types_by_name[name]


def test_case_service_has_rpcs() -> None:
    assert len(_service().methods) > 0


@pytest.mark.parametrize("method", [m.name for m in _service().methods])
def test_every_rpc_has_its_own_request_and_response(method: str) -> None:
    rpc = _service().methods_by_name[method]
    assert rpc.input_type.full_name == f"tongban.v1.{method}Request"
    assert rpc.output_type.full_name == f"tongban.v1.{method}Response"
    assert not rpc.client_streaming and not rpc.server_streaming


def test_request_and_response_messages_are_not_shared() -> None:
    rpcs = list(_service().methods)
    inputs = [m.input_type.full_name for m in rpcs]
    outputs = [m.output_type.full_name for m in rpcs]
    assert len(set(inputs)) == len(inputs)
    assert len(set(outputs)) == len(outputs)


def test_generated_grpc_module_exposes_every_rpc() -> None:
    for rpc in _service().methods:
        assert hasattr(case_service_pb2_grpc.CaseServiceServicer, rpc.name)
    assert callable(case_service_pb2_grpc.add_CaseServiceServicer_to_server)


def test_the_site_servicer_defines_every_rpc_itself() -> None:
    from adapters.grpc.case_servicer import CaseServicer

    assert [rpc.name for rpc in _service().methods if rpc.name not in vars(CaseServicer)] == []


@pytest.mark.parametrize("proto_name", sorted(DOMAIN_ENUMS))
def test_domain_enum_matches_proto_enum(proto_name: str) -> None:
    domain = _domain_enum(*DOMAIN_ENUMS[proto_name])
    proto = _proto_enum(proto_name)
    prefix = _enum_prefix(proto_name)
    unspecified = f"{prefix}_UNSPECIFIED"

    assert proto.values_by_number[0].name == unspecified
    expected = {f"{prefix}_{member.name}" for member in domain}
    on_wire = {v.name for v in proto.values if v.name != unspecified}
    assert sorted(expected - on_wire) == [], f"domain {domain.__name__} members missing on the wire"
    assert sorted(on_wire - expected) == [], f"wire {proto_name} values missing in the domain"


def test_enum_prefix() -> None:
    assert _enum_prefix("Mode") == "MODE"
    assert _enum_prefix("IdType") == "ID_TYPE"
    assert _enum_prefix("RectificationOutcome") == "RECTIFICATION_OUTCOME"
