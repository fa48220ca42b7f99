"""Typed settings of the control plane, one documented group per concern.

Loaded once at startup by :func:`load` from the YAML file named by
``--config`` (or ``A4C_CONFIG``) plus ``A4C_SECTION__KEY`` overrides, then
passed explicitly to whatever needs them. ``packaging/config/controlplane.yaml``
documents every key.
"""

from __future__ import annotations

import os
import pathlib
import typing
import urllib.parse

import pydantic

from shared import config, eventloop
from shared import settings as common

Seconds = common.Seconds


GitUrlScheme = typing.Literal["https", "ssh", "http", "git", "file"]


def _default_git_url_schemes() -> list[GitUrlScheme]:
    return ["https", "ssh"]


class HttpSettings(config.StrictModel):
    """The HTTP listener (API, dashboard, metrics)."""

    host: str = pydantic.Field(default="127.0.0.1", description="Address to bind; 0.0.0.0 behind a load balancer.")
    port: common.Port = pydantic.Field(default=8080, description="Port to bind; 0 picks a free one.")
    public_url: common.HttpUrl | None = pydantic.Field(
        default=None, description="URL people and agents use to reach the API (defaults to http://host:port)."
    )
    max_body_bytes: int = pydantic.Field(default=1_048_576, gt=0, description="Larger request bodies answer 413.")
    drain_delay: float = pydantic.Field(
        default=0.0,
        ge=0,
        description="After SIGTERM, /readyz answers 503 this long while the listener still accepts, so that a load balancer "
        "routes new requests elsewhere before it closes: behind one, longer than its health-check interval (the Ansible role "
        "sets 5). 0 closes the listener at once.",
    )
    shutdown_timeout: Seconds = pydantic.Field(
        default=10.0, description="Grace for in-flight requests once the listener has closed (after http.drain_delay)."
    )
    header_timeout: Seconds = pydantic.Field(
        default=20.0,
        description="A connection that has not sent a complete request head this long after it opened, or after its previous answer, is closed (slow headers and idle keep-alive alike).",
    )
    body_timeout: Seconds = pydantic.Field(default=30.0, description="Longest time to receive a request body; slower answers 408 naming body.")
    max_connections: int = pydantic.Field(
        default=900,
        gt=0,
        description="Open connections the listener keeps; more are answered 503 and closed (keep it under the process's open-file limit).",
    )
    max_connections_per_address: int = pydantic.Field(
        default=256, ge=0, description="Open connections from one client address (the TCP peer: behind a proxy, the proxy); 0 = no per-address cap."
    )
    max_json_depth: int = pydantic.Field(
        default=64, gt=0, le=500, description="Deepest nesting of arrays and objects a JSON body may have; deeper answers 400 naming body."
    )
    metrics_token_file: str | None = pydantic.Field(
        default=None,
        description="File holding a token that /metrics requires as 'Authorization: Bearer <token>' (Prometheus: "
        "authorization.credentials_file). Unset: /metrics is public, so bind the API where only your network reaches it.",
    )


class RuntimeSettings(config.StrictModel):
    """The process itself."""

    event_loop: eventloop.Name = pydantic.Field(
        default="uvloop",
        description="Event loop of `a4c-controlplane run`: 'uvloop' (libuv; less CPU per request, docs/benchmarks.md) or 'asyncio' "
        "(the standard library's, for platforms without a uvloop wheel or to rule the loop out when chasing a bug).",
    )


