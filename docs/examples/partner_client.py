"""A minimal partner client, written only against the protos (tongban.v1) and grpcio.

It shows what another city's system must do to trust what it receives: call the partner port over
mutual TLS, recompute each event's canonical hash, and compute the origin's chain head (compare it
with a receipt's chain_head). Run against a site's partner port:

    python docs/examples/partner_client.py --address 127.0.0.1:7401 --certs DIR --site 320500 \
        --case CASE_ID --origin 410400
"""

from __future__ import annotations

import argparse
import hashlib
import json
from datetime import UTC
from pathlib import Path

import grpc

from tongban.v1 import case_pb2, exchange_pb2, exchange_pb2_grpc

ROLES = {case_pb2.ROLE_WINDOW_CLERK: "window_clerk", case_pb2.ROLE_HANDLER: "handler",
         case_pb2.ROLE_SUPERVISOR: "supervisor", case_pb2.ROLE_APPLICANT: "applicant", case_pb2.ROLE_SYSTEM: "system"}


def canonical_hash(e: exchange_pb2.SharedEvent) -> str:
    doc = {
        "case_id": e.case_id, "origin": e.origin_site, "seq": e.seq, "lamport": e.lamport, "event_id": e.event_id,
        "type": e.type, "type_version": e.type_version,
        "occurred_at": e.occurred_at.ToDatetime(tzinfo=UTC).isoformat(timespec="microseconds"),
        "actor": {"staff_id": e.actor.staff_id, "role": ROLES.get(e.actor.role, ""), "site": e.actor.site,
                  "name": e.actor.name},
        "data": json.loads(e.data_json),
    }
    body = json.dumps(doc, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()
    return hashlib.sha256(b"tongban.event.v1\x00" + body).hexdigest()


def chain(case_id: str, origin: str, hashes: list[str]) -> str:
    head = hashlib.sha256(b"tongban.chain.v1\x00" + f"{case_id}/{origin}".encode()).hexdigest()
    for h in hashes:
        head = hashlib.sha256(b"tongban.chain.v1\x00" + bytes.fromhex(head) + bytes.fromhex(h)).hexdigest()
    return head


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", required=True)
    parser.add_argument("--certs", required=True, type=Path)
    parser.add_argument("--site", required=True, help="our site code (the one in our certificate)")
    parser.add_argument("--case", required=True)
    parser.add_argument("--origin", required=True)
    args = parser.parse_args()
    credentials = grpc.ssl_channel_credentials(
        root_certificates=(args.certs / "ca.pem").read_bytes(),
        private_key=(args.certs / f"{args.site}.key").read_bytes(),
        certificate_chain=(args.certs / f"{args.site}.pem").read_bytes(),
    )
    with grpc.secure_channel(args.address, credentials, options=[("grpc.ssl_target_name_override", "localhost")]) as ch:
        stub = exchange_pb2_grpc.ExchangeServiceStub(ch)
        response = stub.FetchEvents(
            exchange_pb2.FetchEventsRequest(case_id=args.case, origin_site=args.origin, from_seq=1), timeout=5
        )
    hashes = []
    for event in response.events:
        ok = canonical_hash(event) == event.hash
        hashes.append(event.hash)
        print(f"{event.seq:>3} {event.type:<28} {event.actor.site} {'hash ok' if ok else 'HASH MISMATCH'}")
    print("chain head:", chain(args.case, args.origin, hashes))


if __name__ == "__main__":
    main()
