"""SQLAlchemy 2 models of the control plane's state.

The schema makes bad states unrepresentable where PostgreSQL can: enums for
every status, foreign keys, check constraints for ranges and for "exactly one
of", a unique idempotency key per job, and a ``version`` column on rows that
are projected elsewhere (jobs into Elasticsearch, workspaces into agents),
bumped by a trigger on every update so no code path can forget it.

Triggers also write the job-sync outbox row for every job change and NOTIFY
the relay; see migration 0001 for their text. Outbox topics are *logical*
("job-sync", "commands.<host id>"): the relay adds the configured prefix.
"""

from __future__ import annotations

import datetime
import decimal
import enum
import typing
import uuid

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.dialects import postgresql as pg

from controlplane.domain import states

JSON = pg.JSONB
Timestamp = sa.DateTime(timezone=True)


def _enum(cls: type[enum.Enum], name: str) -> sa.Enum:
    return sa.Enum(cls, name=name, values_callable=lambda e: [m.value for m in e], validate_strings=True)


# The states are enums in the pure domain (controlplane/domain/states.py), so
# decisions and the search grammar use them without importing SQLAlchemy.
Role = states.Role
HostStatus = states.HostStatus
DesiredState = states.DesiredState
ObservedState = states.ObservedState
JobKind = states.JobKind
JobStatus = states.JobStatus
JobSource = states.JobSource


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class Base(orm.DeclarativeBase):
    type_annotation_map: typing.ClassVar = {
        datetime.datetime: Timestamp,
        dict[str, typing.Any]: JSON,
        list[typing.Any]: JSON,
    }


class _Timestamps:
    created_at: orm.Mapped[datetime.datetime] = orm.mapped_column(server_default=sa.func.now(), default=_now)
    updated_at: orm.Mapped[datetime.datetime] = orm.mapped_column(server_default=sa.func.now(), default=_now)


class User(_Timestamps, Base):
    __tablename__ = "users"

    id: orm.Mapped[uuid.UUID] = orm.mapped_column(primary_key=True, default=uuid.uuid4)
    name: orm.Mapped[str] = orm.mapped_column(sa.String(64), unique=True)
    role: orm.Mapped[Role] = orm.mapped_column(_enum(Role, "user_role"), default=Role.USER)
    disabled: orm.Mapped[bool] = orm.mapped_column(default=False, server_default=sa.false())

    __table_args__ = (sa.CheckConstraint(r"name ~ '^[a-z][a-z0-9_.-]{0,63}$'", name="users_name_format"),)


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: orm.Mapped[uuid.UUID] = orm.mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: orm.Mapped[uuid.UUID] = orm.mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: orm.Mapped[str] = orm.mapped_column(sa.String(100), default="")
    # SHA-256 of the token: tokens are 256-bit random, so a fast hash is enough
    # (no dictionary to attack) and keeps per-request authentication cheap.
    token_hash: orm.Mapped[str] = orm.mapped_column(sa.String(64), unique=True)
    prefix: orm.Mapped[str] = orm.mapped_column(sa.String(16), doc="first characters, shown to people to tell tokens apart")
    created_at: orm.Mapped[datetime.datetime] = orm.mapped_column(server_default=sa.func.now(), default=_now)
    expires_at: orm.Mapped[datetime.datetime | None]
    revoked_at: orm.Mapped[datetime.datetime | None]
    last_used_at: orm.Mapped[datetime.datetime | None]


class EnrolmentToken(Base):
    __tablename__ = "enrolment_tokens"

    id: orm.Mapped[uuid.UUID] = orm.mapped_column(primary_key=True, default=uuid.uuid4)
    token_hash: orm.Mapped[str] = orm.mapped_column(sa.String(64), unique=True)
    prefix: orm.Mapped[str] = orm.mapped_column(sa.String(16))
    description: orm.Mapped[str] = orm.mapped_column(sa.String(200), default="")
    created_by: orm.Mapped[uuid.UUID | None] = orm.mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    created_at: orm.Mapped[datetime.datetime] = orm.mapped_column(server_default=sa.func.now(), default=_now)
    expires_at: orm.Mapped[datetime.datetime | None]
    revoked_at: orm.Mapped[datetime.datetime | None]
    max_uses: orm.Mapped[int | None] = orm.mapped_column(doc="none = unlimited (a fleet-wide token for Ansible)")
    uses: orm.Mapped[int] = orm.mapped_column(default=0, server_default="0")

    __table_args__ = (
        sa.CheckConstraint("max_uses IS NULL OR max_uses > 0", name="enrolment_tokens_max_uses_positive"),
        sa.CheckConstraint("max_uses IS NULL OR uses <= max_uses", name="enrolment_tokens_uses_within_max"),
    )


