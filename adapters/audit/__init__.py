"""Audit adapters: the site chain over the site's log, its table, the signing key and checkpoints, the audit port."""
