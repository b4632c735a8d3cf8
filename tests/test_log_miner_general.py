"""The log-pattern miner's general rules (issue 14): token classes by shape, variables of unseen shapes found by the
values at their position, events whose fixed words sit between variables kept apart, loghub-2.0's template
convention, incremental ids. Every line here is invented; none comes from a dataset.
"""

from __future__ import annotations

import io
import json
import random
import time
from pathlib import Path
from typing import Any

import pytest

from telemetry.learning.logpatterns import WILDCARD, LogPatternMiner, MinerConfig, mine_file, tokenize
from telemetry.learning.logpatterns import miner as miner_module
from tests.conftest import ServerFactory, call, connect

# Invented words of no familiar shape: no digit, no dot, no separator.
ODD_WORDS = ("quorvex", "blindle", "tarsk", "omupla", "zeffrin", "krell", "vantu", "ossimar", "pludge", "yarrowen")


def ids_of(miner: LogPatternMiner, lines: list[str]) -> list[int]:
    return [miner.resolve(pid) for pid in [miner.add(line).pattern_id for line in lines]]


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            "count 42 signed -7 decimal 3.25 plus +12",
            ["count", "<*>", "signed", "<*>", "decimal", "<*>", "plus", "<*>"],
        ),
        ("glued units 15ms 250us 3.5s 12px", ["glued", "units", "<*>", "<*>", "<*>", "<*>"]),
        ("peer 172.16.4.9 and 172.16.4.9:8443", ["peer", "<*>", "and", "<*>"]),
        ("ipv6 fe80::1ff:fe23:4567:890a up", ["ipv6", "<*>", "up"]),
        ("mac 0a:1b:2c:3d:4e:5f seen", ["mac", "<*>", "seen"]),
        ("at 2031-02-03T04:05:06.789Z or 03/02/2031 04:05:06", ["at", "<*>", "or", "<*>", "<*>"]),
        ("trace 3f2b8c1e-9a7d-4e6f-b5c4-0d1e2f3a4b5c done", ["trace", "<*>", "done"]),
        (
            "addr 0x7ffd4a2b and 0XFF and deadbeefcafe01 mask ffffffff",
            ["addr", "<*>", "and", "<*>", "and", "<*>", "mask", "<*>"],
        ),
        ("token a8Kx92Lm0Q issued", ["token", "<*>", "issued"]),
        ("ids job_7_0042 run-12 x_99_y", ["ids", "<*>", "<*>", "<*>"]),
        ("files /srv/data/a.txt C:\\temp\\b.log ~/notes conf/app/main.yaml", ["files", "<*>", "<*>", "<*>", "<*>"]),
        ("fetch s3a://bucket/key and https://example.net/x?y=1", ["fetch", "s3a://<*>", "and", "https://<*>"]),
        ("resolve db-primary.internal and cache.example.org", ["resolve", "<*>", "and", "<*>"]),
        (
            "loaded net.acme.billing.InvoiceJob via $Proxy.a.b_c, e.g. from app.cfg",
            ["loaded", "<*>", "via", "<*>,", "e.g.", "from", "app.cfg"],
        ),
        (
            "caught java.io.IOException and app.db.ConnectionError from net.acme.Pool",
            ["caught", "java.io.IOException", "and", "app.db.ConnectionError", "from", "<*>"],
        ),
        ("set depth=12 mode=fast ratio:0.5", ["set", "depth=<*>", "mode=fast", "ratio:<*>"]),
        ('said "hello there world" and "single"', ["said", '"<*>"', "and", '"single"']),
        ("freed 9.2 KB, kept 17 MiB", ["freed", "<*>,", "kept", "<*>"]),
        (
            "took 15 ms and 3 seconds for 2048 bytes",
            ["took", "<*>", "ms", "and", "<*>", "seconds", "for", "<*>", "bytes"],
        ),
        (
            "task 3.0 in (stage 4), [worker 7]: done.",
            ["task", "<*>", "in", "(stage", "<*>),", "[worker", "<*>]:", "done."],
        ),
        ("fields a=1,b=two,c=3 call(7,8)", ["fields", "a=<*>,b=two,c=<*>", "call(<*>,<*>)"]),
        ("names ssh2 log4j utf8 sha256 v2 stay", ["names", "ssh2", "log4j", "utf8", "sha256", "v2", "stay"]),
        ("ran Mon Dec 5 10:15:30 2031 by cron", ["ran", "<*>", "<*>", "<*>", "<*>", "<*>", "by", "cron"]),
        ("you may run it on Sun", ["you", "may", "run", "it", "on", "Sun"]),
        ("plain words stay", ["plain", "words", "stay"]),
    ],
)
def test_each_token_class_is_masked_by_its_shape(message: str, expected: list[str]) -> None:
    assert tokenize(message) == expected


