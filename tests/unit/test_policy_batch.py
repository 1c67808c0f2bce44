"""The embedded engine's fast paths decide exactly what its plain ones do: one generated query per
object for all entry points vs one query per entry point; a batch shared between helper workers
vs one worker; results read from the printed text vs node by node. Policies include one that
reads `data.pushgate` whole (it must not see the generated rule), complete rules that are
undefined, sets of objects, numbers, and objects whose strings hold quotes, backslashes, control
characters and NUL (decided twice or refused).

Adapter tests: real worker processes, no OPA.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pushgate.gate import embedded, policies
from pushgate.gate.embedded import EmbeddedEngine
from pushgate.gate.feed import Feed
from tests.bed import samples

ROOT = Path(__file__).resolve().parents[2]
PUSH = {"pusher": "bob", "role": "write", "ref": "refs/heads/main", "changed_paths": ["a.yaml"],
        "files": {}}

EXTRA = """\
package extra

import data.pushgate

deny_whole contains msg if {
\tctx := pushgate
\tctx.push.role == "write"
\tmsg := concat("", ["writer pushes ", input.kind])
}

deny_all_data contains "sees the generated rule" if {
\tsome k, _ in data.pushgate
\tk == "push_eval"
}

violation := [{"msg": "numbers", "n": [3, 10, 2]}] if input.kind == "Service"

warn_set contains {"msg": m} if {
\tsome k, _ in input.metadata
\tm := concat(":", ["key", k])
}

