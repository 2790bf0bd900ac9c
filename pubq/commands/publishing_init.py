"""The ``publishing:`` part of ``pubq init``: a section that makes the first ``pubq publish`` work.

Kept apart from the rest of ``init`` so the command composes its file from sections: it appends
:func:`publishing_section` to what it writes, calls :func:`create_publishing_files` for the folder
of the config, and prints :func:`publishing_next_steps`.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from ..config import DEFAULT_CONFIG_NAME

#: The channel type ``pubq init`` configures, and its accounts.
CHANNEL_TYPE = "demo"
ACCOUNTS = ("demo-1", "demo-2")
#: Folders of the section, relative to the config file.
SOURCE_ROOT = "sources"
EXAMPLE_ASSET = "example.png"

_SECTION = """\
# The publishing pipeline. `pubq publish FILE` takes a request: start from `pubq publish --example`
# (its format: `pubq publish --schema`). Paths are relative to this file's folder.
publishing:
  source_root: sources              # a request's local asset urls are paths under this folder
  publish_dir: publish              # copied assets go to publish/image/... and publish/video/...
  channel_types:
    demo:                           # a channel type: one adapter and its accounts
      adapter: filesystem           # publishes into a local folder; `http` talks to a platform's API
      options: {dir: platform}      # where this "platform" keeps uploaded media and created items
      accounts:
        - {id: demo-1, name: Demo account 1}
        - {id: demo-2, name: Demo account 2}
  # callback:                       # POST the results to a request's callback_url, signed (HMAC-SHA256)
  #   secret: ${PUBQ_CALLBACK_SECRET}   # an environment reference, never the secret itself
"""


def publishing_section() -> str:
    """The commented ``publishing:`` section, as YAML text to append to the config file."""
    return _SECTION


def create_publishing_files(folder: Path) -> list[Path]:
    """The source root with one example image, beside the config (existing files are kept).
    Returns what was created."""
    from .publishing_demo import PNG

    created = []
    root = folder / SOURCE_ROOT
    if not root.exists():
        root.mkdir(parents=True)
        created.append(root)
    asset = root / EXAMPLE_ASSET
    if not asset.exists():
        asset.write_bytes(PNG)
        created.append(asset)
    return created


def publishing_next_steps(config: Path) -> list[str]:
    """What to run to publish the first request with this config."""
    pubq = "pubq" if config == Path(DEFAULT_CONFIG_NAME) else f"pubq --config {shlex.quote(str(config))}"
    return [
        f"Publish {SOURCE_ROOT}/{EXAMPLE_ASSET} to the {CHANNEL_TYPE} accounts:",
        f"  {pubq} publish --example > request.json   # a request for channel type {CHANNEL_TYPE}",
        f"  {pubq} publish request.json               # it says what to run next",
    ]
