"""Every Redis key name the Redis WorkManager uses (one place, as in Nuxeo's RedisWorkQueuing).

With the default prefix ``conveyor:work:``:

==========================================  ======  ===========================================
key                                         type    content
==========================================  ======  ===========================================
``conveyor:work:queues``                    set     ids of the queues ever scheduled into
``conveyor:work:nodes``                     zset    node id -> heartbeat deadline (ms, Redis time)
``conveyor:work:queue:<q>``                 list    waiting entries (LPUSH to schedule, taken
                                                    from the right; suspended ones go back right)
``conveyor:work:sched:<q>``                 set     waiting entries (dedup, metrics)
``conveyor:work:data:<q>``                  hash    entry -> encoded Work
``conveyor:work:run:<q>``                   hash    running entry -> node id
``conveyor:work:claims:<node>:<q>:<n>``     list    entries taken by worker thread n of a node
                                                    (reliable-queue pattern: moved there
                                                    atomically when taken)
``conveyor:work:claimlists:<node>``         hash    claims list key -> queue id, per node
``conveyor:work:count:<q>``                 hash    ``completed`` / ``canceled`` counters
``conveyor:work:cancel:<q>``                set     running entries asked to stop (CANCEL_SCHEDULED)
``conveyor:work:recovered:<q>``             hash    entry -> times re-queued from a dead node
``conveyor:work:dlq``                       list    dead letters (encoded ``DeadLetter``)
==========================================  ======  ===========================================

An *entry* is the Work id, or ``<id>~<random>`` for a non-idempotent Work (so that several
copies can wait at once).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_PREFIX", "RedisKeys"]

DEFAULT_PREFIX = "conveyor:work:"

# Parts used by the Lua recovery script, which builds the per-node keys of dead nodes itself.
CLAIM_LISTS_PART = "claimlists:"
RUN_PART = "run:"
SCHED_PART = "sched:"
QUEUE_PART = "queue:"
RECOVERED_PART = "recovered:"


@dataclass(frozen=True)
class RedisKeys:
    """Key names under one prefix."""

    prefix: str = DEFAULT_PREFIX

    @property
    def queues(self) -> str:
        """Set of queue ids."""
        return f"{self.prefix}queues"

    @property
    def nodes(self) -> str:
        """Sorted set node id -> heartbeat deadline."""
        return f"{self.prefix}nodes"

    @property
    def dlq(self) -> str:
        """List of dead letters."""
        return f"{self.prefix}dlq"

    def queue(self, queue_id: str) -> str:
        """List of waiting entries."""
        return f"{self.prefix}{QUEUE_PART}{queue_id}"

    def sched(self, queue_id: str) -> str:
        """Set of waiting entries."""
        return f"{self.prefix}{SCHED_PART}{queue_id}"

    def data(self, queue_id: str) -> str:
        """Hash entry -> encoded Work."""
        return f"{self.prefix}data:{queue_id}"

    def run(self, queue_id: str) -> str:
        """Hash running entry -> node id."""
        return f"{self.prefix}{RUN_PART}{queue_id}"

    def claims(self, node_id: str, queue_id: str, thread: int = 0) -> str:
        """List of the entries a worker thread of a node has taken from a queue."""
        return f"{self.prefix}claims:{node_id}:{queue_id}:{thread}"

    def claim_lists(self, node_id: str) -> str:
        """Hash claims list key -> queue id, of one node (what recovery visits)."""
        return f"{self.prefix}{CLAIM_LISTS_PART}{node_id}"

    def count(self, queue_id: str) -> str:
        """Hash of counters."""
        return f"{self.prefix}count:{queue_id}"

    def recovered(self, queue_id: str) -> str:
        """Hash entry -> how many times it was re-queued from a dead node."""
        return f"{self.prefix}{RECOVERED_PART}{queue_id}"

    def cancel(self, queue_id: str) -> str:
        """Set of running entries asked to stop."""
        return f"{self.prefix}cancel:{queue_id}"

    def all_patterns(self) -> list[str]:
        """SCAN patterns matching every key under the prefix (for cleanup tools and tests)."""
        return [f"{self.prefix}*"]
