"""The search syntax parses, formats and round-trips; parameters and cursors say what is wrong."""

import base64
import datetime
import json
import urllib.parse

import hypothesis
import pytest
from hypothesis import strategies as st

from controlplane.search.domain import cursors, grammar, query

UTC = datetime.UTC
NOW = datetime.datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def parse(text):
    return grammar.parse(text, now=NOW)


def day(y, m, d):
    return datetime.datetime(y, m, d, tzinfo=UTC)


# --- parsing -------------------------------------------------------------------


def test_the_example_from_the_dashboard_parses_into_every_part():
    q = parse('status:failed host:h12 "no space left" kind:image_build user:alice image:base since:2h created>=2026-01-01 sort:-created_at')
    assert q == query.Query(
        status=("failed",),
        host=("h12",),
        kind=("image_build",),
        user=("alice",),
        image=("base",),
        text=("no space left",),
        created_after=NOW - datetime.timedelta(hours=2),  # tighter than 2026-01-01
        sort=query.Sort("created_at", descending=True),
    )


@pytest.mark.parametrize(
    ("text", "field", "values"),
    [
        ("status:failed status:running", "status", ("failed", "running")),
        ("status:failed,running", "status", ("failed", "running")),
        ("status:running,failed,running", "status", ("failed", "running")),
        ("Status:FAILED", "status", ("failed",)),
        ("kind:image_build,host_cleanup", "kind", ("host_cleanup", "image_build")),
        ("user:Alice", "user", ("alice",)),
        ("host:H12.example.org", "host", ("H12.example.org",)),
        ('host:"h12"', "host", ("h12",)),
        ("workspace:3f2b8c1e-0d9a-4b7e-9a51-2c6f0e8d4a11", "workspace", ("3f2b8c1e-0d9a-4b7e-9a51-2c6f0e8d4a11",)),
        ("-status:succeeded", "not_status", ("succeeded",)),
        ("-user:bob,carol", "not_user", ("bob", "carol")),
    ],
)
def test_filters_are_or_within_a_key_and_normalised(text, field, values):
    assert getattr(parse(text), field) == values


def test_different_keys_and_negations_are_kept_apart():
    q = parse("status:failed -status:cancelled kind:image_build -host:h1")
    assert list(q.filters()) == [
        query.Filter("status", ("failed",), False),
        query.Filter("kind", ("image_build",), False),
        query.Filter("status", ("cancelled",), True),
        query.Filter("host", ("h1",), True),
    ]


@pytest.mark.parametrize(
    ("text", "after", "before"),
    [
        ("created>=2026-01-01", day(2026, 1, 1), None),
        ("created>2026-01-01", day(2026, 1, 2), None),
        ("created<2026-02-01", None, day(2026, 2, 1)),
        ("created<=2026-02-01", None, day(2026, 2, 2)),
        ("created:2026-03-04", day(2026, 3, 4), day(2026, 3, 5)),
        ("created>=2026-01-01T12:30", datetime.datetime(2026, 1, 1, 12, 30, tzinfo=UTC), None),
        ("created>=2026-01-01T12:30:00+02:00", datetime.datetime(2026, 1, 1, 10, 30, tzinfo=UTC), None),
        ("created>2026-01-01T12:30Z", datetime.datetime(2026, 1, 1, 12, 30, 0, 1, tzinfo=UTC), None),
        ("created<=2026-01-01t12:30z", None, datetime.datetime(2026, 1, 1, 12, 30, 0, 1, tzinfo=UTC)),
        ("created>=2026-01-01 created>=2026-01-05 created<2026-03-01 created<2026-02-01", day(2026, 1, 5), day(2026, 2, 1)),
        ("since:2h", NOW - datetime.timedelta(hours=2), None),
        ("since:7d", NOW - datetime.timedelta(days=7), None),
        ("since:1h30m", NOW - datetime.timedelta(minutes=90), None),
        ("since:2w", NOW - datetime.timedelta(weeks=2), None),
    ],
)
def test_created_ranges_are_half_open_in_utc(text, after, before):
    q = parse(text)
    assert (q.created_after, q.created_before) == (after, before)


def test_finished_ranges_work_like_created_ones():
    q = parse("finished>=2026-01-01 finished<2026-01-02")
    assert (q.finished_after, q.finished_before, q.created_after) == (day(2026, 1, 1), day(2026, 1, 2), None)


