"""Tables for people: aligned columns, one line per row, '-' for nothing; fields one per line."""

from __future__ import annotations

from a4c import output
from a4c.commands import jobs


def test_a_table_aligns_its_columns_and_marks_missing_values():
    rows = [{"name": "dev", "state": "running", "reason": None}, {"name": "a-longer-name", "state": "pending", "reason": "no eligible host"}]
    columns = [("name", lambda r: r["name"]), ("state", lambda r: r["state"]), ("reason", lambda r: r["reason"])]
    assert output.table_lines(rows, columns) == [
        "NAME           STATE    REASON",
        "dev            running  -",
        "a-longer-name  pending  no eligible host",
    ]


def test_a_cell_is_one_line_and_cut_to_its_width():
    assert output.cell("first\nsecond") == "first second"
    long = output.cell("x" * 100)
    assert len(long) == output.MAX_CELL and long.endswith("…")


def test_fields_put_nested_objects_on_one_line_and_indent_multi_line_text():
    lines = output.field_lines({"id": "abc", "env": {"A": "1"}, "error": "line one\nline two", "host_id": None, "shared": False})
    assert lines == [
        "id       abc",
        'env      {"A": "1"}',
        "error    line one",
        "         line two",
        "host_id  -",
        "shared   no",
    ]


def test_sizes_and_times_read_as_people_write_them():
    assert output.size(3 * 1024**3 + 512 * 1024**2) == "3.5G"
    assert output.size(None) == "-"
    assert output.percent(50, 200) == "25%"
    assert output.when("2026-11-25T08:37:23.912800Z") == "2026-11-25 08:37:23"
    assert output.local("2026-07-01T01:00:00Z", "Europe/Berlin") == "2026-07-01 03:00 Europe/Berlin (01:00 UTC)"


def test_query_words_are_joined_keeping_a_phrase_the_shell_unquoted():
    assert jobs.query_text(('status:failed host:h1 "no space"',)) == 'status:failed host:h1 "no space"'
    assert jobs.query_text(("status:failed", "no space")) == 'status:failed "no space"'
    assert jobs.query_text(()) == ""
