"""The content-publishing pipeline: publish state, transitions, copying, adapters and callbacks.

Only ``pubq.jobs``, ``pubq.handlers`` and the publishing commands import this package; the queue core
never does. Nothing here touches a queue directly: follow-up jobs are written to the outbox and
handed to a dispatcher that the app supplies (see :func:`.service.service_for`).

Words used throughout: a *task* is one publish request; a *channel app task* (``cat`` in names) is
that task on one account, the unit whose :class:`~.vocabulary.AccountStatus` users see; its *round*
counts operator retries. :mod:`.vocabulary` holds the stored statuses and kinds, :mod:`.keys` every
dedup key.
"""
