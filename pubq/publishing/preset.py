"""The publishing pipeline as a preset of the queue core: its four queues, its jobs and its commands.

The core (``pubq.config``) knows nothing of publishing; the CLI hands it this preset, so a config
file always has the pipeline's jobs registered, and with no config file at all the four queues run
on embedded SQLite.
"""

from __future__ import annotations

from typing import Any

from ..config import Preset

#: The pipeline's job classes (``pubq.jobs.CopyAssetJob`` …), registered in every config.
JOB_MODULES = ("pubq.jobs",)
#: Commands of the publishing CLI; queues may not take these names.
COMMANDS = frozenset({"task", "publish", "demo", "outbox"})


def pipeline_queues() -> dict[str, Any]:
    """The four publishing queues as a ``queues:`` config mapping (no config file, ``pubq init``)."""
    # Every pipeline worker also re-sends outbox rows whose push was lost (e.g. Redis was down).
    outbox = {
        "workerStart": "pubq.handlers.outbox:OutboxHandler.flush",
        "workerLoop": "pubq.handlers.outbox:OutboxHandler.worker_loop",
    }

    def handlers(module: str, cls: str) -> dict[str, str]:
        return {
            "afterExec": f"pubq.handlers.{module}:{cls}.after_exec",
            "afterError": f"pubq.handlers.{module}:{cls}.after_error",
            **outbox,
        }

    return {
        "copy-asset": {"channel": "cpa:queue:copy:asset", "ttr": 600, "attempts": 1,
                       "on": handlers("copy_asset", "CopyAssetEventHandler"), "behaviors": ["log"]},
        "upload-asset": {"channel": "cpa:queue:upload:asset", "ttr": 900, "attempts": 3,
                         "on": handlers("upload_asset", "UploadAssetEventHandler"), "behaviors": ["log"]},
        "pub-article": {"channel": "cpa:queue:pub:article", "ttr": 300, "attempts": 3,
                        "on": handlers("pub_article", "PubArticleEventHandler"), "behaviors": ["log"]},
        "source-callback": {"channel": "cpa:queue:source:callback", "ttr": 120, "attempts": 5,
                            "retry": {"backoff": "exponential", "delay": 10, "max_delay": 600, "jitter": True},
                            "on": {"afterError": "pubq.handlers.source_callback:SourceCallbackEventHandler.after_error",
                                   **outbox},
                            "behaviors": ["log"]},
    }


def publishing_preset(extra_reserved: frozenset[str] = frozenset()) -> Preset:
    """The preset the ``pubq`` command loads configs with."""
    return Preset(jobs=JOB_MODULES, queues=pipeline_queues(), reserved=COMMANDS | extra_reserved)
