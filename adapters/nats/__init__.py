"""NATS adapters: the message bus between sites, and a manager for a local nats-server process."""
