"""Site processes started by a test are stopped by PID when it ends, whatever happened."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from adapters.launcher import SiteProcess


@pytest.fixture
def started() -> Iterator[list[SiteProcess]]:
    processes: list[SiteProcess] = []
    yield processes
    for process in processes:
        process.stop()
