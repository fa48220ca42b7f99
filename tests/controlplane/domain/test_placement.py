"""Placement picks the eligible host with the least disk used, and says why about every host."""

import dataclasses
import datetime
import decimal
import random

import pytest

from controlplane import settings as cp_settings
from controlplane.domain import placement

NOW = datetime.datetime(2026, 11, 25, 12, 0, tzinfo=datetime.UTC)
GiB = placement.GiB
REQUEST = placement.Request(cpus=2, memory_mb=4096, disk_gb=10)


def host(name, *, used_gib=10, total_gib=100, **changes):
    """A healthy, empty 8-cpu/32-GB host named ``name`` with ``used_gib`` of ``total_gib`` used."""
    base = placement.Host(
        id=f"id-{name}",
        name=name,
        status="active",
        last_heartbeat=NOW - datetime.timedelta(seconds=5),
        capacity_cpus=8,
        capacity_memory_mb=32_768,
        capacity_disk_bytes=total_gib * GiB,
        disk_used_bytes=used_gib * GiB,
    )
    return dataclasses.replace(base, **changes)


def test_the_host_with_the_least_disk_used_wins():
    result = placement.place(REQUEST, [host("a", used_gib=50), host("b", used_gib=20), host("c", used_gib=70)], NOW)
    assert result.host_name == "b"
    assert result.host_id == "id-b"
    assert "least disk used of 3 eligible hosts" in result.reason
    assert [s.host_name for s in result.eligible] == ["b", "a", "c"]
    assert result.rejected == ()


def test_disk_is_compared_as_a_fraction_so_a_big_half_empty_disk_beats_a_small_nearly_full_one():
    small = host("small", used_gib=15, total_gib=20)
    big = host("big", used_gib=500, total_gib=1000)
    assert placement.place(placement.Request(cpus=1, memory_mb=1, disk_gb=1), [small, big], NOW).host_name == "big"


def test_the_request_counts_so_a_big_quota_prefers_the_bigger_disk():
    # Both 10% used now; after adding 50 GiB the small host would be 60% full, the big one 15%.
    small = host("small", used_gib=10, total_gib=100)
    big = host("big", used_gib=100, total_gib=1000)
    result = placement.place(placement.Request(cpus=1, memory_mb=1, disk_gb=50), [small, big], NOW)
    assert result.host_name == "big"
    assert result.eligible[0].disk_fraction == pytest.approx(0.15)


def test_promised_space_counts_as_used():
    # "a" reports less, but 40 GiB are promised to workspaces still being created there.
    a = host("a", used_gib=10, promised_disk_bytes=40 * GiB)
    b = host("b", used_gib=30)
    result = placement.place(REQUEST, [a, b], NOW)
    assert result.host_name == "b"
    assert result.eligible[1].disk_fraction == pytest.approx(0.60)


@pytest.mark.parametrize(
    ("changes", "code", "message"),
    [
        ({"status": "down"}, placement.Code.DOWN, "host is down"),
        ({"status": "draining"}, placement.Code.DRAINING, "host is draining"),
        ({"draining": True}, placement.Code.DRAINING, "host is draining"),
        ({"status": "retired"}, placement.Code.NOT_ACTIVE, "host status is 'retired', not active"),
        ({"cordoned": True}, placement.Code.CORDONED, "host is cordoned"),
        ({"last_heartbeat": None}, placement.Code.NO_HEARTBEAT, "no heartbeat received yet"),
        (
            {"last_heartbeat": NOW - datetime.timedelta(seconds=312)},
            placement.Code.STALE_HEARTBEAT,
            "last heartbeat 5m12s ago (fresh within 60s)",
        ),
        ({"disk_used_bytes": None}, placement.Code.NO_DISK_REPORT, "no disk usage report yet"),
        ({"allocated_cpus": 7}, placement.Code.INSUFFICIENT_CPU, "needs 2 cpus, 1 free of 8"),
        ({"allocated_memory_mb": 30_720}, placement.Code.INSUFFICIENT_MEMORY, "needs 4096 MB memory, 2048 MB free of 32768"),
        (
            {"disk_used_bytes": 85 * GiB, "promised_disk_bytes": 10 * GiB},
            placement.Code.INSUFFICIENT_DISK,
            "needs 10 GiB disk, 5 GiB free of 100 GiB (10 GiB of it promised to workspaces being created)",
        ),
    ],
)
def test_an_ineligible_host_is_skipped_with_a_code_and_a_readable_reason(changes, code, message):
    result = placement.place(REQUEST, [host("bad", used_gib=0, **changes), host("good", used_gib=90)], NOW)
    assert result.host_name == "good"
    assert [(r.host_name, r.code, r.message) for r in result.rejected] == [("bad", code, message)]


