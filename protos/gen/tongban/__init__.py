"""Generated from protos/tongban by `make protos`. Do not edit."""
