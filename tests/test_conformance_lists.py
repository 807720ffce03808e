"""The committed conformance lists stay well-formed: every exclusion has a reason, and no
test is both excluded and in the ratchet list of passing tests."""

import re
from pathlib import Path

CONFORMANCE = Path(__file__).resolve().parents[1] / "conformance"
TEST_ID = re.compile(r"^tests/linen/\w+_test\.py::\w+::\w+")


def entries(name: str) -> list[tuple[str, str]]:
    rows = []
    for line in (CONFORMANCE / name).read_text().splitlines():
        test_id, _, reason = line.partition("#")
        if test_id.strip():
            rows.append((test_id.strip(), reason.strip()))
    return rows


def test_every_excluded_test_has_an_id_and_a_reason():
    rows = entries("excluded.txt")
    assert rows
    for test_id, reason in rows:
        assert TEST_ID.match(test_id), test_id
        assert len(reason) > 20, f"{test_id}: say why a drop-in need not match"
    assert len({t for t, _ in rows}) == len(rows)


def test_passing_list_holds_test_ids_and_no_excluded_test():
    passing = [t for t, _ in entries("passing.txt")]
    assert passing and all(TEST_ID.match(t) for t in passing)
    assert len(set(passing)) == len(passing)
    assert not set(passing) & {t for t, _ in entries("excluded.txt")}
