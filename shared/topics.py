"""Kafka topic names, in one place.

Commands are routed by host (docs/decisions/0001-command-routing.md) with **one topic per
host**: ``<prefix>.commands.<host_id>``. An agent subscribes to its own topic
only, so it cannot even read another host's commands, and the consumer group
``<prefix>.agent.<host_id>`` keeps its committed offset across restarts.
Scaling limit: one topic (one partition) per host; Kafka handles thousands of
topics comfortably, which is well past the fleet sizes A4C targets. See
docs/decisions/0001-command-routing.md.
"""

from __future__ import annotations

import dataclasses

# Partitions of the shared topics, used by whichever side creates them first so
# that a topic re-created after a broker loss always comes back the same shape
# (a consumer group that believes in fewer partitions never reads the rest).
# Events are keyed by host id: more partitions spread the fleet's reports over
# more control-plane instances.
EVENTS_PARTITIONS = 4
JOB_SYNC_PARTITIONS = 4


def partitions_of(topic: str) -> int:
    """How many partitions A4C creates ``topic`` with: the shared topics' counts above, one for the rest.

    One home for the rule, so whichever side creates a topic first (agent,
    relay, consumer) creates it the same shape. Commands need one partition:
    a host's commands are one ordered stream.
    """
    if topic.endswith(".events"):
        return EVENTS_PARTITIONS
    if topic.endswith(".job-sync"):
        return JOB_SYNC_PARTITIONS
    return 1


@dataclasses.dataclass(frozen=True)
class Topics:
    prefix: str = "a4c"

    def commands(self, host_id: str) -> str:
        return f"{self.prefix}.commands.{host_id}"

    @property
    def events(self) -> str:
        """Everything agents report: job progress, state, heartbeats, inventory, disk."""
        return f"{self.prefix}.events"

    @property
    def job_sync(self) -> str:
        """Job row snapshots, projected into the Elasticsearch ``jobs`` index."""
        return f"{self.prefix}.job-sync"

    @property
    def ci_builds(self) -> str:
        """Build requests from CI systems."""
        return f"{self.prefix}.ci-builds"

    @property
    def dead_letter(self) -> str:
        """What a consumer gave up on (a record it cannot apply, a document Elasticsearch rejected), with the reason."""
        return f"{self.prefix}.dead-letter"

    @property
    def shared(self) -> list[str]:
        """The topics every installation has (the per-host command topics come and go with hosts)."""
        return [self.events, self.job_sync, self.ci_builds, self.dead_letter]

    def agent_group(self, host_id: str) -> str:
        return f"{self.prefix}.agent.{host_id}"

    @property
    def controlplane_group(self) -> str:
        return f"{self.prefix}.controlplane"

    @property
    def sync_group(self) -> str:
        return f"{self.prefix}.search-sync"
