"""The staff port under hostile input, over real gRPC with a signed-in clerk: any CaseService request,
built field by field from the protos' own descriptors with edge values (control characters and huge
strings, out-of-range numbers and enum numbers, timestamps far outside any calendar, nested messages
and lists), is answered or refused with a status that says why: never INTERNAL or UNKNOWN. A real
case id is offered often, so the requests reach the rules and the store, not only the parsers."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.auth.client import login, signed_channel
from adapters.grpc.rpc import CASE_SERVICE, unary
from tests.integration.conftest import PASSWORD, RunningSite
from tests.integration.test_grpc_site import receive_request
from tongban.v1 import case_service_pb2 as svc

REFUSALS = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION,
            grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.ABORTED,
            grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.RESOURCE_EXHAUSTED}
UNARY = sorted(m.name for m in CASE_SERVICE.methods if not m.client_streaming and not m.server_streaming)
_INTS = {
    FieldDescriptor.CPPTYPE_INT32: (-(2**31), 2**31 - 1), FieldDescriptor.CPPTYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.CPPTYPE_UINT32: (0, 2**32 - 1), FieldDescriptor.CPPTYPE_UINT64: (0, 2**64 - 1),
}
TEXT = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["", "0", "410400", "320500", "KSTB-006", "\x00", "王\u202e建国", "a" * 5000]),
)


def values(field: FieldDescriptor, case_ids: list[str], depth: int) -> st.SearchStrategy[Any]:
    if field.cpp_type == FieldDescriptor.CPPTYPE_STRING:
        if field.type == FieldDescriptor.TYPE_BYTES:
            return st.binary(max_size=40)
        return st.one_of(TEXT, st.sampled_from(case_ids)) if field.name.endswith("case_id") else TEXT
    if field.cpp_type in _INTS:
        lo, hi = _INTS[field.cpp_type]
        return st.one_of(st.integers(lo, hi), st.sampled_from([lo, hi, 0, 1]))
    if field.cpp_type == FieldDescriptor.CPPTYPE_BOOL:
        return st.booleans()
    if field.cpp_type == FieldDescriptor.CPPTYPE_DOUBLE or field.cpp_type == FieldDescriptor.CPPTYPE_FLOAT:
        return st.floats(allow_nan=True)
    if field.cpp_type == FieldDescriptor.CPPTYPE_ENUM:
        return st.integers(-3, 40)  # known numbers, unknown ones and negatives
    assert field.message_type is not None
    return messages(field.message_type, case_ids, depth + 1)


def messages(descriptor: Descriptor, case_ids: list[str], depth: int = 0) -> st.SearchStrategy[Message]:
    """A message of this type with some of its fields set, recursively (two levels deep at most)."""
    cls = message_factory.GetMessageClass(descriptor)
    if depth > 2:
        return st.just(cls())

    @st.composite
    def build(draw: st.DrawFn) -> Message:
        message = cls()
        for field in descriptor.fields:
            if field.message_type is not None and field.message_type.GetOptions().map_entry:
                continue
            if not draw(st.booleans()):
                continue
            strategy = values(field, case_ids, depth)
            if field.is_repeated:
                items = draw(st.lists(strategy, max_size=3))
                target = getattr(message, field.name)
                for item in items:
                    if field.message_type is not None:
                        target.add().CopyFrom(item)
                    else:
                        target.append(item)
            elif field.message_type is not None:
                getattr(message, field.name).CopyFrom(draw(strategy))
            else:
                setattr(message, field.name, draw(strategy))
        return message

    return build()


_signed: dict[int, grpc.Channel] = {}


@settings(max_examples=250, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(data=st.data())
def test_any_staff_request_is_answered_or_refused_never_internal(site: RunningSite, data: st.DataObject) -> None:
    case_ids = [site.stub.ReceiveCase(receive_request("fuzz-seed"), timeout=10).case.case_id]
    channel = _signed.get(id(site))  # one login per site (argon2 is slow on purpose), not per example
    if channel is None:
        channel = _signed[id(site)] = signed_channel(site.channel, login(site.channel, next(iter(site.stubs)),
                                                                         PASSWORD).token)
    rpc = data.draw(st.sampled_from(UNARY))
    request = data.draw(messages(CASE_SERVICE.methods_by_name[rpc].input_type, case_ids))
    try:
        unary(channel, CASE_SERVICE, rpc)(request, timeout=10)
    except grpc.RpcError as error:
        assert error.code() in REFUSALS, f"{rpc}: {error.code()} {error.details()}"
    assert site.stub.GetCase(svc.GetCaseRequest(case_id=case_ids[0]), timeout=10).case.case_id == case_ids[0]
