"""The content-publishing pipeline: publish state, transitions, copying, adapters and callbacks.

Only ``pubq.jobs`` and ``pubq.handlers`` import this package; the queue core never does. Nothing
here touches a queue directly: follow-up jobs are written to the outbox and handed to a dispatcher
that the jobs layer supplies (see :mod:`pubq.publishing.service`).
"""