def _with_password(url: str, password: str) -> str:
    """``url`` with ``password`` for its user, unless it already names one."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is not None:
        return url
    user = urllib.parse.quote(parts.username or "postgres", safe="")
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:{urllib.parse.quote(password, safe='')}@{host}"))


class DatabaseSettings(config.StrictModel):
    """PostgreSQL, the only source of truth."""

    url: common.PostgresUrl = pydantic.Field(
        default="postgresql://postgres@127.0.0.1:5432/a4c",
        description="Primary, read-write. On the database's own machine it may name the Unix socket instead, which skips "
        "the TCP stack on every query: postgresql://a4c@/a4c?host=/var/run/postgresql (&port=N for a port other than 5432).",
    )
    replica_urls: list[common.PostgresUrl] = pydantic.Field(
        default_factory=list, description="Read replicas used by the search fallback; empty = use the primary."
    )
    pool_size: int = pydantic.Field(
        default=10,
        gt=0,
        le=1000,
        description="Connections per pool (up to twice this with overflow for writes); the API keeps one pool for writes, one for reads and one for its hottest reads (controlplane/db/hot.py).",
    )
    statement_timeout: Seconds = pydantic.Field(default=30.0, description="Server-side deadline of one statement.")
    connect_timeout: Seconds = pydantic.Field(
        default=5.0, description="Longest wait for a new connection (a replica that does not answer is skipped after this)."
    )
    command_timeout: Seconds = pydantic.Field(
        default=6.0,
        description="Client-side bound on one command (query, commit, ping): a server that accepts connections but answers "
        "nothing is given up on after this, and the request answers 503. Keep it above search.statement_timeout.",
    )
    pool_timeout: Seconds = pydantic.Field(default=5.0, description="Longest wait for a free pooled connection; past it the request answers 503.")
    keepalive_idle: Seconds = pydantic.Field(
        default=15.0,
        description="TCP keepalives on every connection, both ends: first probe after this much silence, then every "
        "keepalive_idle/3 s, 3 unanswered probes drop it (a vanished server or client is noticed).",
    )
    password_file: str | None = pydantic.Field(
        default=None,
        description="File holding the database password (e.g. a systemd LoadCredential= path), so no URL above carries it; "
        "used for the primary and for every replica URL without a password of its own.",
    )

    @pydantic.model_validator(mode="before")
    @classmethod
    def _password_from_file(cls, data: typing.Any) -> typing.Any:
        if not isinstance(data, dict) or not data.get("password_file"):
            return data
        path = pathlib.Path(data["password_file"])
        try:
            password = path.read_text().rstrip("\n")
        except OSError as exc:
            raise ValueError(f"password_file: cannot read {path}: {exc.strerror}") from None
        data = dict(data)
        for key in ("url",):
            if key in data:
                data[key] = _with_password(data[key], password)
        if "url" not in data:
            data["url"] = _with_password(cls.model_fields["url"].default, password)
        data["replica_urls"] = [_with_password(u, password) for u in data.get("replica_urls") or []]
        return data


class AuthSettings(config.StrictModel):
    """API tokens."""

    token_ttl_days: int | None = pydantic.Field(default=None, gt=0, description="Default lifetime of new tokens; none = no expiry.")
    cache_ttl: float = pydantic.Field(
        default=5.0,
        ge=0,
        description="Seconds a validated token is remembered in-process. A revocation (or a user disabled) takes effect at once on the instance that made it, on the others when its NOTIFY arrives (LISTEN a4c_tokens), and within this at the latest should that be missed. 0 = look up on every request.",
    )
    cache_size: int = pydantic.Field(
        default=10_000,
        gt=0,
        description="Valid tokens remembered (least recently used forgotten first); unknown tokens have their own cache of this size.",
    )
    lookup_timeout: Seconds = pydantic.Field(
        default=3.0, description="Longest wait for a token lookup in the database; past it the request answers 503 (a hung database)."
    )


class RateLimitSettings(config.StrictModel):
    """Token buckets per API token (and per client address when unauthenticated)."""

    enabled: bool = pydantic.Field(default=True, description="Off: no request is ever refused with 429.")
    per_token_rps: float = pydantic.Field(default=50.0, gt=0, description="Sustained requests per second per token.")
    per_token_burst: int = pydantic.Field(default=100, gt=0, description="Requests a token may make at once before the sustained rate applies.")
    anonymous_rps: float = pydantic.Field(default=5.0, gt=0, description="Per client address, unauthenticated calls.")
    anonymous_burst: int = pydantic.Field(default=20, gt=0, description="Burst per client address, unauthenticated calls.")
    lookups_per_address_rps: float = pydantic.Field(
        default=20.0,
        gt=0,
        description="Token lookups in the database per client address and second (tokens not in the auth cache); beyond, 429 before any lookup.",
    )
    lookups_per_address_burst: int = pydantic.Field(default=100, gt=0, description="Burst of token lookups per client address.")
    trust_forwarded_for: bool = pydantic.Field(
        default=False, description="Key anonymous buckets by the first X-Forwarded-For address (only behind a trusted load balancer)."
    )


class ConcurrencySettings(config.StrictModel):
    """Requests one instance answers at once per route class; one more answers 503 with Retry-After (controlplane/api/shedding.py)."""

    search: int = pydantic.Field(default=16, gt=0, description="GET /v1/jobs/search.")
    create: int = pydantic.Field(default=32, gt=0, description="POSTs that create something (workspaces, images, builds, users, tokens…).")
    streams: int = pydantic.Field(default=64, gt=0, description="Open exec and logs streams (WebSockets to a workspace, held for a whole session).")
    other: int = pydantic.Field(default=256, gt=0, description="Every other API call (/healthz, /readyz and /metrics are never capped).")
    retry_after: int = pydantic.Field(default=1, gt=0, description="Seconds a refused caller is told to wait (Retry-After).")


class WatchSettings(config.StrictModel):
    """Blocking reads: ``GET /v1/jobs/{id}`` and ``/v1/workspaces/{id}`` with ``?index=N`` wait for a change (controlplane/api/watches.py)."""

    default_wait: Seconds = pydantic.Field(default=60.0, description="How long a read with ?index= and no ?wait= blocks at most.")
    max_wait: Seconds = pydantic.Field(
        default=300.0, description="Longest a read blocks whatever ?wait= asks (longer waits are cut to this and answer the unchanged object)."
    )
    fallback_wait: Seconds = pydantic.Field(
        default=1.0,
        description="While this instance's LISTEN connection to PostgreSQL is down it hears of no change, so reads block at most this long and clients come back.",
    )
    per_instance: int = pydantic.Field(
        default=512,
        gt=0,
        description="Reads blocked at once on one instance; one more answers 503 with Retry-After. Each holds an HTTP connection: keep it under http.max_connections.",
    )
    per_user: int = pydantic.Field(
        default=64, gt=0, description="Reads one user has blocked at once on one instance; one more answers 429 with Retry-After."
    )
    retry_after: int = pydantic.Field(default=1, gt=0, description="Seconds a refused watcher is told to wait (Retry-After).")


class ApiSettings(config.StrictModel):
    """Behaviour of the HTTP API's resources."""

    page_size: int = pydantic.Field(default=50, gt=0, le=1000, description="Items per page when a list request gives no limit.")
    max_page_size: int = pydantic.Field(default=500, gt=0, le=10_000, description="Largest limit a list request may ask for.")
    idempotency_retention: Seconds = pydantic.Field(
        default=86_400.0, description="How long a POST's Idempotency-Key and its recorded response are kept for replay."
    )
    build_deadline: Seconds = pydantic.Field(default=1800.0, description="Deadline an agent gets for one image build.")
    git_url_schemes: list[GitUrlScheme] = pydantic.Field(
        default_factory=_default_git_url_schemes,
        description="URL schemes an image's git_url may use (user@host:path counts as ssh); others answer 422 naming git_url. file:// lets agents clone from their own disk.",
    )