def test_a_rejection_carries_the_numbers_behind_the_message():
    result = placement.place(REQUEST, [host("a", allocated_memory_mb=30_000)], NOW)
    assert result.rejected[0].detail == {"need": 4096, "free": 2768}
    stale = placement.place(REQUEST, [host("b", last_heartbeat=NOW - datetime.timedelta(seconds=90))], NOW)
    assert stale.rejected[0].detail == {"age_s": 90.0, "limit_s": 60.0}


def test_the_first_failing_check_is_the_one_recorded():
    result = placement.place(REQUEST, [host("a", status="down", cordoned=True, allocated_memory_mb=32_768)], NOW)
    assert [r.code for r in result.rejected] == [placement.Code.DOWN]


def test_the_heartbeat_window_comes_from_the_settings():
    h = host("a", last_heartbeat=NOW - datetime.timedelta(seconds=100))
    assert placement.place(REQUEST, [h], NOW).host is None
    relaxed = cp_settings.PlacementSettings(heartbeat_fresh=120)
    assert placement.place(REQUEST, [h], NOW, relaxed).host_name == "a"


@pytest.mark.parametrize(("age", "fresh"), [(60, True), (60.001, False)])
def test_a_heartbeat_exactly_at_the_window_is_still_fresh(age, fresh):
    h = host("a", last_heartbeat=NOW - datetime.timedelta(seconds=age))
    assert (placement.place(REQUEST, [h], NOW).host is not None) == fresh


def test_a_heartbeat_from_the_future_counts_as_fresh():
    h = host("a", last_heartbeat=NOW + datetime.timedelta(seconds=30))
    assert placement.place(REQUEST, [h], NOW).host_name == "a"


def test_a_host_exactly_full_still_fits_and_cpu_fractions_add_up_exactly():
    # 0.1 + 0.2 + 0.3 in floats is not 0.6; in millicores it is.
    h = host("a", capacity_cpus=0.9, allocated_cpus=0.1 + 0.2, capacity_memory_mb=4096, used_gib=90)
    result = placement.place(placement.Request(cpus=0.6, memory_mb=4096, disk_gb=10), [h], NOW)
    assert result.host_name == "a"
    assert result.eligible[0].free_cpus == 0
    assert result.eligible[0].free_memory_mb == 0


def test_decimal_capacities_from_numeric_columns_are_accepted():
    h = host("a", capacity_cpus=decimal.Decimal("4.00"), allocated_cpus=decimal.Decimal("2.50"))
    assert placement.place(placement.Request(cpus=1.5, memory_mb=1), [h], NOW).host_name == "a"
    assert placement.place(placement.Request(cpus=1.51, memory_mb=1), [h], NOW).host is None


