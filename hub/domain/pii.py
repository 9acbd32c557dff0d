"""Masking of applicant PII (ID number, phone, address) for logs and default output.

The rule is deliberately blunt: keep just enough for a clerk to recognise a record, never enough
to reuse it. Full values leave the hub only where a caller explicitly needs them.
"""

from __future__ import annotations

from typing import Any

PII_FIELDS = ("id_number", "phone", "address")


def mask_id_number(value: str) -> str:
    if len(value) <= 4:
        return "*" * len(value)
    return value[:3] + "*" * (len(value) - 7) + value[-4:] if len(value) > 7 else "*" * (len(value) - 2) + value[-2:]


def mask_phone(value: str) -> str:
    digits = value.strip()
    if len(digits) < 7:
        return "*" * len(digits)
    return digits[:3] + "*" * (len(digits) - 7) + digits[-4:]


def mask_address(value: str) -> str:
    return value[:6] + "****" if len(value) > 6 else "****" if value else ""


def mask_name(value: str) -> str:
    return value[:1] + "*" * max(len(value) - 1, 1) if value else ""


_MASKERS = {"id_number": mask_id_number, "phone": mask_phone, "address": mask_address}


def mask_applicant(applicant: dict[str, Any]) -> dict[str, Any]:
    """A copy of an applicant payload with the PII fields masked."""
    return {k: (_MASKERS[k](str(v)) if k in _MASKERS and v else v) for k, v in applicant.items()}
