"""What each stored case event is called for people: one table, read by the history and the audit trail.

A main-track event is named after its step (``Step.label``, through ``STEP_EVENTS``); the other events
(intake, issues, ratings, rectification) are named where their permissions are (authorization.py). An
unknown type is shown as its own name.
"""

from __future__ import annotations

from hub.domain.authorization import PERMISSIONS
from hub.domain.case import STEP_EVENTS

TRACK_LABELS = {name: rule.label for name, rule in PERMISSIONS.items() if rule.step is None}
_LABELS = {**TRACK_LABELS, **{cls.__name__: step.label for step, cls in STEP_EVENTS.items()}}


def event_label(event_type: str) -> str:
    """The Chinese label of a stored event type (``CaseForwarded`` -> ``流转``)."""
    return _LABELS.get(event_type, event_type)


__all__ = ["TRACK_LABELS", "event_label"]