def test_a_variable_of_an_unseen_shape_becomes_a_wildcard_by_its_many_values() -> None:
    miner = LogPatternMiner()
    lines = [f"replica {word}, caught up with leader (term {i})" for i, word in enumerate(ODD_WORDS)]
    ids = ids_of(miner, lines)
    assert len(set(ids)) == 1
    assert miner.template(ids[0]) == "replica <*>, caught up with leader (term <*>)"
    # Two odd words varying together (a name and its zone) are found the same way.
    pairs = [
        f"mount {a} in zone {b} ready for writes from clients" for a, b in zip(ODD_WORDS, ODD_WORDS[::-1], strict=True)
    ]
    pair_ids = ids_of(miner, pairs)
    assert len(set(pair_ids)) == 1
    assert miner.template(pair_ids[0]) == "mount <*> in zone <*> ready for writes from clients"


def test_a_field_value_of_an_unseen_shape_needs_only_two_values() -> None:
    miner = LogPatternMiner()
    lines = [f"session opened for user={word} by agent tty=console" for word in ODD_WORDS[:2]]
    ids = ids_of(miner, lines)
    # The key says the field holds data, so two values make it a variable; a field seen with one value stays.
    assert ids[0] == ids[1] and miner.template(ids[0]) == "session opened for user=<*> by agent tty=console"


def test_events_whose_fixed_words_sit_between_variables_stay_apart() -> None:
    miner = LogPatternMiner()
    operations = ("LOOKUP3", "GETATTR3", "READDIR3")  # names that hold a digit are still names
    lines = [f"{op} status: {i % 2} len: {100 + i} time: {i * 7}" for i in range(30) for op in operations]
    ids = ids_of(miner, lines)
    assert len(set(ids)) == 3
    assert {miner.template(i) for i in ids} == {f"{op} status: <*> len: <*> time: <*>" for op in operations}
    # A word that differs between events in the middle of the line stays apart too, however often each is seen.
    states = ("joining", "syncing", "serving", "draining")
    more = ids_of(miner, [f"node {i} is {state} at term {i * 3}" for i in range(40) for state in states])
    assert len(set(more)) == 4
    assert {miner.template(i) for i in more} == {f"node <*> is {state} at term <*>" for state in states}


def test_a_line_of_values_only_does_not_swallow_lines_with_words() -> None:
    miner = LogPatternMiner()
    ids = ids_of(miner, ["4711 12", "1234 99", "heartbeat 12", "rebalance 7", "0x1f 3", "heartbeat 8"])
    assert ids[0] == ids[1] == ids[4] and miner.template(ids[0]) == "<*> <*>"
    assert ids[2] == ids[5] and len({ids[0], ids[2], ids[3]}) == 3
    assert (miner.template(ids[2]), miner.template(ids[3])) == ("heartbeat <*>", "rebalance <*>")


def test_templates_follow_the_loghub_2_convention() -> None:
    miner = LogPatternMiner()
    cases = {
        "Running task 3.0 in stage 1.0 (TID 5)": "Running task <*> in stage <*> (TID <*>)",
        "Finished read of 2048 bytes in 15 ms": "Finished read of <*> bytes in <*> ms",
        "child init 1 -2 ready": "child init <*> <*> ready",
        "Listening on hdfs://namenode-3:9000 now": "Listening on hdfs://<*> now",
    }
    for line, template in cases.items():
        assert miner.add(line).template == template
    # A list of values of varying length is one event; the template then shows one <*> for the run.
    first = miner.add("evict blocks blk_1 blk_2 blk_3 now")
    second = miner.add("evict blocks blk_9 now")
    assert first.pattern_id == second.pattern_id and second.template == "evict blocks <*> now"


def test_a_generalised_field_keeps_its_key_and_punctuation() -> None:
    miner = LogPatternMiner()
    lines = [f"grant role={word}, scope: read" for word in ODD_WORDS[:2]]
    lines += [f"revoke {word}, from group" for word in ODD_WORDS[:5]]
    ids = ids_of(miner, lines)
    assert miner.template(ids[0]) == "grant role=<*>, scope: read"
    assert miner.template(ids[-1]) == "revoke <*>, from group"


