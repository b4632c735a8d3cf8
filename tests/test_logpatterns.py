"""The online log-pattern miner: masking, grouping, stable ids, statistics, header parsing and the CLI contract."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from telemetry.learning.logpatterns import (
    EMPTY_TEMPLATE,
    WILDCARD,
    LogPatternMiner,
    MinerConfig,
    PatternStats,
    mine_file,
    parse_line,
    tokenize,
)


def ids_of(miner: LogPatternMiner, lines: list[str]) -> list[int]:
    """Ids as the lines arrive, followed through later merges."""
    return [miner.resolve(pid) for pid in [miner.add(line).pattern_id for line in lines]]


def stats_by_id(miner: LogPatternMiner) -> dict[int, PatternStats]:
    return {s.pattern_id: s for s in miner.patterns()}


@pytest.mark.parametrize(
    "lines",
    [
        [
            "Accepted password for root from 10.0.0.1 port 5522 ssh2",
            "Accepted password for root from 10.9.8.7 port 61 ssh2",
        ],
        [
            "PacketResponder 1 for block blk_38865049064139660 terminating",
            "PacketResponder 0 for block blk_-69522 terminating",
        ],
        ["Created handle @0x7fed806eb5d in 12 ms", "Created handle @0x1 in 3 ms"],
        ["session 550e8400-e29b-41d4-a716-446655440000 opened", "session 6ba7b810-9dad-11d1-80b4-00c04fd430c8 opened"],
        [
            "Block broadcast_39 stored (size 9.2 KB, free 868.3 KB)",
            "Block broadcast_4 stored (size 17 MB, free 1.1 GB)",
        ],
        ["Opening /var/log/app/2026-11-25.log for read", "Opening /tmp/x/y.log for read"],
        ["GET https://example.com/a?b=1 took 5ms", "GET https://10.0.0.2:8080/health took 17ms"],
        [
            'lock acquired: uid=1000, tag="View Lock", ws=WorkSource{1}',
            'lock acquired: uid=0, tag="screen off", ws=WorkSource{10113}',
        ],
        ["reverse mapping for host-1.example.com failed", "reverse mapping for mail.example.org failed"],
        ["BLOCK* ask 10.0.0.1:50010 to delete blk_1 blk_2 blk_3", "BLOCK* ask 10.0.0.2:50010 to delete blk_9"],
    ],
)
def test_lines_differing_in_variables_share_a_pattern(lines: list[str]) -> None:
    miner = LogPatternMiner()
    matches = [miner.add(line) for line in lines]
    assert len({m.pattern_id for m in matches}) == 1
    assert matches[0].is_new and not matches[1].is_new
    assert WILDCARD in matches[-1].template
    assert len(miner) == 1


def test_template_shows_wildcards_where_the_values_were() -> None:
    miner = LogPatternMiner()
    miner.add("Failed password for root from 10.0.0.1 port 22 ssh2")
    match = miner.add("Failed password for root from 192.168.1.9 port 4711 ssh2")
    # loghub-2.0's convention: a name holding a digit (ssh2) is a fixed word, only the values become <*>.
    assert match.template == "Failed password for root from <*> port <*> ssh2"


def test_different_messages_get_different_patterns() -> None:
    miner = LogPatternMiner()
    lines = [
        "Connection closed by 10.0.0.1 [preauth]",
        "Received disconnect from 10.0.0.1: 11: Bye Bye [preauth]",
        "Received disconnect from 10.0.0.1: 11: disconnected by user",
        "Starting TrustedInstaller initialization.",
        "Starting TrustedInstaller finalization.",
        "isOverlap:true",
        "isOverlap:false",
    ]
    assert len(set(ids_of(miner, lines))) == len(lines)


def test_a_word_becomes_a_variable_after_distinct_values_different_words() -> None:
    miner = LogPatternMiner()
    assert miner.config.distinct_values == 5
    alice = miner.add("User alice logged in")
    bob = miner.add("User bob logged in")
    assert bob.pattern_id != alice.pattern_id and bob.is_new  # a few values may be a few different events
    for name in ("carol", "dave"):
        assert miner.add(f"User {name} logged in").is_new
    erin = miner.add("User erin logged in")
    assert erin.pattern_id == alice.pattern_id and not erin.is_new
    assert erin.template == "User <*> logged in"
    assert miner.resolve(bob.pattern_id) == alice.pattern_id
    assert miner.template(bob.pattern_id) == "User <*> logged in"
    assert miner.add("User bob logged in").pattern_id == alice.pattern_id
    [stats] = miner.patterns()
    assert stats.count == 6 and stats.example == "User alice logged in"


def test_two_values_at_one_position_stay_separate_patterns() -> None:
    miner = LogPatternMiner()
    ids = ids_of(miner, ["updateClipping overlap:false"] * 5 + ["updateClipping overlap:true"] * 2)
    assert len(set(ids)) == 2


def test_a_masked_value_at_a_position_merges_the_word_patterns_there() -> None:
    miner = LogPatternMiner()
    first = miner.add("Invalid user webmaster from 10.0.0.1").pattern_id
    merged = miner.add("Invalid user 4711 from 10.0.0.2")
    assert merged.pattern_id == first and merged.template == "Invalid user <*> from <*>"


def test_ids_stay_stable_as_the_template_generalises() -> None:
    miner = LogPatternMiner()
    first = miner.add("job alpha finished in 3 s")
    templates = {first.template}
    for name in ["beta", "gamma", "delta", "alpha", "epsilon"]:
        match = miner.add(f"job {name} finished in 7 s")
        templates.add(match.template)
        assert miner.resolve(match.pattern_id) == first.pattern_id or name in ("beta", "gamma", "delta")
    assert miner.resolve(first.pattern_id) == first.pattern_id
    assert len(templates) >= 2  # the template did change
    assert [s.pattern_id for s in miner.patterns()] == [first.pattern_id]


def test_counts_first_last_seen_components_levels_and_errors() -> None:
    miner = LogPatternMiner()
    miner.add("request 1 done", timestamp=100.0, level="info", component="api")
    miner.add("request 2 done", timestamp=105.0, level="INFO", component="worker")
    miner.add("request 3 done", timestamp=103.0, level="ERROR", component="api")
    miner.add("upload 7 failed: disk full", timestamp=110.0, level="WARN")
    miner.add("upload 8 failed: disk full", timestamp=111.0)
    by_template = {s.template: s for s in miner.patterns()}
    done = by_template["request <*> done"]
    assert (done.count, done.first_seen, done.last_seen) == (3, 100.0, 105.0)
    assert done.example == "request 1 done"
    assert done.components == ["api", "worker"]
    assert done.levels == {"INFO": 2, "ERROR": 1}
    assert done.error_count == 1
    failed = by_template["upload <*> failed: disk full"]
    assert failed.error_count == 2 and failed.levels == {"WARN": 1} and failed.components == []
    assert miner.patterns()[0].template == "request <*> done"  # most frequent first


def test_components_are_bounded() -> None:
    miner = LogPatternMiner(MinerConfig(max_components=3))
    for i in range(10):
        miner.add(f"tick {i}", component=f"c{i}")
    [stats] = miner.patterns()
    assert stats.components == ["c0", "c1", "c2"] and stats.count == 10


def test_least_recently_seen_pattern_is_evicted() -> None:
    miner = LogPatternMiner(MinerConfig(max_patterns=3))
    a = miner.add("alpha event").pattern_id
    b = miner.add("beta event happened").pattern_id
    c = miner.add("gamma event happened here").pattern_id
    miner.add("alpha event")  # alpha is now the most recent, beta the least
    d = miner.add("delta event happened here again").pattern_id
    assert len(miner) == 3
    assert {s.pattern_id for s in miner.patterns()} == {a, c, d}
    assert miner.template(b) is None
    assert miner.add("beta event happened").is_new


def test_match_does_not_change_anything() -> None:
    miner = LogPatternMiner()
    pid = miner.add("disk 1 full").pattern_id
    found = miner.match("disk 2 full")
    assert found is not None and found.pattern_id == pid and not found.is_new
    assert miner.match("something else entirely") is None
    assert miner.patterns()[0].count == 1


@pytest.mark.parametrize(
    "line",
    ["", "   ", "\t", "\x00\x01\x02", "\ufffd\ufffd", "<*> <*>", "=" * 50, "::::::", "a" * 1000, "🙂 émoji ünïcode 42"],
)
def test_empty_and_garbage_lines_do_not_crash(line: str) -> None:
    miner = LogPatternMiner()
    first = miner.add(line)
    again = miner.add(line)
    assert again.pattern_id == first.pattern_id
    if not line.strip():
        assert first.template == EMPTY_TEMPLATE


@pytest.mark.parametrize("line", ["a-" * 300_000 + "1", "x" * 1_000_000, "1" * 1_000_000, ("k=v " * 100_000)])
def test_very_long_lines_are_handled_quickly(line: str) -> None:
    miner = LogPatternMiner()
    started = time.perf_counter()
    miner.add(line)
    miner.add(line)
    assert time.perf_counter() - started < 2.0
    assert len(miner) == 1


@pytest.mark.parametrize("tail", ["[" * 200_000, "[" + "a" * 200_000, "INFO " + "x:" * 200_000, " " * 200_000])
def test_parse_line_is_quick_on_long_headers(tail: str) -> None:
    started = time.perf_counter()
    parsed = parse_line("2026-11-25T10:00:00Z " + tail)
    assert time.perf_counter() - started < 1.0
    assert parsed.timestamp is not None


def test_tokenize_masks_generic_variables() -> None:
    # A magnitude unit goes with its value (formatting picks it from the value); a fixed unit stays a word.
    assert tokenize("took 9.2 KB in 15 ms at 2026-11-25T10:00:00Z") == ["took", "<*>", "in", "<*>", "ms", "at", "<*>"]
    assert tokenize('user="john doe" id=42 path=/a/b') == ['user="<*>"', "id=<*>", "path=<*>"]
    assert tokenize("mac 00:1a:2b:3c:4d:5e from fe80::1") == ["mac", "<*>", "from", "<*>"]
    assert tokenize("plain words stay") == ["plain", "words", "stay"]


SSH = "Failed password for root from 10.0.0.1 port 22 ssh2"


@pytest.mark.parametrize(
    ("raw", "level", "component", "message", "timestamp"),
    [
        (
            "081109 203615 148 INFO dfs.DataNode$PacketResponder: PacketResponder 1 for block blk_1 terminating",
            "INFO",
            "dfs.DataNode$PacketResponder",
            "PacketResponder 1 for block blk_1 terminating",
            datetime(2008, 11, 9, 20, 36, 15, tzinfo=UTC).timestamp(),
        ),
        (
            "2026-11-25T10:00:00Z ERROR api: request failed",
            "ERROR",
            "api",
            "request failed",
            datetime(2026, 11, 25, 10, tzinfo=UTC).timestamp(),
        ),
        (
            "2026-11-25T10:00:00.500+02:00 WARN disk almost full",
            "WARN",
            None,
            "disk almost full",
            datetime(2026, 11, 25, 8, 0, 0, 500_000, tzinfo=UTC).timestamp(),
        ),
        (
            "[Sun Dec 04 04:47:44 2005] [error] mod_jk child workerEnv in error state 6",
            "ERROR",
            None,
            "mod_jk child workerEnv in error state 6",
            datetime(2005, 12, 4, 4, 47, 44, tzinfo=UTC).timestamp(),
        ),
        (
            "[Sun Dec 04 05:15:09 2005] [error] [client 1.2.3.4] Directory index forbidden by rule: /var/www/html/",
            "ERROR",
            None,
            "[client 1.2.3.4] Directory index forbidden by rule: /var/www/html/",
            datetime(2005, 12, 4, 5, 15, 9, tzinfo=UTC).timestamp(),
        ),
        (
            "2015-10-18 18:01:47,978 INFO [main] org.apache.hadoop.mapreduce.v2.app.MRAppMaster: Created MRAppMaster",
            "INFO",
            "org.apache.hadoop.mapreduce.v2.app.MRAppMaster",
            "Created MRAppMaster",
            datetime(2015, 10, 18, 18, 1, 47, 978_000, tzinfo=UTC).timestamp(),
        ),
        (
            "2015-07-29 17:41:44,747 - INFO  [QuorumPeer[myid=1]/0:0:0:0:0:0:0:0:2181:FastLeaderElection@774] - "
            "Notification time out: 3200",
            "INFO",
            "FastLeaderElection",
            "Notification time out: 3200",
            datetime(2015, 7, 29, 17, 41, 44, 747_000, tzinfo=UTC).timestamp(),
        ),
        (
            "17/06/09 20:10:40 INFO spark.SecurityManager: Changing view acls to: yarn,curi",
            "INFO",
            "spark.SecurityManager",
            "Changing view acls to: yarn,curi",
            datetime(2017, 6, 9, 20, 10, 40, tzinfo=UTC).timestamp(),
        ),
        (
            "2016-09-28 04:30:30, Info                  CBS    Loaded Servicing Stack v6.1.7601.23505",
            "INFO",
            "CBS",
            "Loaded Servicing Stack v6.1.7601.23505",
            datetime(2016, 9, 28, 4, 30, 30, tzinfo=UTC).timestamp(),
        ),
        (
            "03-17 16:13:38.811  1702  2395 D WindowManager: printFreezingDisplayLogs",
            "DEBUG",
            "WindowManager",
            None,
            None,
        ),
        ("Dec 10 06:55:46 LabSZ sshd[24200]: " + SSH, None, "sshd", SSH, None),
    ],
)
def test_parse_line_recognises_common_headers(
    raw: str, level: str | None, component: str | None, message: str | None, timestamp: float | None
) -> None:
    parsed = parse_line(raw)
    assert (parsed.level, parsed.component) == (level, component)
    assert parsed.message == (message or raw.split(": ", 1)[1])
    if timestamp is not None:
        assert parsed.timestamp == pytest.approx(timestamp)
    else:
        assert parsed.timestamp is not None and parsed.timestamp <= time.time() + 86_400


@pytest.mark.parametrize(
    "content",
    [
        "ERROR IN CONTACTING RM.",
        "INFO: something that is only a message",
        "00000001@2016/9/27:20:30:31.455 CSI Transaction @0x1 destroyed",
        "[client 1.2.3.4] Directory index forbidden by rule: /var/www/html/",
        "PacketResponder 1 for block blk_1 terminating",
        "Notification: 3 (n.leader), 0x7 (n.zxid), LOOKING (n.state)",
        "12 34 are numbers",
        "",
    ],
)
def test_plain_contents_pass_through_unchanged(content: str) -> None:
    assert parse_line(content) == parse_line(content + "\n")
    parsed = parse_line(content)
    assert parsed.message == content
    assert (parsed.timestamp, parsed.level, parsed.component) == (None, None, None)


def test_config_and_stats_fields_are_described() -> None:
    for model in (MinerConfig, PatternStats):
        for name, info in model.model_fields.items():
            assert info.description, f"{model.__name__}.{name}"


def test_mine_file_reports_each_line_under_its_final_pattern(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    names = ("alice", "bob", "carol", "dave")
    path.write_text("".join(f"User {n} logged in\n" for n in names) + "\nUser erin logged in\n", encoding="utf-8")
    out = io.StringIO()
    assert mine_file(path, out) == 0
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r["pattern_id"] for r in rows] == [1, 1, 1, 1, 5, 1]
    assert [r["template"] for r in rows] == ["User <*> logged in"] * 4 + [EMPTY_TEMPLATE, "User <*> logged in"]


def test_cli_prints_one_json_line_per_input_line(tmp_path: Path) -> None:
    path = tmp_path / "mixed.log"
    raw_lines = [
        b"081109 203615 148 INFO dfs.DataNode$PacketResponder: PacketResponder 1 for block blk_1 terminating",
        b"081109 203807 222 INFO dfs.DataNode$PacketResponder: PacketResponder 0 for block blk_-69 terminating",
        b"",
        b"Received block blk_3 of size 67108864 from /10.251.42.84",
        b"caf\xe9 \xff\xfe broken bytes 42",
        b"PacketResponder 2 for block blk_77 terminating",
        b"   ",
    ]
    path.write_bytes(b"\n".join(raw_lines) + b"\n")
    proc = subprocess.run(
        [sys.executable, "-m", "server", "log-patterns", str(path)], capture_output=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    assert len(rows) == len(raw_lines)
    assert all(set(r) == {"pattern_id", "template"} for r in rows)
    assert rows[0]["pattern_id"] == rows[1]["pattern_id"] == rows[5]["pattern_id"]
    assert rows[0]["template"] == "PacketResponder <*> for block <*> terminating"
    assert rows[2]["pattern_id"] == rows[6]["pattern_id"] and rows[2]["template"] == EMPTY_TEMPLATE
    assert len({r["pattern_id"] for r in rows}) == 4


def test_cli_rejects_a_missing_file(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "server", "log-patterns", str(tmp_path / "nope.log")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode != 0 and proc.stdout == ""


def test_the_miner_does_not_pull_in_the_server() -> None:
    code = (
        "import sys, telemetry.learning.logpatterns\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'server', 'tools', 'generators', 'mcp'})\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.parametrize(
    ("raw", "level", "component", "message", "timestamp"),
    [
        (  # python-json-logger, logback's and log4j's JSON layouts
            '{"timestamp": "2026-11-25T10:00:00Z", "level": "WARNING", "logger": "db", "message": "pool 80% full"}',
            "WARN",
            "db",
            "pool 80% full",
            datetime(2026, 11, 25, 10, tzinfo=UTC).timestamp(),
        ),
        (  # pino / bunyan: numeric level, epoch milliseconds, the app's name
            '{"level":50,"time":1764064800000,"pid":7,"hostname":"h","name":"worker","msg":"job 3 failed"}',
            "ERROR",
            "worker",
            "job 3 failed",
            datetime(2025, 11, 25, 10, tzinfo=UTC).timestamp(),
        ),
        (  # ECS: dotted fields nested
            '{"@timestamp":"2026-11-25T10:00:00.000Z","log":{"level":"error","logger":"api.Handler"},'
            '"message":"request failed","service":{"name":"shop"}}',
            "ERROR",
            "api.Handler",
            "request failed",
            datetime(2026, 11, 25, 10, tzinfo=UTC).timestamp(),
        ),
        (  # structlog: the message is "event"
            '{"event": "user logged in", "user": "bob", "level": "info", "timestamp": "2026-11-25T10:00:00"}',
            "INFO",
            None,
            "user logged in",
            datetime(2026, 11, 25, 10, tzinfo=UTC).timestamp(),
        ),
        (  # Serilog's compact JSON
            '{"@t":"2026-11-25T10:00:00Z","@m":"Disk D: is 91 % full","@l":"Warning","SourceContext":"Disks"}',
            "WARN",
            None,
            "Disk D: is 91 % full",
            datetime(2026, 11, 25, 10, tzinfo=UTC).timestamp(),
        ),
        (  # Docker's json-file: a raw line, header and all, in "log"
            '{"log":"2026-11-25T10:00:00Z ERROR api: request failed\\n","stream":"stderr",'
            '"time":"2026-11-25T10:00:01Z"}',
            "ERROR",
            "api",
            "request failed",
            datetime(2026, 11, 25, 10, 0, 1, tzinfo=UTC).timestamp(),
        ),
        (  # a header, then the JSON
            '2026-11-25T10:00:00Z {"severity": "ERROR", "component": "queue", "msg": "consumer 4 stalled"}',
            "ERROR",
            "queue",
            "consumer 4 stalled",
            datetime(2026, 11, 25, 10, tzinfo=UTC).timestamp(),
        ),
        (  # GELF: a syslog severity as the level, the message in "short_message"
            '{"version": "1.1", "host": "h", "short_message": "segfault at 0", "level": 3, "_app": "x"}',
            "ERROR",
            None,
            "segfault at 0",
            None,
        ),
        (  # no message field: the record is its fields
            '{"event_type": "checkout", "order": 17, "ok": true}',
            None,
            None,
            "event_type=checkout order=17 ok=true",
            None,
        ),
    ],
)
def test_parse_line_mines_structured_lines_by_their_message(
    raw: str, level: str | None, component: str | None, message: str, timestamp: float | None
) -> None:
    parsed = parse_line(raw)
    assert (parsed.level, parsed.component, parsed.message) == (level, component, message)
    assert parsed.timestamp == (None if timestamp is None else pytest.approx(timestamp))


@pytest.mark.parametrize(
    "content",
    [
        "{not json}",
        "{",
        '["a", "list"]',
        '{"message": 42}',
        "{} {}",
        "{" * 100_000 + "}" * 100_000,
        '{"a":' * 100_000 + "1" + "}" * 100_000,
    ],
)
def test_lines_that_only_look_structured_pass_through(content: str) -> None:
    parsed = parse_line(content)
    if content.startswith('{"message"'):  # an object without a string message: its fields are the message
        assert parsed.message == "message=42"
        return
    assert parsed == parse_line(content + "\n") and parsed.message == content
    assert (parsed.timestamp, parsed.level, parsed.component) == (None, None, None)


def test_structured_lines_of_one_event_share_a_pattern() -> None:
    miner = LogPatternMiner()
    lines = [f'{{"level": "error", "msg": "charge {n} declined for order {n * 7}", "ts": {n}}}' for n in range(5)]
    ids = {miner.resolve(miner.add(parse_line(line).message).pattern_id) for line in lines}
    (only,) = ids
    assert miner.template(only) == "charge <*> declined for order <*>"
