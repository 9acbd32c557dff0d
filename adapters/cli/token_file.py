"""Where `tongban login` keeps the token: $TONGBAN_TOKEN_FILE, else $XDG_CONFIG_HOME/tongban/token.json
(~/.config by default), mode 0600. One file per terminal user; logging in again replaces it."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from adapters.tls import write_private


@dataclass(frozen=True)
class StoredToken:
    target: str
    token: str
    expires_at: datetime
    staff_id: str

    @property
    def expired(self) -> bool:
        return datetime.now(UTC) >= self.expires_at


def token_path() -> Path:
    if explicit := os.environ.get("TONGBAN_TOKEN_FILE"):
        return Path(explicit)
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "tongban" / "token.json"


def save(stored: StoredToken, path: Path | None = None) -> Path:
    path = path or token_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    data = {"target": stored.target, "token": stored.token, "expires_at": stored.expires_at.isoformat(),
            "staff_id": stored.staff_id}
    write_private(path, json.dumps(data).encode())
    return path


def load(path: Path | None = None) -> StoredToken | None:
    try:
        data = json.loads((path or token_path()).read_text(encoding="utf-8"))
        return StoredToken(str(data["target"]), str(data["token"]), datetime.fromisoformat(data["expires_at"]),
                           str(data.get("staff_id", "")))
    except (OSError, ValueError, KeyError, TypeError):
        return None
