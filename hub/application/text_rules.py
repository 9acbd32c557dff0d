"""What text may contain, one rule for what staff type and what partners send (both are stored, shown
to people and put in the audit trail).

No control characters (NUL, ESC, C1 controls such as U+0085) and no invisible format characters
that change how text reads (bidirectional overrides such as U+202E, zero-width spaces and joiners,
U+FEFF): in names, codes and numbers none at all; in free text (notes, reasons, addresses) line
breaks and tabs are kept. Staff commands (commands.py) and partner events (event_schema.py) apply
the same validators, so a case a clerk can receive is always one the partner can store.
"""

from __future__ import annotations

import re

from pydantic import AfterValidator

# Unicode Cf characters that hide or reorder what is displayed (and the surrogates, never valid alone).
_FORMAT = "\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\ud800-\udfff"
_CONTROL = re.compile(f"[\\x00-\\x1f\\x7f-\\x9f{_FORMAT}]")
_CONTROL_IN_TEXT = re.compile(f"[\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f-\\x9f{_FORMAT}]")
MESSAGE = "含有控制字符或不可见的格式字符"


def no_control(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError(MESSAGE)
    return value


def no_control_in_text(value: str) -> str:
    if _CONTROL_IN_TEXT.search(value):
        raise ValueError(MESSAGE)
    return value


NoControl = AfterValidator(no_control)
NoControlInText = AfterValidator(no_control_in_text)