class EnrolmentSettings(config.StrictModel):
    """Enrolment tokens, and re-enrolling a host that already has a key (controlplane/services/enrolment.py)."""

    token_max_uses: int = pydantic.Field(default=1, gt=0, description="Uses of a new enrolment token unless the admin asks for more (max_uses).")
    token_ttl: Seconds = pydantic.Field(
        default=3600.0, description="Lifetime of a new enrolment token unless the admin asks for another (expires_in_seconds)."
    )
    recent_heartbeat: Seconds | None = pydantic.Field(
        default=None,
        description="A host that sent a heartbeat this recently is re-keyed only with an admin's force or proof of its current key; none = twice reconciler.host_down_after.",
    )


class CiSettings(config.StrictModel):
    """Signed build requests on ``<prefix>.ci-builds`` (controlplane/ci.py, docs/ci.md)."""

    max_age: Seconds = pydantic.Field(
        default=3600.0, description="A message issued longer ago than this (or this far in the future) is dead-lettered as stale."
    )


class PlacementSettings(config.StrictModel):
    """Choosing a host for a new workspace."""

    heartbeat_fresh: Seconds = pydantic.Field(default=60.0, description="A host whose last heartbeat is older is not eligible.")


class RelaySettings(config.StrictModel):
    """The outbox relay (outbox rows -> Kafka)."""

    enabled: bool = pydantic.Field(default=True, description="Run the relay in this instance (any number may; they share the work).")
    batch_size: int = pydantic.Field(default=200, gt=0, description="Outbox rows claimed and published per transaction.")
    poll_interval: Seconds = pydantic.Field(default=2.0, description="Fallback poll when no NOTIFY arrives.")
    retention: Seconds = pydantic.Field(default=86_400.0, description="Published rows are purged after this long.")


