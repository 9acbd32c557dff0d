"""`tongban serve`: build the site from its config, serve until SIGTERM/SIGINT, stop cleanly."""

from __future__ import annotations

import gc
import logging
import signal
import threading
from pathlib import Path
from types import FrameType

import structlog

from adapters.bootstrap import build_site
from adapters.calendar_notices import CalendarError
from adapters.settings import ConfigError, describe, load_settings, production_problems
from adapters.tls import TlsError
from ops.logging import configure_logging

log = structlog.get_logger("tongban.serve")


def run(config_path: str, listen: str | None = None, port_file: str | None = None) -> int:
    try:
        settings = load_settings(Path(config_path), {"server": {"listen": listen}} if listen else None)
    except ConfigError as exc:
        configure_logging()
        log.error("config_invalid", error=str(exc))
        return 2
    configure_logging(settings.log_format, logging.getLevelNamesMapping()[settings.log_level.upper()])
    structlog.contextvars.bind_contextvars(site=settings.site)
    problems = production_problems(settings)
    if problems:
        log.error("start_failed", error="production site refuses to start: " + "; ".join(problems))
        return 1
    try:
        site = build_site(settings)
    except (CalendarError, OSError, TlsError) as exc:
        log.error("start_failed", error=str(exc))
        return 1
    except Exception as exc:  # a store that cannot be reached, mostly
        log.error("start_failed", error=f"{type(exc).__name__}: {exc}")
        return 1
    try:
        site.start()
    except Exception as exc:  # a metrics or audit port already taken, mostly: stop what did start
        log.error("start_failed", error=f"{type(exc).__name__}: {exc}")
        site.stop()
        return 1
    gc.freeze()  # what boot built (modules, catalogue, regions, stores) lives as long as we do: no collection walks it
    host = settings.listen.rsplit(":", 1)[0]
    log.info("site_started", staff_address=f"{host}:{site.staff.port}", partner_port=site.partner_port,
             **describe(settings))
    if port_file:
        tmp = Path(port_file + ".tmp")
        tmp.write_text(str(site.staff.port))
        tmp.replace(port_file)  # atomic: a reader never sees a half-written port
    stopping = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    stopping.wait()
    log.info("site_stopping")
    site.stop()
    log.info("site_stopped")
    return 0
