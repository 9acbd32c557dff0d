"""Point-to-point exchange adapters: the wire form, the gRPC service and client, NATS, and the relay."""