class EventsSettings(config.StrictModel):
    """The consumer of agent events (``<prefix>.events``)."""

    fetch_max_wait: Seconds = pydantic.Field(
        default=0.5,
        description=(
            "Longest a fetch waits at the broker. Real Kafka answers as soon as an event arrives; a broker that does not "
            "wake long polls (the embedded one) adds up to this much to every create/start/stop, and a shorter wait costs idle CPU."
        ),
    )
    batch_size: int = pydantic.Field(
        default=200,
        gt=0,
        le=10_000,
        description="Host reports (heartbeats, disk reports, inventories) in a row applied in one transaction; job and workspace events get one each.",
    )
    key_refresh: Seconds = pydantic.Field(
        default=30.0,
        description="Every host key is reloaded this often, the fallback for a missed re-key notification (LISTEN a4c_host_keys drops a superseded key at once).",
    )
    progress_interval: Seconds = pydantic.Field(
        default=1.0,
        description="How often the consumer records how far it has applied each partition (table event_progress), which host-down decisions wait for.",
    )
    progress_gap: Seconds = pydantic.Field(
        default=5.0,
        description="The applied-through position jumping by more than this means nothing could be heard meanwhile (broker unreachable, "
        "consumer lagging or stopped): hosts' silence is counted again from then (controlplane/domain/hearing.py).",
    )


class ConsumersSettings(config.StrictModel):
    """Every Kafka consumer of the control plane (events, CI builds): what it gives up on, and when it counts as stalled."""

    stall_after: Seconds = pydantic.Field(
        default=60.0,
        description="/readyz answers 503 naming a consumer, and its lag, when records have waited this long without it committing past any.",
    )
    max_message_bytes: int = pydantic.Field(
        default=1_048_576, gt=0, description="A larger record is dead-lettered unread (about Kafka's default message.max.bytes)."
    )


class ReconcilerSettings(config.StrictModel):
    """Level-triggered reconciliation of desired vs observed state."""

    enabled: bool = pydantic.Field(default=True, description="Run the reconciler in this instance.")
    interval: Seconds = pydantic.Field(default=15.0)
    orphan_grace: Seconds = pydantic.Field(default=120.0, description="An unknown a4c container is removed only after this.")
    report_only: bool = pydantic.Field(default=False, description="Log corrective actions instead of issuing them.")
    host_down_after: Seconds = pydantic.Field(
        default=90.0,
        description="No heartbeat for this long, counted on what the events consumer has applied (not the wall clock): host down, workspaces lost.",
    )
    disruption_threshold: float = pydantic.Field(
        default=0.55,
        gt=0,
        le=1,
        description="More than this share of the active hosts falling silent at once is a disruption: no host is marked down, "
        "a4c_fleet_disruption is 1 and the reconciler logs why (as Kubernetes' node lifecycle controller).",
    )
    disruption_min_hosts: int = pydantic.Field(
        default=2, gt=0, description="Fleets with fewer active hosts than this never count as disrupted: one silent host of one goes down."
    )
    job_ack_timeout: Seconds = pydantic.Field(default=60.0, description="A dispatched job not acknowledged by then is re-issued.")
    job_max_attempts: int = pydantic.Field(default=5, gt=0, description="A job is failed after this many dispatches without a result.")
    job_deadline: Seconds = pydantic.Field(
        default=600.0, description="A workspace or cleanup job not finished this long after dispatch is retried (builds: api.build_deadline + this)."
    )
    retry_backoff_max: Seconds = pydantic.Field(default=300.0, description="Longest wait before retrying an overdue job.")