@pytest.mark.parametrize(
    ("text", "terms"),
    [
        ("disk full", ("disk", "full")),
        ('"no space left" on device', ("no space left", "on", "device")),
        ('"  no   space\tleft "', ("no space left",)),
        (r'"say \"hi\"" "back\\slash"', ('say "hi"', "back\\slash")),
        (r"path\to", ("path\\to",)),
        ('"status:failed" "-v"', ("status:failed", "-v")),
        ("oom oom OOM", ("oom", "OOM")),
        ("exit=1 >=5", ("exit=1", ">=5")),
    ],
)
def test_bare_words_and_quoted_phrases_are_the_free_text(text, terms):
    assert parse(text).text == terms


@pytest.mark.parametrize(
    ("text", "sort"),
    [
        ("", query.Sort("created_at", True)),
        ("sort:finished_at", query.Sort("finished_at", False)),
        ("sort:-updated_at", query.Sort("updated_at", True)),
    ],
)
def test_sort_defaults_to_newest_first(text, sort):
    assert parse(text).sort == sort


def test_an_empty_query_matches_everything_newest_first():
    assert parse("   ") == query.Query()
    assert query.format(query.Query()) == ""


@pytest.mark.parametrize(
    ("text", "token", "position", "says"),
    [
        ("status:failed foo:bar", "foo:bar", 14, "unknown key 'foo'"),
        (
            "status:bogus",
            "status:bogus",
            0,
            "unknown status 'bogus'; expected one of queued, pending, dispatched, running, succeeded, failed, cancelled",
        ),
        ("kind:build", "kind:build", 0, "unknown kind 'build'; expected one of workspace_create"),
        ("status:failed,,running", "status:failed,,running", 0, "an empty status in the list"),
        ("user:-x", "user:-x", 0, "'-x' is not a valid user name"),
        ('error "no space left', '"no space left', 6, "unclosed quote"),
        ('host:"h12', 'host:"h12', 5, "unclosed quote"),
        ('"a"b', '"a"b', 0, "text after the closing quote"),
        ('x"y"', 'x"y"', 0, "a quote inside a word"),
        ('host:h"1"', 'host:h"1"', 0, "a quote inside a value"),
        ("-oops", "-oops", 0, "- excludes a key:value filter; quote the word"),
        ("status:", "status:", 0, "status needs a value"),
        ("status>=failed", "status>=failed", 0, "status takes status:value, not >="),
        ("-created>=2026-01-01", "-created>=2026-01-01", 0, "created cannot be negated"),
        ("created>=yesterday", "created>=yesterday", 0, "expected a date like 2026-01-31"),
        ("created>=2026-13-01", "created>=2026-13-01", 0, "expected a date like"),
        ("created>=20260101", "created>=20260101", 0, "expected a date like"),
        ("created:2026-01-01T10:00", "created:2026-01-01T10:00", 0, "takes a date (a whole day)"),
        ("created<=9999-12-31", "created<=9999-12-31", 0, "out of range"),
        ("since:2 since:2x", "since:2", 0, "expected a duration like 30m"),
        ("since:999999999w", "since:999999999w", 0, "too long"),
        ("sort:name", "sort:name", 0, "unknown field 'name'; expected one of created_at, finished_at, updated_at"),
        ("sort:created_at sort:-finished_at", "sort:-finished_at", 16, "sort is given twice"),
        ('""', '""', 0, "empty quotes"),
    ],
)
def test_bad_input_names_the_token_and_its_position(text, token, position, says):
    with pytest.raises(query.QueryError) as info:
        parse(text)
    assert (info.value.token, info.value.position) == (token, position)
    assert says in str(info.value)
    assert str(info.value).startswith(f"{token!r} at position {position}: ")


@pytest.mark.parametrize(
    ("text", "token", "position"),
    [
        ("created>=2026-02-01 created<2026-01-01", "created<2026-01-01", 20),
        ("created<2026-01-01 status:failed created>=2026-02-01", "created>=2026-02-01", 33),
        ("since:1h created<2026-11-25T10:30Z", "created<2026-11-25T10:30Z", 9),
    ],
)
def test_an_empty_range_is_an_error_naming_the_condition_that_emptied_it(text, token, position):
    with pytest.raises(query.QueryError, match=r"created: the range .* is empty") as info:
        parse(text)
    assert (info.value.token, info.value.position) == (token, position)


def test_an_overlong_query_is_refused_naming_the_limit():
    with pytest.raises(query.QueryError, match=r"^the query is 2000 characters long; at most 1000 are allowed$") as info:
        parse("x " * 1000)
    assert info.value.position == 1000


