"""Ordinals in messages people read: 1st, 2nd, 3rd, then th — except the teens."""

import pytest

from shared.domain import words


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (1, "1st"),
        (2, "2nd"),
        (3, "3rd"),
        (4, "4th"),
        (10, "10th"),
        (11, "11th"),
        (12, "12th"),
        (13, "13th"),
        (21, "21st"),
        (22, "22nd"),
        (23, "23rd"),
        (100, "100th"),
        (101, "101st"),
        (111, "111th"),
        (112, "112th"),
        (1013, "1013th"),
    ],
)
def test_an_ordinal_takes_the_suffix_english_gives_it(n, text):
    assert words.ordinal(n) == text
