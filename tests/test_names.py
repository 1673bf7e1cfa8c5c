"""The one name rule: hostile strings never become path components."""

from __future__ import annotations

import argparse

import pytest

from xreal_bench.names import InvalidNameError, check_generator_name, check_name, inside, is_valid_name, name_argument

HOSTILE = ["", ".", "..", "../x", "a/b", "a\\b", "/abs", ".hidden", "-flag", "a b", "x" * 65, "naïve", "a\x00b", "~", "a:b"]
GOOD = ["xreal", "XReal_v2", "cheff-sr", "model.1", "0", "a" * 64]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_are_refused(name):
    assert not is_valid_name(name)
    with pytest.raises(InvalidNameError, match="not a valid name"):
        check_name(name, what="reader id")


@pytest.mark.parametrize("name", GOOD)
def test_good_names_pass_and_stay_inside(tmp_path, name):
    assert check_name(name, what="x") == name
    assert inside(tmp_path, tmp_path / name)


def test_non_strings_are_refused():
    for value in (None, 3, ["a"]):
        assert not is_valid_name(value)


def test_real_is_reserved_for_generators_only():
    assert check_name("real", what="reader id") == "real"
    with pytest.raises(InvalidNameError, match="reserved"):
        check_generator_name("real")


def test_argparse_type_reports_the_rule():
    parser = argparse.ArgumentParser()
    parser.add_argument("--generator", type=name_argument("generator name", generator=True))
    assert parser.parse_args(["--generator", "ok"]).generator == "ok"
    with pytest.raises(SystemExit):
        parser.parse_args(["--generator", "../x"])


def test_inside_follows_links(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    run = tmp_path / "run"
    run.mkdir()
    (run / "link").symlink_to(outside)
    assert not inside(run, run / "link")
    assert not inside(run, run / "..")
    assert inside(run, run / "a" / "..")