class Host(_Timestamps, Base):
    __tablename__ = "hosts"

    id: orm.Mapped[uuid.UUID] = orm.mapped_column(primary_key=True, default=uuid.uuid4)
    name: orm.Mapped[str] = orm.mapped_column(sa.String(253), unique=True)
    status: orm.Mapped[HostStatus] = orm.mapped_column(_enum(HostStatus, "host_status"), default=HostStatus.ACTIVE, index=True)
    cordoned: orm.Mapped[bool] = orm.mapped_column(default=False, server_default=sa.false())
    draining: orm.Mapped[bool] = orm.mapped_column(default=False, server_default=sa.false())
    labels: orm.Mapped[dict[str, typing.Any]] = orm.mapped_column(default=dict, server_default="{}")
    # The HMAC key must be usable to sign, so it cannot be hashed; it never
    # leaves the control plane except once, in the enrolment response.
    signing_key: orm.Mapped[str] = orm.mapped_column(sa.String(128))
    agent_version: orm.Mapped[str] = orm.mapped_column(sa.String(64), default="")
    capacity_cpus: orm.Mapped[decimal.Decimal] = orm.mapped_column(sa.Numeric(8, 2))
    capacity_memory_mb: orm.Mapped[int] = orm.mapped_column(sa.BigInteger)
    capacity_disk_bytes: orm.Mapped[int] = orm.mapped_column(sa.BigInteger)
    disk_total_bytes: orm.Mapped[int | None] = orm.mapped_column(sa.BigInteger)
    disk_used_bytes: orm.Mapped[int | None] = orm.mapped_column(sa.BigInteger)
    disk_report: orm.Mapped[dict[str, typing.Any] | None]
    disk_reported_at: orm.Mapped[datetime.datetime | None]
    last_heartbeat_at: orm.Mapped[datetime.datetime | None]
    heartbeat: orm.Mapped[dict[str, typing.Any] | None] = orm.mapped_column(doc="latest heartbeat payload (conditions…)")
    inventory: orm.Mapped[dict[str, typing.Any] | None]
    inventory_at: orm.Mapped[datetime.datetime | None]
    last_event_seq: orm.Mapped[int] = orm.mapped_column(sa.BigInteger, default=0, server_default="0")
    # The agent's event versions of the stored inventory and disk report: they order those reports, while
    # inventory_at and disk_reported_at hold when the control plane received them (its own clock).
    inventory_seq: orm.Mapped[int] = orm.mapped_column(sa.BigInteger, default=0, server_default="0")
    disk_seq: orm.Mapped[int] = orm.mapped_column(sa.BigInteger, default=0, server_default="0")
    down_since: orm.Mapped[datetime.datetime | None]
    version: orm.Mapped[int] = orm.mapped_column(sa.BigInteger, default=1, server_default="1")

    __table_args__ = (
        sa.CheckConstraint("capacity_cpus > 0", name="hosts_capacity_cpus_positive"),
        sa.CheckConstraint("capacity_memory_mb > 0", name="hosts_capacity_memory_positive"),
        sa.CheckConstraint("capacity_disk_bytes >= 0", name="hosts_capacity_disk_nonnegative"),
        sa.CheckConstraint("version > 0", name="hosts_version_positive"),
    )


class Enrolment(Base):
    __tablename__ = "enrolments"

    id: orm.Mapped[uuid.UUID] = orm.mapped_column(primary_key=True, default=uuid.uuid4)
    token_id: orm.Mapped[uuid.UUID] = orm.mapped_column(sa.ForeignKey("enrolment_tokens.id", ondelete="CASCADE"), index=True)
    host_id: orm.Mapped[uuid.UUID] = orm.mapped_column(sa.ForeignKey("hosts.id", ondelete="CASCADE"), index=True)
    remote_addr: orm.Mapped[str] = orm.mapped_column(sa.String(64), default="")
    created_at: orm.Mapped[datetime.datetime] = orm.mapped_column(server_default=sa.func.now(), default=_now)


