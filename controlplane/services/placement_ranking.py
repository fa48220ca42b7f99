"""The ranking statement of controlplane/services/placement.py: judge the least used hosts in SQL, as the pure decision would.

It mirrors controlplane/domain/placement.py check by check and ranks the
same way; how far it searches is docs/decisions/0014-placement-examines-the-least-used-hosts.md.
tests/controlplane/api/test_placement_sql.py holds it to the pure decision.
"""

from __future__ import annotations

import sqlalchemy as sa

# Hosts shown in a placement record: the top of the ranking, and the first rejected ones.
RECORD_HOSTS = 20

# A host's disk used before placement (domain.placement.fraction_before), the
# key of migration 0014's index host_allocations_disk_fraction_before: written
# exactly as there, so the planner reads the hosts in this order from the index.
FRACTION_BEFORE = "(a.disk_used_bytes + a.promised_gb * 1073741824)::float8 / NULLIF(GREATEST(a.disk_total_bytes, 0), 0)"
# How many hosts, in that order, are judged first to find the bound of the search.
PROBE_HOSTS = 2 * RECORD_HOSTS

# Mirrors domain.placement._judge check by check (see the module docstring);
# labels are not part of service requests, so that check never rejects here.
# Narrow on purpose: every host judged passes through here; only the few shown are read in full.
_JUDGE = """
        SELECT h.id, h.name,
               CASE
                   WHEN h.status = 'down' THEN 'down'
                   WHEN h.draining THEN 'draining'
                   WHEN h.status <> 'active' THEN 'not_active'
                   WHEN h.cordoned THEN 'cordoned'
                   WHEN h.last_heartbeat_at IS NULL THEN 'no_heartbeat'
                   WHEN h.last_heartbeat_at < :stale_before THEN 'stale_heartbeat'
                   WHEN h.disk_used_bytes IS NULL THEN 'no_disk_report'
                   WHEN h.capacity_cpus - coalesce(a.cpus, 0) < :need_cpus THEN 'insufficient_cpu'
                   WHEN h.capacity_memory_mb - coalesce(a.memory_mb, 0) < :memory_mb THEN 'insufficient_memory'
                   WHEN t.total <= 0 OR t.total - h.disk_used_bytes - coalesce(a.promised_gb, 0) * :gib < :need_bytes THEN 'insufficient_disk'
               END AS code,
               (h.disk_used_bytes + coalesce(a.promised_gb, 0) * :gib + :need_bytes)::float8 / NULLIF(t.total, 0) AS fraction,
               h.capacity_memory_mb - coalesce(a.memory_mb, 0) AS free_memory
        FROM {source}
        CROSS JOIN LATERAL (
            SELECT CASE WHEN h.disk_total_bytes <> 0 THEN h.disk_total_bytes ELSE h.capacity_disk_bytes END AS total
        ) t"""
# The search (docs/decisions/0014-placement-examines-the-least-used-hosts.md):
# judge the first PROBE_HOSTS hosts in order of disk used before placement; the
# RECORD_HOSTS-th best fraction among the eligible ones bounds the search, since
# a host whose fraction before exceeds it cannot rank among the first
# RECORD_HOSTS (its fraction after is at least its fraction before). Then judge
# every host up to that bound, read from the index. Without a bound (fewer
# eligible hosts than that among the probe) judge the whole fleet, so that a
# pending reason counts every host. (The BETWEEN makes the planner expect a
# narrow range of the index, not a third of the table.)
# Ties break on the host id as a uuid: its byte order is the order of its
# lower-case text, which the pure decision sorts by, and needs no cast per row.
_RANKING = (
    """
    WITH probe AS MATERIALIZED ("""  # noqa: S608 - built from constants only; the values are parameters
    + _JUDGE.format(
        source=f"(SELECT * FROM host_allocations a WHERE {FRACTION_BEFORE} IS NOT NULL ORDER BY {FRACTION_BEFORE} LIMIT {PROBE_HOSTS}) a"  # noqa: S608 - built from constants only; the values are parameters
        " JOIN hosts h ON h.id = a.host_id"
    )
    + """
    ), bound AS (
        SELECT fraction FROM probe WHERE code IS NULL ORDER BY fraction LIMIT 1 OFFSET {last}
    ), judged AS MATERIALIZED ("""
    + _JUDGE.format(source="host_allocations a JOIN hosts h ON h.id = a.host_id")
    + f"""
        WHERE {FRACTION_BEFORE} BETWEEN '-Infinity'::float8 AND (SELECT fraction FROM bound)
        UNION ALL"""  # noqa: S608 - built from constants only; the values are parameters
    + _JUDGE.format(source="hosts h LEFT JOIN host_allocations a ON a.host_id = h.id")
    + """
        WHERE NOT EXISTS (SELECT FROM bound)
    ), counts AS (
        SELECT code, count(*) AS code_count FROM judged GROUP BY code
    ), top AS (
        SELECT id, code, fraction, free_memory FROM judged WHERE code IS NULL ORDER BY fraction, free_memory DESC, id LIMIT {shown}
    ), shown AS (
        (SELECT id, code FROM top)
        UNION
        (SELECT id, code FROM judged WHERE code IS NOT NULL ORDER BY name COLLATE "C", id LIMIT {shown})
        UNION
        (SELECT DISTINCT ON (code) id, code FROM judged WHERE code IS NOT NULL ORDER BY code, name COLLATE "C", id)
    ){claim_cte}
    -- The top of the ranking, the first rejected hosts by name, and one host of every code (so each count arrives).
    -- Each shown host is read by its key (OFFSET 0 keeps the planner from hashing the whole fleet to join a few dozen).
    SELECT h.id, h.name, h.status::text AS status, h.cordoned, h.draining, h.labels,
           h.capacity_cpus, h.capacity_memory_mb, h.capacity_disk_bytes, h.disk_total_bytes, h.disk_used_bytes, h.last_heartbeat_at,
           coalesce(a.cpus, 0) AS alloc_cpus, coalesce(a.memory_mb, 0) AS alloc_memory_mb,
           coalesce(a.promised_gb, 0) * :gib AS promised, shown.code, counts.code_count,
           (SELECT fraction FROM bound) AS up_to{claim_column}
    FROM shown
    JOIN counts ON counts.code IS NOT DISTINCT FROM shown.code
    CROSS JOIN LATERAL (SELECT * FROM hosts WHERE hosts.id = shown.id OFFSET 0) h
    LEFT JOIN LATERAL (SELECT * FROM host_allocations WHERE host_allocations.host_id = shown.id OFFSET 0) a ON true
"""
)
CANDIDATES = sa.text(_RANKING.format(claim_cte="", claim_column="", shown=RECORD_HOSTS, last=RECORD_HOSTS - 1))
# The same, and a create's claim in the same round trip (migration 0012's
# a4c_claim_host: the first of the ranked hosts, in ranking order, whose row
# nobody else holds and that still has room; NULL, holding nothing, if none).
CANDIDATES_AND_CLAIM = sa.text(
    _RANKING.format(
        claim_cte=""", claim AS MATERIALIZED (
        SELECT a4c_claim_host(ARRAY(SELECT id FROM top ORDER BY fraction, free_memory DESC, id), :need_cpus, :memory_mb, :need_bytes) AS host
    )""",
        claim_column=", (SELECT host FROM claim) AS claimed",
        shown=RECORD_HOSTS,
        last=RECORD_HOSTS - 1,
    )
)
