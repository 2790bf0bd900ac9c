"""The publish request format for people: its JSON Schema (shipped in the package) and a working
example for a config (``pubq publish --schema`` / ``--example``).

The schema describes what :func:`~.request.validate_request` checks that does not depend on the
config; a test keeps the two in agreement. The example is built from the config, so it names a
configured channel type, its accounts, and files that exist under the source root.
"""

from __future__ import annotations

import json
import secrets
import time
from collections import deque
from importlib.resources import files
from pathlib import Path
from typing import Any

from .settings import PublishingSettings

#: The schema file, beside this module (package data).
SCHEMA_FILE = "request.schema.json"
#: File extensions the example recognises under the source root, by asset type.
EXTENSIONS = {
    "image": frozenset({".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp"}),
    "video": frozenset({".mp4", ".mov", ".m4v", ".webm", ".mkv", ".avi"}),
}
#: What the example names when the source root holds no file of a known type (``pubq init`` writes it).
PLACEHOLDER = "example.png"
#: The example looks at this many entries of the source root at most (a big share stays quick).
_SCAN_LIMIT = 2000


def request_schema() -> dict[str, Any]:
    """The JSON Schema of a publish request (draft 2020-12)."""
    return json.loads(files(__package__).joinpath(SCHEMA_FILE).read_text(encoding="utf-8"))


def _first_files(root: Path) -> dict[str, str]:
    """The first file of each asset type under ``root`` (breadth first, by name), relative to it."""
    found: dict[str, str] = {}
    folders, seen = deque([root] if root.is_dir() else []), 0
    while folders and len(found) < len(EXTENSIONS) and seen < _SCAN_LIMIT:
        folder = folders.popleft()
        try:
            entries = sorted(folder.iterdir(), key=lambda p: p.name)
        except OSError:
            continue
        for entry in entries:
            seen += 1
            if entry.name.startswith("."):
                continue
            if entry.is_dir():
                if not entry.is_symlink():
                    folders.append(entry)
                continue
            for kind, extensions in EXTENSIONS.items():
                if kind not in found and entry.suffix.lower() in extensions and entry.is_file():
                    found[kind] = entry.relative_to(root).as_posix()
    return found


def example_request(settings: PublishingSettings, channel_type: str | None = None) -> tuple[dict[str, Any], list[str]]:
    """A request that ``pubq publish`` accepts with these settings, and notes for the person (what
    is missing for it to work). A fresh ``uuid`` each time, so each example publishes once."""
    notes: list[str] = []
    types = list(settings.channel_types)
    if channel_type is None:
        channel_type = types[0] if types else "demo"
        if not types:
            notes.append("no channel type is configured (publishing.channel_types); `pubq init` writes one")
    elif channel_type not in settings.channel_types:
        notes.append(f"channel type {channel_type!r} is not configured (known: {', '.join(types) or 'none'})")
    ctype = settings.channel_types.get(channel_type)
    accounts = list(ctype.accounts) if ctype is not None else ["account-1"]
    if ctype is not None and not accounts:
        notes.append(f"channel type {channel_type!r} has no accounts")
    root = settings.sources.root
    found = _first_files(root)
    assets = [{"type": kind, "url": found[kind], "enabled": True} for kind in EXTENSIONS if kind in found]
    if not assets:
        assets = [{"type": "image", "url": PLACEHOLDER, "enabled": True}]
        notes.append(f"no image or video file under the source root {root}: put one at {root / PLACEHOLDER}")
    source = sorted(settings.source_names)[0] if settings.source_names else "cms"
    doc = {
        "uuid": f"example-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}",
        "source": source,
        "channel_type": channel_type,
        "title": "Hello from pubq",
        "body": "Published with `pubq publish`.",
        "accounts": accounts,
        "assets": assets,
    }
    return doc, notes
