"""Routing's packaged data: the service catalogue, region codes and partner agreements (TOML)."""
