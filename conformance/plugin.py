"""pytest plugin for ``make conformance``: Flax 0.12.8's own tests/linen, unmodified, on minilinen.

Loaded with ``-p conformance.plugin`` before any test module is imported, so every
``flax`` import in those files resolves to minilinen through ``install_as_flax()``.
It deselects the tests listed in ``conformance/excluded.txt`` and, on the controlling
process, writes each test's outcome to the JSON file named by ``CONFORMANCE_OUT``.
"""

from __future__ import annotations

import json
import os
import re
import types
from pathlib import Path

import minilinen
from conformance.run import HERE, read_list

minilinen.install_as_flax()

import flax  # noqa: E402  (our proxy, installed just above)
import flax.linen  # noqa: E402
import flax.linen.transforms  # noqa: E402


class FlaxInternal(types.ModuleType):
    """A Flax internal that three test files import at module level.

    It exists only in this harness, so that the rest of those files can run; any use
    raises, and the tests that use it are listed in excluded.txt.
    """

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        raise NotImplementedError(
            f"{self.__name__}.{name}: a Flax internal that minilinen does not provide "
            "(tests using it are listed in conformance/excluded.txt)"
        )


flax.ids = FlaxInternal("flax.ids")
flax.linen.kw_only_dataclasses = FlaxInternal("flax.linen.kw_only_dataclasses")
flax.linen.transforms._HashableProxy = FlaxInternal("flax.linen.transforms._HashableProxy")


EXCLUDED = read_list(HERE / "excluded.txt")
_outcomes: dict[str, dict] = {}


def pytest_collection_modifyitems(config, items):
    keep = [item for item in items if item.nodeid not in EXCLUDED]
    dropped = [item for item in items if item.nodeid in EXCLUDED]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


def _message(report) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None:
        text = crash.message.splitlines()[0] if crash.message else ""
    else:
        text = str(report.longrepr).strip().splitlines()[-1] if report.longrepr else ""
    return re.sub(r"^E\s+", "", text)[:300]  # pytest's "E   " marks an error line


def pytest_collectreport(report):
    if report.failed:
        _outcomes[report.nodeid] = {"outcome": "collect-error", "message": _message(report)}


def pytest_runtest_logreport(report):
    # A test passes when its call passed and no phase (setup, call, teardown) failed.
    entry = _outcomes.setdefault(report.nodeid, {"outcome": "incomplete", "message": ""})
    if report.failed and entry["outcome"] != "failed":
        entry.update(outcome="failed", message=_message(report))
    elif report.skipped and entry["outcome"] == "incomplete":
        entry.update(outcome="skipped", message=_message(report))
    elif report.when == "call" and report.passed and entry["outcome"] == "incomplete":
        entry["outcome"] = "passed"


def pytest_sessionfinish(session):
    out = os.environ.get("CONFORMANCE_OUT")
    if out and not hasattr(session.config, "workerinput"):  # the controller, not an xdist worker
        Path(out).write_text(json.dumps(_outcomes, indent=0, sort_keys=True))
