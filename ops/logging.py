"""structlog set-up: JSON lines in production, readable console output in development.

A last processor masks anything that looks like a resident ID number, credit code or mobile
number, wherever it appears in the event, as a guard behind the rule that PII is never logged.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any, Literal

import structlog

from hub.domain.pii import mask_id_number, mask_phone

_USCC = r"[0-9A-HJ-NPQRTUWXY]{2}\d{6}[0-9A-HJ-NPQRTUWXY]{10}"
_ID_NUMBER = re.compile(rf"(?<![0-9A-Za-z])(\d{{17}}[\dXx]|{_USCC})(?![0-9A-Za-z])")
_MOBILE = re.compile(r"(?<!\d)(1[3-9]\d{9})(?!\d)")
_PII_KEYS = {"id_number", "phone", "address"}


def mask_text(text: str) -> str:
    text = _ID_NUMBER.sub(lambda m: mask_id_number(m.group(1)), text)
    return _MOBILE.sub(lambda m: mask_phone(m.group(1)), text)


def _mask(value: Any, key: str = "") -> Any:
    if key in _PII_KEYS and isinstance(value, str) and value:
        return "****"
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, dict):
        return {k: _mask(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_mask(v) for v in value]
    return value


def mask_pii(_logger: Any, _name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    return {k: _mask(v, k) for k, v in event_dict.items()}


def configure_logging(fmt: Literal["console", "json"] = "console", level: int = logging.INFO) -> None:
    renderer: Any = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            mask_pii,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