class CiSystem(Base):
    """A CI system allowed to publish build requests on ``<prefix>.ci-builds`` (controlplane/ci.py)."""

    __tablename__ = "ci_systems"

    id: orm.Mapped[uuid.UUID] = orm.mapped_column(primary_key=True, default=uuid.uuid4)
    name: orm.Mapped[str] = orm.mapped_column(sa.String(40), unique=True)
    description: orm.Mapped[str] = orm.mapped_column(sa.String(200), default="")
    # An HMAC key, like hosts.signing_key: kept usable to verify, shown once at creation.
    signing_key: orm.Mapped[str] = orm.mapped_column(sa.String(128))
    images: orm.Mapped[list[typing.Any]] = orm.mapped_column(default=list, server_default="[]", doc="image names it may build")
    owners: orm.Mapped[list[typing.Any]] = orm.mapped_column(default=list, server_default="[]", doc="user names whose images it may build")
    created_by: orm.Mapped[uuid.UUID | None] = orm.mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    created_at: orm.Mapped[datetime.datetime] = orm.mapped_column(server_default=sa.func.now(), default=_now)

    __table_args__ = (sa.CheckConstraint(r"name ~ '^[a-z][a-z0-9_.-]{0,39}$'", name="ci_systems_name_format"),)


TAG_DEFAULT = "'a4c/image:' || replace(gen_random_uuid()::text, '-', '')"


