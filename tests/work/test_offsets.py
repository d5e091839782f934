"""OffsetTracker: what a node may commit when Works of one partition finish out of order."""

from __future__ import annotations

from conveyor.log.names import Name
from conveyor.log.types import LogPartition
from conveyor.work.offsets import OffsetTracker

P0 = LogPartition(Name.of("work", "q"), 0)
P1 = LogPartition(Name.of("work", "q"), 1)


def test_a_partition_is_committable_only_once_nothing_read_from_it_is_in_flight() -> None:
    tracker = OffsetTracker(every=2, interval=60)
    assert tracker.read(P0, 0) and tracker.read(P0, 1) and tracker.read(P1, 0)
    tracker.finished(P0, 1)  # out of order: 0 still runs
    tracker.finished(P1, 0)
    assert tracker.due()
    assert tracker.committable() == [P1]
    tracker.committed(P1)
    tracker.tried()
    assert not tracker.due() and tracker.committable() == []
    tracker.finished(P0, 0)
    assert tracker.committable() == [P0]
    assert tracker.committable([P1]) == []


def test_records_read_again_after_a_rebalance_are_skipped_when_running_or_done_here() -> None:
    tracker = OffsetTracker()
    for offset in range(3):
        assert tracker.read(P0, offset)
    tracker.finished(P0, 1)
    tracker.rebalanced()
    assert tracker.committable() == []  # the read position is unknown until the next read
    # The partition restarts from the committed offset 0: 0 runs here, 1 is done, 2 still runs.
    assert [tracker.read(P0, o) for o in range(4)] == [False, False, False, True]
    tracker.finished(P0, 0)
    tracker.finished(P0, 2)
    tracker.finished(P0, 3)
    assert tracker.committable() == [P0]


def test_records_before_the_groups_offset_after_a_rebalance_no_longer_hold_commits() -> None:
    tracker = OffsetTracker()
    assert tracker.read(P0, 0)  # still running here when the partition moved away and back
    tracker.rebalanced()
    assert tracker.read(P0, 5)  # another node committed up to 5 meanwhile
    tracker.finished(P0, 5)
    assert tracker.committable() == [P0]


def test_a_record_read_again_on_purpose_is_run_again() -> None:
    tracker = OffsetTracker()
    assert tracker.read(P0, 0) and tracker.read(P0, 1)
    assert tracker.unread(P0, 0)  # the caller seeks back to 0
    assert tracker.read(P0, 0)
    assert not tracker.read(P0, 1)  # still running
