"""pytest-xdist's ``--dist loadgroup`` on pytest 9: the tests of one ``xdist_group`` run on one worker, first.

pytest-xdist 3.8 (the newest release) marks a grouped test by appending ``@group`` to its ID in each worker, and
the scheduler sends the tests whose IDs share a suffix to one worker. It writes that ID to ``item._nodeid``, which
pytest 9 no longer reads (an item's ID is ``item._id``): every group was silently ignored, and the cluster tests
ran two at a time on both workers. This plugin writes the suffix where pytest 9 reads it, and puts the grouped tests
first, so that their worker starts on them (the longest chain) while the other shares out everything else.
"""

from __future__ import annotations

import pytest


def group(item: pytest.Item) -> str | None:
    """The item's xdist group, as pytest-xdist names it: the marks' names, sorted and joined by ``_``."""
    names = {str(m.args[0] if m.args else m.kwargs.get("name", "default")) for m in item.iter_markers("xdist_group")}
    return "_".join(sorted(names)) or None


@pytest.hookimpl(trylast=True)  # after pytest-xdist's own hook, which may have done it (pytest < 9)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not getattr(config.option, "loadgroup", False):  # set in pytest-xdist's workers under --dist loadgroup
        return
    from _pytest.nodeid import NodeId

    for item in items:
        name = group(item)
        if name is not None and not item.nodeid.endswith(f"@{name}"):
            item._id = NodeId.parse(f"{item.nodeid}@{name}")
    items.sort(key=lambda item: group(item) is None)  # the same order in every worker, as pytest-xdist requires