class SchedulerSettings(config.StrictModel):
    """Cron-scheduled image builds."""

    enabled: bool = pydantic.Field(default=True, description="Fire due schedules from this instance (each slot fires once across all).")
    tick: Seconds = pydantic.Field(default=5.0, description="How often due schedules are looked for.")
    misfire: typing.Literal["skip", "run_once"] = pydantic.Field(
        default="run_once", description="After downtime: run_once fires one catch-up build, skip fires none."
    )


class SearchSettings(config.StrictModel):
    """The Elasticsearch projection of the jobs table, and its fallback."""

    elasticsearch_url: common.HttpUrl | None = pydantic.Field(
        default=None, description="Unset: search is served by PostgreSQL. A user named in it (https://a4c@es:9200) logs in with password_file."
    )
    api_key_file: str | None = pydantic.Field(
        default=None, description="File holding an Elasticsearch API key (the encoded form), e.g. a systemd LoadCredential= path."
    )
    password_file: str | None = pydantic.Field(
        default=None, description="File holding the password of the user named in elasticsearch_url (e.g. a systemd LoadCredential= path)."
    )
    ca_file: str | None = pydantic.Field(
        default=None, description="CA bundle that signed Elasticsearch's certificate (https); the system's CAs when unset."
    )
    index_alias: str = pydantic.Field(
        default="jobs", pattern=r"^[a-z0-9._-]+$", description="Alias the dashboard queries; reindexing swaps the index behind it."
    )
    shards: int = pydantic.Field(default=3, gt=0, description="Primary shards of a new jobs index.")
    replicas: int = pydantic.Field(default=1, ge=0, description="Replica shards of a new jobs index.")
    refresh_interval: Seconds = pydantic.Field(default=1.0)
    bulk_size: int = pydantic.Field(default=500, gt=0, description="Documents per bulk request of the sync consumer.")
    flush_interval: Seconds = pydantic.Field(default=0.2)
    request_timeout: Seconds = pydantic.Field(default=5.0)
    breaker_failures: int = pydantic.Field(default=3, gt=0, description="Errors in a row that open the circuit.")
    breaker_reset: Seconds = pydantic.Field(default=10.0, description="Open circuit tries one probe after this.")
    sync_in_process: bool = pydantic.Field(default=True, description="Run the sync consumer inside the API process.")
    sync_metrics_host: str = pydantic.Field(
        default="127.0.0.1",
        description="Address of the standalone sync worker's /metrics and /healthz (`a4c-controlplane sync`); 0.0.0.0 to be scraped from another machine.",
    )
    sync_metrics_port: common.Port = pydantic.Field(default=9470, description="Port of that listener; 0 picks a free one (logged at start).")
    retry_initial: Seconds = pydantic.Field(
        default=0.1, description="First delay before bulk items that failed transiently (429/5xx) are sent again; doubles, with full jitter."
    )
    retry_max: Seconds = pydantic.Field(default=30.0, description="Longest delay between bulk retries (also while Elasticsearch is down).")
    bulk_timeout: Seconds = pydantic.Field(
        default=60.0, description="Deadline of one bulk or maintenance request (sync, reindex, search check); searches use request_timeout."
    )
    facet_size: int = pydantic.Field(default=20, gt=0, le=1000, description="Buckets per terms facet (status, kind, host, user).")
    total_limit: int = pydantic.Field(
        default=10_000,
        gt=0,
        le=1_000_000,
        description="Totals are exact up to this many matching jobs (Elasticsearch's track_total_hits), then a lower bound.",
    )
    fallback_limit: int = pydantic.Field(
        default=2_000,
        gt=0,
        le=1_000_000,
        description="The PostgreSQL fallback counts, and computes facets over, at most this many of the newest matches: bounded work on the database while Elasticsearch is down.",
    )
    max_terms: int = pydantic.Field(
        default=64,
        gt=0,
        le=1000,
        description="Distinct free-text terms (words and quoted phrases) one query may have; more answer 422 naming q and this limit.",
    )
    max_query_length: int = pydantic.Field(
        default=1_000,
        gt=0,
        le=100_000,
        description="Characters of q (or of the whole search-box text in query) one search may have; more answer 422.",
    )
    statement_timeout: Seconds = pydantic.Field(
        default=5.0,
        description="Server-side deadline of each statement of a search on PostgreSQL; a search that exceeds it answers 503.",
    )
    reindex_batch: int = pydantic.Field(
        default=1000, gt=0, le=50_000, description="Rows per keyset page and bulk request while reindexing (bounds its memory)."
    )
    check_grace: float = pydantic.Field(
        default=30.0,
        ge=0,
        description="search check: a difference on a job whose job-sync message is younger than this (or unpublished) is in flight, not drift.",
    )
    repair_interval: float = pydantic.Field(
        default=60.0,
        ge=0,
        description="The sync worker compares the index with PostgreSQL this often and repairs drift itself "
        "(a message lost on the way, e.g. in a broker restart); searches say degraded while drift stays unrepaired. 0 = never.",
    )
    repair_days: int = pydantic.Field(
        default=7, gt=0, le=3650, description="Days of jobs (by created_at) each periodic check covers; `search check` covers all."
    )
    replay_margin: Seconds = pydantic.Field(
        default=300.0,
        description="Reindex replays rows updated since its backfill began minus this much, covering transactions that were in flight then.",
    )

    @pydantic.model_validator(mode="after")
    def _one_way_to_log_in(self) -> SearchSettings:
        if self.api_key_file and self.password_file:
            raise ValueError("search.api_key_file and search.password_file: give one of them")
        if self.password_file and not (self.elasticsearch_url and urllib.parse.urlsplit(str(self.elasticsearch_url)).username):
            raise ValueError("search.password_file needs a user in search.elasticsearch_url (https://USER@host:9200)")
        for key in ("api_key_file", "password_file"):
            path = getattr(self, key)
            if path and not os.access(path, os.R_OK):
                raise ValueError(f"search.{key}: cannot read {path}")
        return self


