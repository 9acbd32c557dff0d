"""The audit trail (审计): the site chain, signed checkpoints, proof bundles and the case timeline.

A pure core, like reconciliation/: it decides and verifies, and the stores and the wire are adapters
(adapters/audit: the chain's table, the signing key and the checkpoint loop, the audit gRPC port).

- chain.py: the site chain, one hash chain over every event a site stored, and its verification
- checkpoints.py: Ed25519 keys, signed checkpoints of the chain head, partners' countersignatures
- ledger.py: the CheckpointLedger aggregate, where a site keeps its checkpoints (and partners') as events
- bundle.py: the offline proof bundle for one case, and ``verify_bundle`` (docs/audit-bundle.md)
- trace.py: accountability (责任追溯), one case as one timeline with its parties, deadlines and receipts
- ports.py: what the audit trail needs from the site: its stored log (``AuditLog``), the ``ChainStore``
"""