def test_lines_arrive_one_at_a_time_and_ids_stay_stable(tmp_path: Path) -> None:
    names = ODD_WORDS[:6]
    lines = [f"shard {name} rebalanced" for name in names] + ["shard quorvex rebalanced", "disk 3 full"]
    miner = LogPatternMiner()
    matches = [miner.add(line) for line in lines]
    first = matches[0].pattern_id
    # Before enough values were seen each word was its own pattern; after, they all resolve to the oldest id.
    assert [m.is_new for m in matches[:4]] == [True] * 4
    assert matches[4].pattern_id == first and matches[4].template == "shard <*> rebalanced"
    assert all(miner.resolve(m.pattern_id) == first for m in matches[:7])
    assert miner.match("shard pludge rebalanced") is not None
    # The file command reports every line under its final pattern and template, in order.
    path = tmp_path / "app.log"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = io.StringIO()
    assert mine_file(path, out) == 0
    rows = [json.loads(row) for row in out.getvalue().splitlines()]
    assert [r["pattern_id"] for r in rows] == [1] * 7 + [rows[7]["pattern_id"]] and rows[7]["pattern_id"] != 1
    assert [r["template"] for r in rows] == ["shard <*> rebalanced"] * 7 + ["disk <*> full"]


def test_word_memory_is_bounded() -> None:
    miner = LogPatternMiner(MinerConfig(max_patterns=10))
    for i in range(30_000):
        miner.add(f"user{i}x{i} logged in from zone{i}q{i}")  # generated ids: every word new
    assert len(miner) == 1
    assert len(miner._words) <= 50_000 and len(miner._seen) <= 40


@pytest.mark.anyio
async def test_the_server_groups_unseen_shapes_and_keeps_events_apart(make_server: ServerFactory) -> None:
    now = time.time()
    lines = [f"replica {word} caught up with leader after {i} rounds" for i, word in enumerate(ODD_WORDS)]
    lines += [f"{op} status: 0 len: {i} time: {i}" for i in range(5) for op in ("LOOKUP3", "GETATTR3")]
    logs: list[dict[str, Any]] = [{"message": line, "timestamp": now - 60, "level": "ERROR"} for line in lines]
    async with connect(make_server()) as client:
        pushed = await call(client, "ingest_telemetry", {"tenant_id": "ops", "logs": logs})
        assert pushed["rejected"] == 0
        result = await call(client, "query_error_patterns", {"tenant_id": "ops"})
    counts = {p["template"]: p["count"] for p in result["patterns"]}
    assert counts == {
        "replica <*> caught up with leader after <*> rounds": len(ODD_WORDS),
        "LOOKUP3 status: <*> len: <*> time: <*>": 5,
        "GETATTR3 status: <*> len: <*> time: <*>": 5,
    }
    assert WILDCARD not in counts


def test_the_work_per_line_is_bounded_however_many_patterns_share_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lines that never merge (free text, or a client sending noise) all share a key (length and first word): each
    new line is compared with at most ``max_candidates`` of its patterns, not with all of them, so mining does not
    slow down quadratically; patterns in use still gather their lines."""
    compared = 0
    real_compare = miner_module.compare

    def counting(pattern: list[str], tokens: list[str]) -> tuple[int, tuple[int, ...]]:
        nonlocal compared
        compared += 1
        return real_compare(pattern, tokens)

    monkeypatch.setattr(miner_module, "compare", counting)
    rng = random.Random(5)
    noise = [
        "note " + " ".join("".join(rng.choice("klmnopqrstu") for _ in range(5)) for _ in range(6)) for _ in range(400)
    ]
    miner = LogPatternMiner(MinerConfig(max_candidates=16))
    for line in noise[:300]:
        miner.add(line)
    compared = 0
    for line in noise[300:]:
        miner.add(line)
    assert len(miner) == 400  # nothing merged: every line is its own pattern of the one key
    assert 0 < compared <= 100 * 16, compared
    added = [miner.add(f"note the disk on node {word} filled").pattern_id for word in ODD_WORDS]
    ids = {miner.resolve(pattern_id) for pattern_id in added}
    assert len(ids) == 1 and miner.template(ids.pop()) == "note the disk on node <*> filled"