@pytest.mark.parametrize(
    ("required", "labels", "eligible"),
    [
        ({"gpu": "a100"}, {"gpu": "a100", "zone": "x"}, True),
        ({"gpu": "a100"}, {"gpu": "t4"}, False),
        ({"gpu": "a100"}, {}, False),
        ({}, {"gpu": "t4"}, True),
        ({"ssd": "true"}, {"ssd": True}, False),
        ({"ssd": "True"}, {"ssd": True}, True),
    ],
)
def test_required_labels_must_be_present_with_the_required_value(required, labels, eligible):
    request = placement.Request(cpus=1, memory_mb=1, labels=required)
    result = placement.place(request, [host("a", labels=labels)], NOW)
    assert (result.host is not None) == eligible
    if not eligible:
        assert result.rejected[0].code == placement.Code.MISSING_LABEL
        assert result.rejected[0].message.startswith(f"needs label {next(iter(required))}=")


def test_a_missing_label_message_says_what_the_host_has():
    request = placement.Request(cpus=1, memory_mb=1, labels={"gpu": "a100"})
    result = placement.place(request, [host("a", labels={"gpu": "t4"}), host("b")], NOW)
    assert [r.message for r in result.rejected] == ["needs label gpu=a100, host has gpu=t4", "needs label gpu=a100, host has none"]


def test_ties_on_disk_break_on_free_memory_then_host_id_whatever_the_input_order():
    fleet = [
        host("m", id="3"),
        host("roomy", id="9", allocated_memory_mb=0),
        host("tight", id="1", allocated_memory_mb=8192),
        host("k", id="2"),
    ]
    winners = set()
    for seed in range(20):
        shuffled = fleet[:]
        random.Random(seed).shuffle(shuffled)
        result = placement.place(REQUEST, shuffled, NOW)
        winners.add(result.host_name)
        assert [s.host_name for s in result.eligible] == ["k", "m", "roomy", "tight"]
    # All have 10 GiB used and 32 GB free except "tight"; "k" (id 2) beats "m" (id 3) and "roomy" (id 9).
    assert winners == {"k"}
    assert "tied on disk and memory with m, smaller host id" in result.reason


def test_a_tie_broken_by_memory_says_so():
    result = placement.place(REQUEST, [host("a", allocated_memory_mb=1024), host("b")], NOW)
    assert result.host_name == "b"
    assert result.reason == "b: least disk used of 2 eligible hosts (20.0% after placement); tied on disk with a, more free memory (28672 MB)"


def test_no_eligible_host_gives_a_summary_for_the_pending_job():
    fleet = [
        host("c1", cordoned=True),
        host("c2", cordoned=True),
        host("c3", cordoned=True),
        host("m1", allocated_memory_mb=32_000),
        host("m2", allocated_memory_mb=32_000),
        host("s", last_heartbeat=NOW - datetime.timedelta(hours=1)),
    ]
    result = placement.place(REQUEST, fleet, NOW)
    assert result.host is None and result.host_id is None and result.host_name is None
    assert result.reason == "no eligible host: 3 cordoned, 2 lack memory, 1 has a stale heartbeat"
    assert result.rejection_counts() == {
        placement.Code.CORDONED: 3,
        placement.Code.INSUFFICIENT_MEMORY: 2,
        placement.Code.STALE_HEARTBEAT: 1,
    }
    assert result.eligible == ()


def test_an_empty_fleet_has_no_eligible_host():
    result = placement.place(REQUEST, [], NOW)
    assert result.host is None
    assert result.reason == "no eligible host: no hosts are enrolled"


def test_the_record_is_json_ready_and_names_every_host():
    import json

    result = placement.place(REQUEST, [host("a", cordoned=True), host("b")], NOW)
    record = json.loads(json.dumps(result.to_record()))
    assert record["host_name"] == "b" and record["host_id"] == "id-b"
    assert record["eligible"][0]["host_name"] == "b"
    assert record["rejected"] == [{"host_id": "id-a", "host_name": "a", "code": "cordoned", "message": "host is cordoned", "detail": {}}]
    assert (record["eligible_count"], record["rejected_counts"]) == (1, {"cordoned": 1})