class Image(_Timestamps, Base):
    __tablename__ = "images"

    id: orm.Mapped[uuid.UUID] = orm.mapped_column(primary_key=True, default=uuid.uuid4)
    # Unique per owner, and among shared images (migration 0008): no name is global.
    name: orm.Mapped[str] = orm.mapped_column(sa.String(128))
    owner_id: orm.Mapped[uuid.UUID] = orm.mapped_column(sa.ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    shared: orm.Mapped[bool] = orm.mapped_column(default=False, server_default=sa.false())
    # The service names it a4c/<name>:<id> (controlplane/services/images.py); a row written by hand still gets a unique one.
    tag: orm.Mapped[str] = orm.mapped_column(
        sa.String(255), unique=True, server_default=sa.text(TAG_DEFAULT), doc="the Docker tag agents build it as"
    )
    dockerfile: orm.Mapped[str | None] = orm.mapped_column(sa.Text)
    git_url: orm.Mapped[str | None] = orm.mapped_column(sa.Text)
    git_ref: orm.Mapped[str | None] = orm.mapped_column(sa.String(255))
    git_path: orm.Mapped[str | None] = orm.mapped_column(sa.String(1024))
    build_args: orm.Mapped[dict[str, typing.Any]] = orm.mapped_column(default=dict, server_default="{}")
    latest_digest: orm.Mapped[str | None] = orm.mapped_column(sa.String(128))
    latest_build_job_id: orm.Mapped[uuid.UUID | None]
    latest_built_at: orm.Mapped[datetime.datetime | None]
    version: orm.Mapped[int] = orm.mapped_column(sa.BigInteger, default=1, server_default="1")

    __table_args__ = (
        sa.CheckConstraint("(dockerfile IS NULL) <> (git_url IS NULL)", name="images_exactly_one_source"),
        sa.CheckConstraint(r"name ~ '^[a-z0-9][a-z0-9._-]{0,127}$'", name="images_name_format"),
        sa.UniqueConstraint("owner_id", "name", name="images_owner_name_key"),
        sa.Index("images_shared_name", "name", unique=True, postgresql_where=sa.text("shared")),
    )


class HostImage(Base):
    """An image as built on one host (builds are per host; nothing is pushed)."""

    __tablename__ = "host_images"

    host_id: orm.Mapped[uuid.UUID] = orm.mapped_column(sa.ForeignKey("hosts.id", ondelete="CASCADE"), primary_key=True)
    image_id: orm.Mapped[uuid.UUID] = orm.mapped_column(sa.ForeignKey("images.id", ondelete="CASCADE"), primary_key=True)
    docker_image_id: orm.Mapped[str] = orm.mapped_column(sa.String(128))
    tag: orm.Mapped[str] = orm.mapped_column(sa.String(255))
    built_at: orm.Mapped[datetime.datetime] = orm.mapped_column(server_default=sa.func.now(), default=_now)


class Schedule(_Timestamps, Base):
    __tablename__ = "schedules"

    id: orm.Mapped[uuid.UUID] = orm.mapped_column(primary_key=True, default=uuid.uuid4)
    image_id: orm.Mapped[uuid.UUID] = orm.mapped_column(sa.ForeignKey("images.id", ondelete="CASCADE"), index=True)
    owner_id: orm.Mapped[uuid.UUID] = orm.mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    cron: orm.Mapped[str] = orm.mapped_column(sa.String(128))
    timezone: orm.Mapped[str] = orm.mapped_column(sa.String(64), default="UTC")
    enabled: orm.Mapped[bool] = orm.mapped_column(default=True, server_default=sa.true())
    next_run_at: orm.Mapped[datetime.datetime | None]
    last_run_at: orm.Mapped[datetime.datetime | None]
    last_job_id: orm.Mapped[uuid.UUID | None]
    last_outcome: orm.Mapped[str] = orm.mapped_column(sa.Text, default="", server_default="", doc="what the last firing did")

    __table_args__ = (sa.Index("schedules_due", "next_run_at", postgresql_where=sa.text("enabled")),)


class Workspace(_Timestamps, Base):
    __tablename__ = "workspaces"

    id: orm.Mapped[uuid.UUID] = orm.mapped_column(primary_key=True, default=uuid.uuid4)
    owner_id: orm.Mapped[uuid.UUID] = orm.mapped_column(sa.ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    name: orm.Mapped[str] = orm.mapped_column(sa.String(63))
    image_id: orm.Mapped[uuid.UUID | None] = orm.mapped_column(sa.ForeignKey("images.id", ondelete="RESTRICT"), index=True)
    image_ref: orm.Mapped[str] = orm.mapped_column(sa.String(255), doc="the Docker reference the container runs")
    host_id: orm.Mapped[uuid.UUID | None] = orm.mapped_column(sa.ForeignKey("hosts.id", ondelete="RESTRICT"), index=True)
    desired_state: orm.Mapped[DesiredState] = orm.mapped_column(_enum(DesiredState, "workspace_desired_state"), default=DesiredState.RUNNING)
    observed_state: orm.Mapped[ObservedState] = orm.mapped_column(
        _enum(ObservedState, "workspace_observed_state"), default=ObservedState.PENDING, index=True
    )
    state_reason: orm.Mapped[str] = orm.mapped_column(sa.Text, default="", server_default="")
    cpus: orm.Mapped[decimal.Decimal] = orm.mapped_column(sa.Numeric(6, 2))
    memory_mb: orm.Mapped[int]
    disk_gb: orm.Mapped[int]
    env: orm.Mapped[dict[str, typing.Any]] = orm.mapped_column(default=dict, server_default="{}")
    ports: orm.Mapped[list[typing.Any]] = orm.mapped_column(default=list, server_default="[]", doc="requested container ports")
    command: orm.Mapped[list[typing.Any] | None] = orm.mapped_column(doc="main process instead of the image's command (migration 0005)")
    published_ports: orm.Mapped[list[typing.Any]] = orm.mapped_column(default=list, server_default="[]")
    container_id: orm.Mapped[str | None] = orm.mapped_column(sa.String(80))
    placement: orm.Mapped[dict[str, typing.Any] | None] = orm.mapped_column(doc="why this host, why not the others")
    observed_seq: orm.Mapped[int] = orm.mapped_column(sa.BigInteger, default=0, server_default="0")
    observed_at: orm.Mapped[datetime.datetime | None]
    deleted_at: orm.Mapped[datetime.datetime | None]
    version: orm.Mapped[int] = orm.mapped_column(sa.BigInteger, default=1, server_default="1")

    __table_args__ = (
        sa.CheckConstraint("cpus > 0", name="workspaces_cpus_positive"),
        sa.CheckConstraint("memory_mb > 0", name="workspaces_memory_positive"),
        sa.CheckConstraint("disk_gb > 0", name="workspaces_disk_positive"),
        sa.CheckConstraint("version > 0", name="workspaces_version_positive"),
        sa.CheckConstraint(r"name ~ '^[a-z0-9][a-z0-9-]{0,62}$'", name="workspaces_name_format"),
        # A placed workspace that is not deleted holds a host; an unplaced one must be pending.
        sa.CheckConstraint("host_id IS NOT NULL OR observed_state IN ('pending', 'deleted', 'failed')", name="workspaces_placed_or_pending"),
        sa.Index("workspaces_owner_name_live", "owner_id", "name", unique=True, postgresql_where=sa.text("deleted_at IS NULL")),
        sa.Index("workspaces_owner_created", "owner_id", "created_at", "id"),
    )


class Job(Base):
    __tablename__ = "jobs"

    id: orm.Mapped[uuid.UUID] = orm.mapped_column(primary_key=True, default=uuid.uuid4)
    kind: orm.Mapped[JobKind] = orm.mapped_column(_enum(JobKind, "job_kind"))
    status: orm.Mapped[JobStatus] = orm.mapped_column(_enum(JobStatus, "job_status"), default=JobStatus.QUEUED)
    source: orm.Mapped[JobSource] = orm.mapped_column(_enum(JobSource, "job_source"), default=JobSource.API)
    user_id: orm.Mapped[uuid.UUID | None] = orm.mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    host_id: orm.Mapped[uuid.UUID | None] = orm.mapped_column(sa.ForeignKey("hosts.id", ondelete="SET NULL"))
    image_id: orm.Mapped[uuid.UUID | None] = orm.mapped_column(sa.ForeignKey("images.id", ondelete="SET NULL"))
    workspace_id: orm.Mapped[uuid.UUID | None] = orm.mapped_column(sa.ForeignKey("workspaces.id", ondelete="SET NULL"))
    # Names are denormalised so that search filters and facets, on either
    # backend, read one row without joins and show what was true at the time.
    user_name: orm.Mapped[str | None] = orm.mapped_column(sa.String(64))
    host_name: orm.Mapped[str | None] = orm.mapped_column(sa.String(253))
    image_name: orm.Mapped[str | None] = orm.mapped_column(sa.String(128))
    workspace_name: orm.Mapped[str | None] = orm.mapped_column(sa.String(63))
    idempotency_key: orm.Mapped[str | None] = orm.mapped_column(sa.String(200), unique=True)
    requested_by: orm.Mapped[str | None] = orm.mapped_column(sa.String(160), doc="who asked besides user, e.g. ci:<system> (migration 0006)")
    reason: orm.Mapped[str] = orm.mapped_column(sa.Text, default="", server_default="", doc="why pending / why this host")
    placement: orm.Mapped[dict[str, typing.Any] | None]
    payload: orm.Mapped[dict[str, typing.Any]] = orm.mapped_column(default=dict, server_default="{}", doc="the command it carries")
    result: orm.Mapped[dict[str, typing.Any]] = orm.mapped_column(default=dict, server_default="{}")
    error: orm.Mapped[str | None] = orm.mapped_column(sa.Text)
    log_tail: orm.Mapped[str] = orm.mapped_column(sa.Text, default="", server_default="")
    attempts: orm.Mapped[int] = orm.mapped_column(default=0, server_default="0")
    max_attempts: orm.Mapped[int] = orm.mapped_column(default=5, server_default="5")
    deadline_at: orm.Mapped[datetime.datetime | None]
    lease_expires_at: orm.Mapped[datetime.datetime | None]
    next_attempt_at: orm.Mapped[datetime.datetime | None]
    dispatched_at: orm.Mapped[datetime.datetime | None]
    acknowledged_at: orm.Mapped[datetime.datetime | None]
    started_at: orm.Mapped[datetime.datetime | None]
    finished_at: orm.Mapped[datetime.datetime | None]
    created_at: orm.Mapped[datetime.datetime] = orm.mapped_column(server_default=sa.func.now(), default=_now)
    updated_at: orm.Mapped[datetime.datetime] = orm.mapped_column(server_default=sa.func.now(), default=_now)
    deleted_at: orm.Mapped[datetime.datetime | None] = orm.mapped_column(doc="soft delete: projected as a tombstone")
    last_event_seq: orm.Mapped[int] = orm.mapped_column(
        sa.BigInteger, default=0, server_default="0", doc="seq of the newest agent event applied; older ones are dropped"
    )
    version: orm.Mapped[int] = orm.mapped_column(sa.BigInteger, default=1, server_default="1")
    search: orm.Mapped[typing.Any] = orm.mapped_column(
        pg.TSVECTOR,
        # Runs of non-alphanumerics become spaces first, so the tokens are the
        # ones Elasticsearch's job_text analyzer sees (migration 0003); a4c_text
        # stems like english but keeps stop words (migration 0004).
        sa.Computed(
            "to_tsvector('a4c_text'::regconfig, regexp_replace(coalesce(error, '') || ' ' || coalesce(log_tail, ''), '[^[:alnum:]]+', ' ', 'g'))",
            persisted=True,
        ),
        deferred=True,
    )

    __table_args__ = (
        sa.CheckConstraint("attempts >= 0 AND attempts <= max_attempts + 1", name="jobs_attempts_in_range"),
        sa.CheckConstraint("version > 0", name="jobs_version_positive"),
        sa.CheckConstraint("length(log_tail) <= 65536", name="jobs_log_tail_bounded"),
        sa.CheckConstraint("(status IN ('succeeded', 'failed', 'cancelled')) = (finished_at IS NOT NULL)", name="jobs_finished_iff_final"),
        # Dashboard filters: each leads with the filter column and ends with the
        # keyset (created_at, id), so filter + sort + cursor is one index range.
        sa.Index("jobs_created", "created_at", "id"),
        sa.Index("jobs_finished", "finished_at", "id"),
        sa.Index("jobs_updated", "updated_at", "id"),
        sa.Index("jobs_status_created", "status", "created_at", "id"),
        sa.Index("jobs_kind_created", "kind", "created_at", "id"),
        sa.Index("jobs_user_created", "user_name", "created_at", "id"),
        sa.Index("jobs_host_created", "host_name", "created_at", "id"),
        sa.Index("jobs_image_created", "image_name", "created_at", "id"),
        sa.Index("jobs_workspace_created", "workspace_id", "created_at", "id"),
        sa.Index("jobs_user_id", "user_id"),
        sa.Index("jobs_host_id_status", "host_id", "status"),
        sa.Index("jobs_search", "search", postgresql_using="gin"),
        # The lease/deadline sweeper reads only live jobs.
        sa.Index(
            "jobs_live",
            "status",
            "lease_expires_at",
            postgresql_where=sa.text("status IN ('queued', 'pending', 'dispatched', 'running')"),
        ),
    )


class Outbox(Base):
    """Messages committed with the state change that causes them (docs/decisions/0002-outbox-relay.md)."""

    __tablename__ = "outbox"

    id: orm.Mapped[int] = orm.mapped_column(sa.BigInteger, sa.Identity(always=True), primary_key=True)
    topic: orm.Mapped[str] = orm.mapped_column(sa.String(255), doc="logical topic, e.g. job-sync or commands.<host id>")
    key: orm.Mapped[str] = orm.mapped_column(sa.String(255))
    kind: orm.Mapped[str] = orm.mapped_column(sa.String(64))
    payload: orm.Mapped[dict[str, typing.Any]]
    created_at: orm.Mapped[datetime.datetime] = orm.mapped_column(server_default=sa.func.now(), default=_now)
    published_at: orm.Mapped[datetime.datetime | None]
    attempts: orm.Mapped[int] = orm.mapped_column(default=0, server_default="0")
    last_error: orm.Mapped[str | None] = orm.mapped_column(sa.Text)

    __table_args__ = (
        sa.Index("outbox_unpublished", "id", postgresql_where=sa.text("published_at IS NULL")),
        sa.Index("outbox_unpublished_key", "key", "id", postgresql_where=sa.text("published_at IS NULL")),
        sa.Index("outbox_published_at", "published_at", postgresql_where=sa.text("published_at IS NOT NULL")),
    )


class IdempotencyRecord(Base):
    """The first response to a POST with an Idempotency-Key, replayed on retries."""

    __tablename__ = "idempotency_keys"

    principal: orm.Mapped[str] = orm.mapped_column(sa.String(80), primary_key=True, doc="user id, or 'anon:<addr>'")
    key: orm.Mapped[str] = orm.mapped_column(sa.String(200), primary_key=True)
    method: orm.Mapped[str] = orm.mapped_column(sa.String(10))
    path: orm.Mapped[str] = orm.mapped_column(sa.String(1024))
    request_hash: orm.Mapped[str] = orm.mapped_column(sa.String(64))
    status: orm.Mapped[int | None] = orm.mapped_column(doc="null while the first request is in flight")
    response: orm.Mapped[dict[str, typing.Any] | None]
    created_at: orm.Mapped[datetime.datetime] = orm.mapped_column(server_default=sa.func.now(), default=_now, index=True)


class SearchIndexState(Base):
    """Bookkeeping of Elasticsearch reindex runs, so a crashed one resumes."""

    __tablename__ = "search_index_state"

    index_name: orm.Mapped[str] = orm.mapped_column(sa.String(255), primary_key=True)
    phase: orm.Mapped[str] = orm.mapped_column(sa.String(32), default="backfill")
    cursor: orm.Mapped[dict[str, typing.Any] | None]
    started_at: orm.Mapped[datetime.datetime] = orm.mapped_column(server_default=sa.func.now(), default=_now)
    backfill_started_at: orm.Mapped[datetime.datetime | None]
    finished_at: orm.Mapped[datetime.datetime | None]
    docs: orm.Mapped[int] = orm.mapped_column(sa.BigInteger, default=0, server_default="0")


class HostAllocation(Base):
    """What a host's live workspaces hold, kept by a trigger on every workspace change (migration 0011).

    Placement reads and locks this row instead of aggregating workspaces
    (docs/decisions/0011-maintained-allocations.md); the reconciler checks it
    against the live aggregate (controlplane/services/allocations.py).
    """

    __tablename__ = "host_allocations"

    host_id: orm.Mapped[uuid.UUID] = orm.mapped_column(sa.ForeignKey("hosts.id", ondelete="CASCADE"), primary_key=True)
    cpus: orm.Mapped[decimal.Decimal] = orm.mapped_column(sa.Numeric(12, 2), default=0, server_default="0", doc="of workspaces not asked to stop")
    memory_mb: orm.Mapped[int] = orm.mapped_column(sa.BigInteger, default=0, server_default="0", doc="of workspaces not asked to stop")
    disk_gb: orm.Mapped[int] = orm.mapped_column(sa.BigInteger, default=0, server_default="0")
    promised_gb: orm.Mapped[int] = orm.mapped_column(sa.BigInteger, default=0, server_default="0", doc="of workspaces pending or creating")
    workspaces: orm.Mapped[int] = orm.mapped_column(default=0, server_default="0")
    # Copies of the host's, kept by a trigger on hosts (migration 0014), so that one index orders hosts by disk used.
    disk_used_bytes: orm.Mapped[int | None] = orm.mapped_column(sa.BigInteger, doc="the host's last disk report")
    disk_total_bytes: orm.Mapped[int] = orm.mapped_column(
        sa.BigInteger, default=0, server_default="0", doc="the host's reported disk size, else its enrolled capacity"
    )

    __table_args__ = (
        # Placement's search order (migration 0014; controlplane/services/placement_ranking.py FRACTION_BEFORE),
        # spelt as PostgreSQL prints it back, which is what the schema comparison reads.
        sa.Index(
            "host_allocations_disk_fraction_before",
            sa.text(
                "((disk_used_bytes + promised_gb * 1073741824)::double precision / NULLIF(GREATEST(disk_total_bytes, 0::bigint), 0)::double precision)"
            ),
        ),
    )


class SearchDrift(Base):
    """What the sync worker's last check-and-repair of an alias left unrepaired (controlplane/search/healing.py)."""

    __tablename__ = "search_drift"

    alias: orm.Mapped[str] = orm.mapped_column(sa.String(255), primary_key=True)
    checked_at: orm.Mapped[datetime.datetime] = orm.mapped_column(server_default=sa.func.now(), default=_now)
    unrepaired: orm.Mapped[int] = orm.mapped_column(default=0, server_default="0", doc="days still differing after the repair")
    repaired: orm.Mapped[int] = orm.mapped_column(sa.BigInteger, default=0, server_default="0", doc="jobs rewritten by the last check")
    detail: orm.Mapped[str] = orm.mapped_column(sa.Text, default="", server_default="")


class EventProgress(Base):
    """How far the events consumer has applied each partition of ``<prefix>.events`` (controlplane/domain/hearing.py)."""

    __tablename__ = "event_progress"

    topic: orm.Mapped[str] = orm.mapped_column(sa.String(255), primary_key=True)
    partition: orm.Mapped[int] = orm.mapped_column(sa.Integer, primary_key=True, autoincrement=False)
    applied_through: orm.Mapped[datetime.datetime]
    resumed_at: orm.Mapped[datetime.datetime]
    updated_at: orm.Mapped[datetime.datetime] = orm.mapped_column(server_default=sa.func.now(), default=_now)


metadata = Base.metadata