exception contains ["whole"] if input.metadata.name == "exempt"
"""


@pytest.fixture(scope="module")
def policy_set(tmp_path_factory: pytest.TempPathFactory) -> policies.PolicySet:
    d = tmp_path_factory.mktemp("policies")
    shutil.copytree(ROOT / "policies", d, dirs_exist_ok=True)
    (d / "extra.rego").write_text(EXTRA)
    return policies.load(str(d))


@pytest.fixture
def engine(policy_set: policies.PolicySet) -> Iterator[EmbeddedEngine]:
    e = EmbeddedEngine(policy_set, workers=1)
    yield e
    e.close()


def objects() -> list[dict[str, Any]]:
    import yaml

    base = [yaml.safe_load(text) for text in (
        samples.deployment(), samples.deployment("latest", image="nginx:latest"), samples.service(),
        samples.configmap(), samples.namespace(), samples.configmap("exempt"))]
    hostile = [
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": 'we"b', "namespace": "x"},
         "spec": {"containers": [{"name": "a\\b", "image": "nginx"}], "hostNetwork": True}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "multi"},
         "data": {"f": "line 1\nline 2\t\"quoted\"\n"}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "n"},
         "data": {"k": "dmFsdWU="}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "nul\u0000"}},
    ]
    return base + hostile


def as_dicts(rows: list[list[tuple[str, Any]]]) -> list[dict[str, Any]]:
    return [dict(row) for row in rows]


def test_one_query_per_object_equals_one_per_entry_point(engine: EmbeddedEngine,
                                                         policy_set: policies.PolicySet) -> None:
    objs = objects()
    combined = as_dicts(engine.evaluate(objs, PUSH, 60))
    # a single entry point asked for is queried on its own, never through the generated rule
    single: list[dict[str, Any]] = [{} for _ in objs]
    for ep in policy_set.entrypoints:
        for i, row in enumerate(engine.evaluate(objs, PUSH, 60, [ep])):
            single[i].update(row)
    for i, (a, b) in enumerate(zip(combined, single, strict=True)):
        if "!undecidable" in a or "!undecidable" in b:  # refused either way, for this object
            assert "!undecidable" in a and "!undecidable" in b, (i, a, b)
            continue
        assert a == b, (i, objs[i]["metadata"], a, b)
    clean = combined[0]
    assert clean["extra/deny_whole"] == ["writer pushes Deployment"]
    assert clean["extra/deny_all_data"] == []  # the generated rule is not under data.pushgate
    assert "extra/violation" not in clean and combined[2]["extra/violation"][0]["n"] == [3, 10, 2]


def test_a_batch_shared_by_helpers_equals_one_worker(policy_set: policies.PolicySet) -> None:
    objs = objects() * (embedded.PARALLEL_MIN // len(objects()) + 2)
    one = EmbeddedEngine(policy_set, workers=1)
    many = EmbeddedEngine(policy_set, workers=3)
    try:
        assert len(objs) >= embedded.PARALLEL_MIN
        assert many.evaluate(objs, PUSH, 120) == one.evaluate(objs, PUSH, 120)
        assert many._helpers == []  # helpers exit after the batch
        many.start()  # and a started engine serves the next batch as before
        assert many.evaluate(objs[:3], PUSH, 60) == one.evaluate(objs[:3], PUSH, 60)
    finally:
        one.close()
        many.close()


@pytest.mark.parametrize("workers", [1, 2])
def test_a_feed_filled_while_the_engine_works_equals_the_whole_batch(
        policy_set: policies.PolicySet, workers: int) -> None:
    objs = objects() * (embedded.PARALLEL_MIN // len(objects()) + 2)
    whole = EmbeddedEngine(policy_set, workers=1)
    fed = EmbeddedEngine(policy_set, workers=workers)
    feed = Feed()
    taken_early: list[int] = []

    def produce() -> None:
        for i in range(0, len(objs), 7):  # uneven parts, not a whole chunk each
            feed.put(objs[i:i + 7])
            time.sleep(0.002)
        deadline = time.monotonic() + 60
        while feed._taken == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        taken_early.append(feed._taken)  # what the engine started on before the feed closed
        feed.close()

    try:
        producer = threading.Thread(target=produce)
        producer.start()
        rows = fed.evaluate_feed(feed, PUSH, 120)
        producer.join()
        assert rows == whole.evaluate(objs, PUSH, 120)
        assert taken_early[0] > 0  # the workers did not wait for the feed to close
        assert fed._helpers == []
    finally:
        whole.close()
        fed.close()


def test_a_feed_hands_out_whole_parts_in_order_and_drops_what_was_not_taken_when_cancelled(
        ) -> None:
    feed = Feed()
    feed.put([{"n": i} for i in range(5)])
    assert feed.take(0, 3) == ([{"n": 0}, {"n": 1}, {"n": 2}], False)
    assert feed.take(3, 3) == ([], False)  # open, and not a whole part yet: nothing
    t = time.monotonic()
    feed.wait(3, 3, 0.05)  # waits for a whole part, then gives up
    assert time.monotonic() - t >= 0.04
    feed.put([{"n": 5}])
    assert feed.take(3, 3) == ([{"n": 3}, {"n": 4}, {"n": 5}], False)
    feed.put([{"n": 6}])
    feed.close()
    t = time.monotonic()
    feed.wait(6, 3, 5)  # closed: no waiting
    assert time.monotonic() - t < 1
    assert feed.take(6, 3) == ([{"n": 6}], True)  # closed: the rest
    assert feed.take(7, 3) == ([], True)
    cancelled = Feed()
    cancelled.put([{"n": i} for i in range(5)])
    assert cancelled.take(0, 2) == ([{"n": 0}, {"n": 1}], False)
    assert cancelled.take(2, 4) == ([], False)  # asked, not given: not taken
    cancelled.cancel()
    assert cancelled.closed and cancelled.take(2, 10) == ([], True)


@pytest.mark.parametrize(("text", "arrays", "value"), [
    # the generated rule's rows: arrays by construction, then each rule's value
    ('{"expressions":[[[[]],[],[{}],[null],[true]]]}', 2, [[[]], [], [{}], [None], [True]]),
    ('{"expressions":[[[[]],[],[{}],[null],[true]]]}', 0, None),  # 5 elements: maybe a set
    ('{"expressions":[[]]}', 0, []),
    ('{"expressions":[[[[]],[["x"]]]]}', 2, None),  # a string: its escaping is the node walk's
    ('{"expressions":[[[[3]]]]}', 2, None),  # a number
    ('{"expressions":[[[[[],[]]]]]}', 2, None),  # two elements: maybe a set, whose order we impose
    ('{"expressions":[[[{"a":[]}]]]}', 2, None),  # a key is a string
    ('{"expressions":[[]], "bindings":{}}', 0, None),
    ('undefined', 0, None),
])
def test_only_results_without_strings_numbers_or_order_are_read_from_the_text(
        text: str, arrays: int, value: Any) -> None:
    from pushgate.gate import regoio

    for _ in range(2):  # the second time from the texts already accepted
        got = regoio._plain_text(text, arrays)
        assert (got[0] if got is not None else None) == value
    assert ((text, arrays) in regoio._PLAIN_TEXTS) is (value is not None)
    if got is not None:
        assert got[0] is not regoio._plain_text(text, arrays)[0]  # a fresh value each time


# A worker that answers every request, but one result short for an evaluation.
SHORT = """\
import json, sys
for line in sys.stdin:
    req = json.loads(line)
    results = [[] for _ in req.get("objects", [])][1:]
    print(json.dumps({"ok": True, "results": results}), flush=True)
"""


class ShortEngine(EmbeddedEngine):
    def _spawn(self) -> Any:
        import subprocess
        import sys

        proc = subprocess.Popen([sys.executable, "-c", SHORT], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        p = embedded._Proc(proc)
        self._send(p, {"op": "load"}, "load")
        return p


def test_a_reply_that_leaves_an_object_undecided_is_refused_not_passed(
        policy_set: policies.PolicySet) -> None:
    engine = ShortEngine(policy_set, workers=1)
    try:
        with pytest.raises(policies.EngineUnavailable, match="answered 1 results for 2 objects"):
            engine.evaluate(objects()[:2], PUSH, 30)
        assert engine._proc is None  # what else it owes is not trusted: started afresh
    finally:
        engine.close()
