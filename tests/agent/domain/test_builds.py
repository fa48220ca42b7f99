"""Reading Docker's build stream: output lines, the image id, and the real error of a failure."""

from __future__ import annotations

import typing

import pytest

from agent.domain import builds as b

FAILED_RUN: list[dict[str, typing.Any]] = [
    {"stream": "Step 1/2 : FROM base"},
    {"stream": "\n"},
    {"stream": " ---> 384d8b9bf79f\n"},
    {"stream": "Step 2/2 : RUN echo 'boom: widget missing' >&2 && exit 3"},
    {"stream": "\n"},
    {"stream": " ---> Running in 8b2b1294eba9\n"},
    {"stream": "\x1b[91mboom: widget missing\n\x1b[0m"},
    {"stream": "Removing intermediate container 8b2b1294eba9\n"},
    {
        "errorDetail": {"code": 3, "message": "The command '/bin/sh -c exit 3' returned a non-zero code: 3"},
        "error": "The command '/bin/sh -c exit 3' returned a non-zero code: 3",
    },
]


def test_a_successful_stream_yields_clean_lines_and_the_image_id() -> None:
    stream = b.BuildStream()
    lines = []
    chunks: list[dict[str, typing.Any]] = [
        {"stream": "Step 1/1 : FROM base"},
        {"stream": "\n"},
        {"stream": "hel"},
        {"stream": "lo\n"},
        {"aux": {"ID": "sha256:abc"}},
    ]
    for chunk in chunks:
        lines += stream.feed(chunk)
    lines += stream.flush()
    assert lines == ["Step 1/1 : FROM base", "hello"]
    assert stream.image_id == "sha256:abc" and stream.error is None


def test_a_failed_run_step_reports_dockers_error_with_the_steps_last_output() -> None:
    stream = b.BuildStream()
    for chunk in FAILED_RUN:
        stream.feed(chunk)
    assert stream.error == "The command '/bin/sh -c exit 3' returned a non-zero code: 3"
    assert "boom: widget missing" in stream.lines
    text = b.failure_text(stream.lines, stream.error)
    assert text == "The command '/bin/sh -c exit 3' returned a non-zero code: 3 (last output: boom: widget missing)"
    assert "build failed" not in text


@pytest.mark.parametrize(
    ("lines", "error", "expected"),
    [
        (["Step 2/3 : COPY missing.txt /"], "COPY failed: file not found", "COPY failed: file not found"),
        ([], "dockerfile parse error line 1: unknown instruction: FRM", "dockerfile parse error line 1: unknown instruction: FRM"),
        (["Step 1/1 : RUN x", "x: not found"], "x: not found", "x: not found"),
        (["Step 1/1 : RUN make", "cc: error: nope.c"], None, "cc: error: nope.c"),
        ([], None, "the build stopped without an error message"),
    ],
    ids=["step-printed-nothing", "parse-error", "output-is-the-error", "no-error-chunk", "nothing-at-all"],
)
def test_failure_text_is_the_real_cause(lines: list[str], error: str | None, expected: str) -> None:
    assert b.failure_text(lines, error) == expected


def test_a_partial_line_before_an_error_is_kept() -> None:
    stream = b.BuildStream()
    stream.feed({"stream": "fatal: no newline at the end"})
    stream.feed({"error": "failed"})
    assert stream.lines == ["fatal: no newline at the end"]


@pytest.mark.parametrize(("path", "norm"), [(".", "."), ("app", "app"), ("app/../web", "web"), ("", "."), ("a/./b/", "a/b")])
def test_context_paths_inside_the_checkout_are_normalised(path: str, norm: str) -> None:
    assert b.safe_subpath("context.git_path", path) == norm


@pytest.mark.parametrize("path", ["/etc", "..", "../x", "a/../../x"])
def test_context_paths_escaping_the_checkout_are_refused_naming_the_field(path: str) -> None:
    with pytest.raises(b.ContextError, match=r"context.git_path"):
        b.safe_subpath("context.git_path", path)


@pytest.mark.parametrize("ref", ["main", "v1.2.3", "release/2024", "HEAD", "0123abcd"])
def test_ordinary_git_refs_pass(ref: str) -> None:
    assert b.safe_ref(ref) == ref


@pytest.mark.parametrize("ref", ["", "--upload-pack=touch /tmp/x", "-b", "a b", "x\0y"])
def test_refs_that_could_pass_for_options_are_refused(ref: str) -> None:
    with pytest.raises(b.ContextError, match=r"context.git_ref"):
        b.safe_ref(ref)
