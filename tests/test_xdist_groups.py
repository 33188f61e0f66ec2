"""The suite's own scheduling: the tests of an xdist group run on one pytest-xdist worker (tests/xdist_groups.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

GROUPED = """
import pytest

@pytest.mark.xdist_group("together")
@pytest.mark.parametrize("i", range(6))
def test_grouped(i):
    pass

@pytest.mark.parametrize("i", range(6))
def test_free(i):
    pass
"""


def test_the_tests_of_an_xdist_group_run_on_one_worker_and_first(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_grouped=GROUPED)
    tests = Path(__file__).parent
    pytester.makeconftest(f"import sys\nsys.path.insert(0, {str(tests)!r})\npytest_plugins = ['xdist_groups']\n")
    done = pytester.runpytest_subprocess("-n", "2", "--dist", "loadgroup", "-v", "-p", "no:cacheprovider")
    done.assert_outcomes(passed=12)
    ran = [(m[1], m[2]) for m in re.finditer(r"\[(gw\d)\] \[ *\d+%\] PASSED \S+::(test_\w+)", done.stdout.str())]
    grouped = {worker for worker, name in ran if name == "test_grouped"}
    assert len(grouped) == 1, f"the group ran on {sorted(grouped)}"
    worker = grouped.pop()
    mine = [name for w, name in ran if w == worker]
    assert mine[:6] == ["test_grouped"] * 6, f"its worker ran others first: {mine}"
