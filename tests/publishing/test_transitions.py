"""Guarded per-row transitions: the allowed matrix, rejected transitions kept, the outbox written in
the same transaction, and siblings never touched. The copy-asset queue is held, so the pipeline
itself never moves the rows."""

from __future__ import annotations

import logging

import pytest

from pubq.publishing.models import from_us
from pubq.publishing.transitions import CALLBACK_STATES, SOURCES, JobRef
from pubq.publishing.vocabulary import AccountStatus, EventKind, OutboxKind, OutboxState

from .support import request_doc

pytestmark = pytest.mark.held("copy-asset")
PENDING, RELEASING, FAILED = AccountStatus.PENDING, AccountStatus.RELEASING, AccountStatus.FAILED
UNDER_REVIEW, PUBLISHED, REJECTED = AccountStatus.UNDER_REVIEW, AccountStatus.PUBLISHED, AccountStatus.REJECTED
ALLOWED = {(1, 2), (1, 3), (2, 3), (2, 4), (4, 5), (4, 6)}


def _force(service, cat_id: int, status: int) -> None:
    ChannelAppTask = service.models.ChannelAppTask
    ChannelAppTask.update(status=status).where(ChannelAppTask.id == cat_id).execute()


def _cats(service, task_id: int) -> list:
    return service.records.channel_app_tasks(task_id)


def test_the_allowed_transitions_are_the_six_forward_moves_and_the_operator_retry() -> None:
    pairs = {(f, to) for to, froms in SOURCES.items() for f in froms if to != PENDING}
    assert pairs == ALLOWED
    assert SOURCES[PENDING] == {FAILED}  # operator retry only


def test_statuses_keep_their_stored_values_and_names() -> None:
    assert [(int(s), s.label) for s in AccountStatus] == [
        (1, "pending"), (2, "releasing"), (3, "failed"), (4, "under review"), (5, "published"), (6, "rejected")]
    assert AccountStatus.label_of(7) == AccountStatus.label_of(None) == "?"


@pytest.mark.parametrize("found", list(AccountStatus))
@pytest.mark.parametrize("to", [RELEASING, FAILED, UNDER_REVIEW, PUBLISHED, REJECTED])
def test_every_transition_is_guarded_and_recorded(service, tmp_path, found: int, to: int) -> None:
    task_id = service.submit(request_doc(tmp_path))
    cat = _cats(service, task_id)[0]
    _force(service, cat.id, found)
    job = JobRef("upload-asset", 7, 1)

    result = service.transitions.move(cat.id, to, reason="test", job=job, code=123)

    assert result.accepted == ((found, to) in ALLOWED)
    assert result.found == found
    assert service.records.channel_app_task(cat.id).status == (to if result.accepted else found)
    event = service.models.StatusEvent.get_by_id(result.status_event_id)
    assert (event.kind, event.from_status, event.to_status) == (
        EventKind.TRANSITION if result.accepted else EventKind.REJECTED, found, to)
    assert (event.queue, event.job_id, event.attempt, event.code) == ("upload-asset", 7, 1, 123)
    Outbox = service.models.Outbox
    callbacks = Outbox.select().where(Outbox.kind == OutboxKind.CALLBACK, Outbox.channel_app_task == cat.id)
    assert callbacks.count() == (1 if result.accepted and to in CALLBACK_STATES else 0)


def test_rejected_transition_is_logged_and_returned(service, tmp_path, caplog) -> None:
    task_id = service.submit(request_doc(tmp_path))
    cat = _cats(service, task_id)[0]
    _force(service, cat.id, UNDER_REVIEW)
    with caplog.at_level(logging.WARNING, logger="pubq.publishing"):
        result = service.transitions.move(cat.id, FAILED, reason="late upload failure",
                                          job=JobRef("upload-asset", 3, 2))
    assert not result.accepted and result.found == UNDER_REVIEW
    assert "rejected transition" in caplog.text and "late upload failure" in caplog.text
    trace = service.trace(task_id)
    assert [(e["kind"], e["from"], e["to"]) for e in trace if e["kind"] != EventKind.STEP] == [
        (EventKind.REJECTED, UNDER_REVIEW, FAILED)]


def test_retry_transition_needs_the_operator_flag(service, tmp_path) -> None:
    task_id = service.submit(request_doc(tmp_path))
    cat = _cats(service, task_id)[0]
    _force(service, cat.id, FAILED)
    assert not service.transitions.move(cat.id, PENDING, reason="a job tries").accepted
    assert service.transitions.move(cat.id, PENDING, reason="operator", operator=True).accepted


def test_a_transition_touches_only_its_row(service, tmp_path) -> None:
    task_id = service.submit(request_doc(tmp_path, accounts=["a1", "a2", "a3"]))
    first, *siblings = _cats(service, task_id)
    service.transitions.move(first.id, FAILED, reason="boom")
    assert [c.status for c in _cats(service, task_id)] == [FAILED, PENDING, PENDING]
    assert all(service.records.channel_app_task(c.id).updated_at == c.updated_at for c in siblings)


def test_outbox_row_is_written_in_the_same_transaction(service, tmp_path) -> None:
    task_id = service.submit(request_doc(tmp_path))
    cat = _cats(service, task_id)[0]
    _force(service, cat.id, RELEASING)
    Outbox = service.models.Outbox

    class Crash(Exception):
        pass

    def unit() -> None:
        result = service.transitions.move_in_tx(cat.id, UNDER_REVIEW, reason="item created")
        assert result.accepted and result.callback_id is not None
        raise Crash

    with pytest.raises(Crash):
        service.store.tx(unit)
    # Rolled back together: no status change, no event, no callback intent.
    assert service.records.channel_app_task(cat.id).status == RELEASING
    assert not Outbox.select().where(Outbox.kind == OutboxKind.CALLBACK, Outbox.channel_app_task == cat.id).exists()
    assert not [e for e in service.trace(task_id) if e["kind"] == EventKind.TRANSITION]

    result = service.transitions.move(cat.id, UNDER_REVIEW, reason="item created")
    row = Outbox.get_by_id(result.callback_id)
    assert (row.kind, row.state, row.job, row.args) == (OutboxKind.CALLBACK, OutboxState.PENDING, "pubq.jobs.SourceCallbackJob",
                                                        {"event_id": row.event_id})


def test_status_event_times_keep_microseconds(service, tmp_path) -> None:
    task_id = service.submit(request_doc(tmp_path))
    cat = _cats(service, task_id)[0]
    StatusEvent = service.models.StatusEvent
    at = from_us(1_700_000_000_123_457)
    StatusEvent.create(task=task_id, channel_app_task=cat.id, kind=EventKind.STEP, reason="x", at=at)
    assert StatusEvent.get(StatusEvent.at == at).at == at
    assert StatusEvent.get(StatusEvent.at == at).at.microsecond == 123_457