def test_the_record_of_a_large_fleet_is_bounded_but_counts_every_host():
    fleet = [host(f"c{i:02d}", cordoned=True) for i in range(30)] + [host(f"ok{i:02d}", used_gib=i) for i in range(30)]
    result = placement.place(REQUEST, fleet, NOW)
    record = result.to_record(limit=5)
    assert len(record["eligible"]) == 5 and len(record["rejected"]) == 5
    assert record["eligible"][0]["host_name"] == "ok00"
    assert (record["eligible_count"], record["rejected_counts"]) == (30, {"cordoned": 30})
    assert len(result.to_record(limit=None)["rejected"]) == 30


def test_the_reported_disk_size_is_preferred_over_the_enrolled_capacity():
    # Enrolled as 100 GiB, but the disk reports 1000 GiB: 90 GiB used is 9%, not 90%.
    a = host("a", used_gib=90, disk_total_bytes=1000 * GiB)
    b = host("b", used_gib=50)
    assert placement.place(REQUEST, [a, b], NOW).host_name == "a"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"cpus": 0, "memory_mb": 1}, "cpus"),
        ({"cpus": 1, "memory_mb": 0}, "memory_mb"),
        ({"cpus": 1, "memory_mb": 1, "disk_gb": -1}, "disk_gb"),
    ],
)
def test_a_bad_request_names_the_field(kwargs, field):
    with pytest.raises(placement.PlacementInputError) as info:
        placement.Request(**kwargs)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")


def test_naive_times_are_refused_naming_the_field():
    with pytest.raises(placement.PlacementInputError, match=r"^last_heartbeat: must be timezone-aware$"):
        host("a", last_heartbeat=datetime.datetime(2026, 1, 1))
    with pytest.raises(placement.PlacementInputError, match=r"^now: "):
        placement.place(REQUEST, [], datetime.datetime(2026, 1, 1))


def test_the_disk_fraction_before_counts_promised_disk_and_never_exceeds_the_ranking_fraction():
    promised = host("p", used_gib=10, promised_disk_bytes=20 * GiB)
    assert placement.fraction_before(promised) == 0.3
    assert placement.fraction_before(host("none", disk_used_bytes=None)) is None
    assert placement.fraction_before(host("empty", total_gib=0)) is None
    rng = random.Random(7)
    for _ in range(500):
        h = host("r", used_gib=rng.randint(0, 900), total_gib=rng.choice([500, 1000, 2000]), promised_disk_bytes=rng.randint(0, 50) * GiB)
        result = placement.place(placement.Request(cpus=1, memory_mb=1, disk_gb=rng.randint(0, 99)), [h], NOW)
        if result.eligible:
            assert placement.fraction_before(h) <= result.eligible[0].disk_fraction


def test_a_search_up_to_a_bound_judges_only_the_hosts_under_it_and_says_so():
    fleet = [host("a", used_gib=10), host("b", used_gib=20, cordoned=True), host("c", used_gib=30), host("d", used_gib=80, cordoned=True)]
    result = placement.place(REQUEST, fleet, NOW, examined_up_to=0.3)
    assert result.host_name == "a"
    assert [s.host_name for s in result.eligible] == ["a", "c"] and [r.host_name for r in result.rejected] == ["b"]
    assert result.reason == "a: least disk used of 2 eligible hosts among 3 examined (20.0% after placement; the hosts not examined were fuller)"
    record = result.to_record()
    assert record["examined"] == {"hosts": 3, "whole_fleet": False, "disk_fraction_before_max": 0.3}
    assert (record["eligible_count"], record["rejected_counts"]) == (2, {"cordoned": 1})
    whole = placement.place(REQUEST, fleet, NOW).to_record()
    assert whole["examined"] == {"hosts": 4, "whole_fleet": True, "disk_fraction_before_max": None}
    assert whole["reason"] == "a: least disk used of 2 eligible hosts (20.0% after placement)"
