"""Worker process entry point: ``python -m bench.peers.worker_main drain|fork|listen`` (cfg in env)."""

from __future__ import annotations

import sys

from bench.peers import Cfg, adapter_class


def main() -> None:
    cfg = Cfg.from_env()
    adapter_class(cfg.row).work(sys.argv[1], cfg)


if __name__ == "__main__":
    main()
