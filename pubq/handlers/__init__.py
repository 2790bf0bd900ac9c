"""Event handlers of the publishing queues, named in YAML (``pubq.handlers.copy_asset:…``). Thin."""