def test_too_many_terms_are_refused_at_the_first_one_over_the_limit():
    text = "status:failed " + " ".join(f"w{n}" for n in range(70))
    with pytest.raises(query.QueryError) as info:
        grammar.parse(text, now=NOW, limits=query.Limits(max_terms=64))
    assert str(info.value) == "'w64' at position 260: 70 terms (words and quoted phrases); at most 64 are allowed"
    assert (info.value.token, info.value.position) == ("w64", 260)


def test_terms_are_counted_once_however_often_they_are_repeated():
    q = grammar.parse('a "a" b  "b   " ' * 100, now=NOW, limits=query.Limits(max_terms=2, max_length=10_000))
    assert q.text == ("a", "b")


@pytest.mark.parametrize(
    ("params", "limits", "says"),
    [
        (
            {"q": " ".join(f"w{n}" for n in range(1550))},
            query.Limits(max_length=10_000),
            "q: 1550 terms (words and quoted phrases); at most 64 are allowed",
        ),
        ({"q": ["a b", '"c d" e']}, query.Limits(max_terms=3), "q: 4 terms (words and quoted phrases); at most 3 are allowed"),
        ({"q": "x" * 1001}, query.Limits(), "q: 1001 characters; at most 1000 are allowed"),
        ({"q": ["x" * 600, "y" * 600]}, query.Limits(), "q: 1200 characters; at most 1000 are allowed"),
    ],
)
def test_q_over_its_budget_is_an_error_naming_q_and_the_limit(params, limits, says):
    with pytest.raises(query.QueryError) as info:
        grammar.from_params(params, now=NOW, limits=limits)
    assert (info.value.param, str(info.value)) == ("q", says)


def test_a_query_built_in_code_is_checked_against_the_same_limits():
    query.check_limits(query.Query(text=("a", "b")), query.Limits(max_terms=2, max_length=3))
    with pytest.raises(query.QueryError, match=r"^q: 3 terms .*at most 2 are allowed$"):
        query.check_limits(query.Query(text=("a", "b", "c")), query.Limits(max_terms=2))
    with pytest.raises(query.QueryError, match=r"^q: 4 characters; at most 3 are allowed$"):
        query.check_limits(query.Query(text=("ab", "c")), query.Limits(max_length=3))


def test_the_default_limits_are_the_settings_defaults():
    from controlplane import settings

    search = settings.SearchSettings()
    assert query.Limits() == query.Limits(max_terms=search.max_terms, max_length=search.max_query_length)


def test_a_control_character_in_the_text_is_refused():
    with pytest.raises(query.QueryError, match="control character"):
        parse('"nul\x00byte"')


def test_parse_needs_an_aware_now():
    with pytest.raises(ValueError, match="timezone-aware"):
        grammar.parse("since:2h", now=datetime.datetime(2026, 1, 1))


# --- formatting ------------------------------------------------------------------


def test_format_is_canonical():
    q = parse('"disk full" status:running,failed -kind:host_cleanup finished<2026-02-01T06:00Z created>=2026-01-01 sort:created_at host:h1')
    assert query.format(q) == (
        'status:failed,running host:h1 -kind:host_cleanup created>=2026-01-01 finished<2026-02-01T06:00:00Z "disk full" sort:created_at'
    )


@pytest.mark.parametrize(
    ("term", "spelled"),
    [
        ("disk", "disk"),
        ("no space", '"no space"'),
        ("-v", '"-v"'),
        ("a:b", '"a:b"'),
        ('say "hi"', r'"say \"hi\""'),
        ("c:\\", r'"c:\\"'),
        ("x\\y", "x\\y"),
    ],
)
def test_format_quotes_only_what_would_not_read_back_as_text(term, spelled):
    assert query.format(query.Query(text=(term,))) == spelled
    assert parse(spelled).text == (term,)


def test_a_query_built_in_code_is_normalised_and_validated():
    q = query.Query(
        status=["running", "FAILED", "running"],
        text=[" a  b ", "", "a b"],
        created_after=datetime.datetime(2026, 1, 1, 2, tzinfo=datetime.timezone(datetime.timedelta(hours=2))),
    )
    assert (q.status, q.text, q.created_after) == (("failed", "running"), ("a b",), day(2026, 1, 1))
    assert query.Query(user="alice").user == ("alice",)
    with pytest.raises(query.QueryError) as info:
        query.Query(not_kind=("nope",))
    assert info.value.param == "not_kind"
    assert str(info.value).startswith("not_kind: unknown kind 'nope'")
    with pytest.raises(query.QueryError, match=r"^created_before: needs a time zone$"):
        query.Query(created_before=datetime.datetime(2026, 1, 1))


