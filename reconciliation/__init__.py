"""Automatic reconciliation between paired sites (自动对账): find, classify, repair, hand over.

rbsr.py finds which cases differ (range-based set reconciliation over the digest index),
classify.py says why, reconciler.py repairs what is safe through the normal ingest path and opens
discrepancy cases (discrepancy.py) for people; journal.py makes a run resumable; responder.py
answers the partner's runs. Pure: the wire and the stores are adapters (adapters/reconcile,
adapters/store/digest_index.py).
"""
