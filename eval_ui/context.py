"""`AppContext`: what every tab's callbacks need (settings, the store, the signed-in user).

Per-user state lives in `gr.State` or the store, never in module globals.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from wizardlab.config import Settings
from wizardlab.store import Store


@dataclass
class AppContext:
    settings: Settings

    def store(self) -> Store:
        """A Store for the calling thread (connections are per thread inside Store)."""
        if not hasattr(self, "_store"):
            self._store = Store(self.settings.db)
        return self._store

    @property
    def data_dir(self) -> Path:
        path = Path(self.settings.data_dir)
        path.mkdir(parents=True, exist_ok=True)
        return path