# --- HTTP parameters ----------------------------------------------------------------


def test_parameters_carry_repeated_values_free_text_and_times():
    q = parse('status:failed,running -user:bob "no space left" disk created>=2026-01-01 finished<2026-01-02T03:04:05.5Z sort:-finished_at')
    assert q.to_params() == [
        ("status", "failed"),
        ("status", "running"),
        ("not_user", "bob"),
        ("created_after", "2026-01-01"),
        ("finished_before", "2026-01-02T03:04:05.500000Z"),
        ("q", '"no space left" disk'),
        ("sort", "-finished_at"),
    ]
    assert grammar.from_params(q.to_params(), now=NOW) == q


def test_parameters_come_from_a_query_string_a_dict_of_lists_or_pairs():
    expected = query.Query(status=("failed", "running"), host=("h1",), text=("status:x", "-v", "two words"))
    string = 'status=failed&status=running&host=h1&q=status:x+-v+"two+words"&cursor=abc&limit=50'
    pairs = urllib.parse.parse_qsl(string)
    assert grammar.from_params(pairs, now=NOW) == expected
    assert grammar.from_params({"status": ["failed", "running"], "host": "h1", "q": 'status:x -v "two words"'}, now=NOW) == expected
    assert grammar.from_params({"status": "failed,running", "host": "h1", "q": ["status:x -v", '"two words"']}, now=NOW) == expected


def test_repeated_time_parameters_combine_to_the_tightest_range():
    params = {"created_after": ["2026-01-01", "2026-01-05"], "created_before": ["2026-03-01", "2026-02-01"], "since": "365d"}
    q = grammar.from_params(params, now=NOW)
    assert (q.created_after, q.created_before) == (day(2026, 1, 5), day(2026, 2, 1))


def test_parameters_accept_since_relative_to_now():
    assert grammar.from_params({"since": "30m"}, now=NOW).created_after == NOW - datetime.timedelta(minutes=30)


@pytest.mark.parametrize(
    ("params", "param", "says"),
    [
        ({"status": "bogus"}, "status", "status: unknown status 'bogus'"),
        ({"not_kind": "x"}, "not_kind", "not_kind: unknown kind 'x'"),
        ({"colour": "red"}, "colour", "colour: unknown parameter; expected one of status,"),
        ({"created_after": "last week"}, "created_after", "created_after: expected a date like"),
        ({"q": '"open'}, "q", "q: '\"open' at position 0: unclosed quote"),
        ({"q": 'a"b"'}, "q", "q: a quote inside the word"),
        ({"sort": "-name"}, "sort", "sort: unknown field 'name'"),
        ({"sort": ["created_at", "updated_at"]}, "sort", "sort: sort is given twice"),
        ({"since": "forever"}, "since", "since: expected a duration"),
        ({"user": ""}, "user", "user: an empty user in the list"),
    ],
)
def test_bad_parameters_are_named(params, param, says):
    with pytest.raises(query.QueryError) as info:
        grammar.from_params(params, now=NOW)
    assert info.value.param == param
    assert str(info.value).startswith(says)


def test_ignored_parameters_can_be_chosen():
    with pytest.raises(query.QueryError, match=r"^limit: unknown parameter"):
        grammar.from_params({"limit": "5"}, now=NOW, ignore=())


# --- cursors ---------------------------------------------------------------------


def test_a_cursor_round_trips_times_and_the_job_id():
    values = (datetime.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC), "0b7f6c2e-job")
    cursor = cursors.encode(values, sort=query.Sort())
    assert "=" not in cursor and "+" not in cursor and "/" not in cursor
    assert cursors.decode(cursor, sort=query.Sort()) == values
    assert cursors.decode(cursors.encode([None, 17, 1.5, True, "x"])) == (None, 17, 1.5, True, "x")


def test_a_cursor_for_another_sort_is_refused():
    cursor = cursors.encode([NOW, "j"], sort=query.Sort("created_at", True))
    with pytest.raises(query.CursorError, match=r"^cursor: made for sort -created_at, not finished_at; start again"):
        cursors.decode(cursor, sort=query.Sort("finished_at", False))


def _tampered(cursor):
    body = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    body["k"][1] = "another-job"
    return base64.urlsafe_b64encode(json.dumps(body).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "make",
    [
        lambda c: _tampered(c),
        lambda c: c[:-6],
        lambda c: c + "AAAA",
        lambda c: "not a cursor",
        lambda c: base64.urlsafe_b64encode(b"[1, 2]").decode(),
        lambda c: "",
        lambda c: "x" * 5000,
    ],
)
def test_a_tampered_or_foreign_cursor_is_a_clear_error(make):
    cursor = cursors.encode([NOW, "job-1"], sort=query.Sort())
    with pytest.raises(query.CursorError) as info:
        cursors.decode(make(cursor), sort=query.Sort())
    assert info.value.param == "cursor"
    assert "not a cursor this API returned" in str(info.value)