class Settings(config.StrictModel):
    """All control-plane settings."""

    runtime: RuntimeSettings = RuntimeSettings()
    http: HttpSettings = HttpSettings()
    database: DatabaseSettings = DatabaseSettings()
    kafka: common.KafkaSettings = common.KafkaSettings()
    auth: AuthSettings = AuthSettings()
    rate_limit: RateLimitSettings = RateLimitSettings()
    concurrency: ConcurrencySettings = ConcurrencySettings()
    watch: WatchSettings = WatchSettings()
    api: ApiSettings = ApiSettings()
    enrolment: EnrolmentSettings = EnrolmentSettings()
    ci: CiSettings = CiSettings()
    placement: PlacementSettings = PlacementSettings()
    relay: RelaySettings = RelaySettings()
    events: EventsSettings = EventsSettings()
    consumers: ConsumersSettings = ConsumersSettings()
    reconciler: ReconcilerSettings = ReconcilerSettings()
    scheduler: SchedulerSettings = SchedulerSettings()
    search: SearchSettings = SearchSettings()
    logging: common.LoggingSettings = common.LoggingSettings()

    @pydantic.model_validator(mode="after")
    def _client_outwaits_search(self) -> Settings:
        # A slow search must be cancelled by the server (reported as a slow search), not given up on as a hung database.
        if self.database.command_timeout <= self.search.statement_timeout:
            raise ValueError(
                f"database.command_timeout ({self.database.command_timeout:g}) must be longer than "
                f"search.statement_timeout ({self.search.statement_timeout:g})"
            )
        return self


def load(path: str | os.PathLike[str] | None = None, /, *, environ: typing.Mapping[str, str] | None = None, **overrides: typing.Any) -> Settings:
    env = os.environ if environ is None else environ
    return config.load(Settings, path or env.get("A4C_CONFIG") or None, environ=env, overrides=overrides)
