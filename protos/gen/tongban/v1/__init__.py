"""Generated from protos/tongban/v1 by `make protos`. Do not edit."""