def test_a_cursor_refuses_values_it_cannot_carry():
    with pytest.raises(TypeError):
        cursors.encode([object()])
    with pytest.raises(TypeError, match="timezone-aware"):
        cursors.encode([datetime.datetime(2026, 1, 1)])


# --- properties --------------------------------------------------------------------

names = {
    "user": st.from_regex(r"[a-z][a-z0-9_.-]{0,10}", fullmatch=True),
    "image": st.from_regex(r"[a-z0-9][a-z0-9._-]{0,10}", fullmatch=True),
    "workspace": st.from_regex(r"[a-z0-9][a-z0-9-]{0,10}", fullmatch=True),
    "host": st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,10}", fullmatch=True),
    "status": st.sampled_from(query.STATUSES),
    "kind": st.sampled_from(query.KINDS),
}
times = st.datetimes(min_value=datetime.datetime(1970, 1, 1), max_value=datetime.datetime(2200, 1, 1), timezones=st.just(UTC))
terms = st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=12)


@st.composite
def queries(draw):
    fields = {}
    for key, values in names.items():
        fields[key] = tuple(draw(st.lists(values, max_size=3)))
        fields[f"not_{key}"] = tuple(draw(st.lists(values, max_size=2)))
    for key in query.TIME_KEYS:
        bounds = sorted(draw(st.lists(times, min_size=0, max_size=2, unique=True)))
        if len(bounds) == 2:
            fields[f"{key}_after"], fields[f"{key}_before"] = bounds
        elif bounds:
            fields[f"{key}_{draw(st.sampled_from(['after', 'before']))}"] = bounds[0]
    fields["text"] = tuple(draw(st.lists(terms, max_size=4)))
    fields["sort"] = query.Sort(draw(st.sampled_from(query.SORT_FIELDS)), draw(st.booleans()))
    return query.Query(**fields)


@hypothesis.settings(max_examples=300, deadline=None)
@hypothesis.given(queries())
def test_parse_reads_back_what_format_writes(q):
    assert grammar.parse(query.format(q), now=NOW) == q


@hypothesis.settings(max_examples=300, deadline=None)
@hypothesis.given(queries())
def test_from_params_reads_back_what_to_params_writes(q):
    assert grammar.from_params(q.to_params(), now=NOW) == q
    encoded = urllib.parse.urlencode(q.to_params())
    assert grammar.from_params(urllib.parse.parse_qsl(encoded, keep_blank_values=True), now=NOW) == q


@hypothesis.settings(max_examples=500, deadline=None)
@hypothesis.given(
    st.text(max_size=60)
    | st.lists(st.sampled_from(["status:", "-", '"', "\\", ",", "created>=", "2026-01-01", "since:", "sort:", " ", "x", "failed"]), max_size=12).map(
        "".join
    )
)
def test_any_text_either_parses_or_raises_a_query_error(text):
    try:
        q = grammar.parse(text, now=NOW)
    except query.QueryError as exc:
        assert exc.position is not None and 0 <= exc.position <= len(text)
        assert exc.token is None or exc.token in text
    else:
        assert grammar.parse(query.format(q), now=NOW) == q


cursor_values = st.lists(st.none() | st.text(max_size=20) | st.integers() | st.booleans() | times, max_size=3)


@hypothesis.settings(max_examples=200, deadline=None)
@hypothesis.given(cursor_values, st.sampled_from(query.SORT_FIELDS), st.booleans())
def test_a_cursor_decodes_to_what_was_encoded(values, field, descending):
    sort = query.Sort(field, descending)
    assert cursors.decode(cursors.encode(values, sort=sort), sort=sort) == tuple(values)


@hypothesis.settings(max_examples=200, deadline=None)
@hypothesis.given(cursor_values, st.data())
def test_an_edited_cursor_is_refused_or_unchanged(values, data):
    cursor = cursors.encode(values)
    i = data.draw(st.integers(0, len(cursor) - 1))
    replacement = data.draw(st.sampled_from("ABCxyz019-_"))
    edited = cursor[:i] + replacement + cursor[i + 1 :]
    try:
        assert cursors.decode(edited) == tuple(values)  # only unused trailing bits changed
    except query.CursorError:
        pass
