"""Where a raw log line's header ends (issue 14, part 3): general field kinds, a layout learned per source from its
first lines, and an explicit per-source format (CLI, settings, CloudWatch log groups, pushes).

Every layout here is invented for the test; none is taken from a dataset.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from server.databases import Databases
from server.settings import Settings
from telemetry.cloudwatch.logs import to_record
from telemetry.learning.logpatterns import LogFormat, LogSource, parse_line
from telemetry.learning.logpatterns.fields import kind_of
from telemetry.learning.logpatterns.timestamps import parse_timestamp
from tests.backend import store_of
from tests.conftest import ServerFactory, call, connect

pytestmark = pytest.mark.anyio
START = datetime(2026, 3, 4, 5, 6, 7, 250_000, tzinfo=UTC)
LEVELS = ("INFO", "WARN", "ERROR", "DEBUG")
COMPONENTS = ("billing", "queue.Worker", "db-pool", "auth")


# --- field kinds: each follows from a general property of log headers --------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("2026-03-04T05:06:07.250Z", "T"),  # ISO 8601
        ("2026-03-04-05.06.07.250000", "T"),  # a date joined to a dotted clock
        ("2026-03-04", "T"),
        ("04.03.2026", "T"),  # day-first dotted date
        ("3/4/26", "T"),
        ("03-04", "T"),  # ISO's year-less month-day
        ("05:06:07,250", "T"),  # clock time, decimal comma
        ("05:06:07,", "T"),  # a trailing comma is punctuation
        ("Mar", "T"),  # month and weekday names
        ("Wednesday", "T"),
        ("+0100", "T"),  # a zone
        ("[Wed Mar 04 05:06:07 2026]", "T"),  # a bracketed moment
        ("[04/Mar/2026:05:06:07 +0000]", "T"),
        ("812", "N"),  # a process or thread id
        ("1772600767.250", "N"),  # an epoch is a number (the timestamp reader tells it apart)
        ("[812]", "N"),
        ("WARN", "L"),  # severities of syslog, log4j, Python, .NET
        ("warning:", "L"),
        ("[error]", "L"),
        ("Information,", "L"),
        ("W", "l"),  # a one-letter severity
        ("E0304", "G"),  # a severity letter fused to a month and day
        ("E1304", "W"),  # not a month
        ("I1²05", "W"),  # a superscript two is a digit to str.isdigit, not to a date
        ("10.1.2.3", "A"),  # an address
        ("10.1.2.3:8080", "A"),
        ("[pool-3-thread-1]", "B"),  # a bracketed thread or logger
        ("[main worker]", "B"),
        ("queue.Worker:", "C"),  # a name ended by a colon
        ("cron[812]:", "C"),
        ("pool.go:61]", "C"),  # a file:line closing the header
        ("-", "S"),  # separators
        ("|", "S"),
        ("---", "S"),
        ("web-2", "W"),  # anything else: a host, a word
        ("Starting", "W"),
        ("x" * 500, "W"),
    ],
)
def test_each_header_field_has_a_general_kind(text: str, kind: str) -> None:
    assert kind_of(text) == kind


def at(*args: int, micro: int = 0) -> float:
    return datetime(*args, micro, tzinfo=UTC).timestamp()  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-03-04T05:06:07.250Z", at(2026, 3, 4, 5, 6, 7, micro=250_000)),
        ("2026-03-04T05:06:07+01:00", at(2026, 3, 4, 4, 6, 7)),
        ("2026-03-04 05:06:07,250", at(2026, 3, 4, 5, 6, 7, micro=250_000)),
        ("04.03.2026 05:06:07", at(2026, 3, 4, 5, 6, 7)),  # day first when dotted
        ("03/04/2026 05:06:07", at(2026, 3, 4, 5, 6, 7)),  # month first when slashed...
        ("13/04/2026 05:06:07", at(2026, 4, 13, 5, 6, 7)),  # ...unless the first cannot be a month
        ("26/03/04 05:06:07", at(2026, 3, 4, 5, 6, 7)),  # two digits each: ISO order
        ("Wed Mar 04 05:06:07 2026", at(2026, 3, 4, 5, 6, 7)),
        ("04/Mar/2026:05:06:07 +0000", at(2026, 3, 4, 5, 6, 7)),
        ("260304 050607", at(2026, 3, 4, 5, 6, 7)),  # ISO 8601 basic
        ("20260304 050607", at(2026, 3, 4, 5, 6, 7)),
        ("2026-03-04 05:06:07 PM", at(2026, 3, 4, 17, 6, 7)),
        ("2026-03-04-05.06.07.250000", at(2026, 3, 4, 5, 6, 7, micro=250_000)),
        ("1772600767", 1772600767.0),  # epoch seconds
        ("1772600767250", 1772600767.25),  # epoch milliseconds
    ],
)
def test_timestamps_of_general_shapes(text: str, expected: float) -> None:
    assert parse_timestamp(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["", "812", "05:06", "hello 05:06:07", "2026-13-04 05:06:07", "99/99/99 10:00:00"])
def test_what_is_not_a_moment(text: str) -> None:
    assert parse_timestamp(text) is None


def test_a_year_less_date_is_the_latest_such_day_not_in_the_future() -> None:
    now = datetime.now(UTC)
    tomorrow_last_year = (now + timedelta(days=3)).strftime("%b %d") + " 05:06:07"
    stamp = parse_timestamp(tomorrow_last_year)
    assert stamp is not None and stamp < now.timestamp()
    assert datetime.fromtimestamp(stamp, UTC).year in (now.year - 1, now.year)


# --- layouts learned from a source's first lines ------------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    raw: str
    message: str
    level: str | None
    component: str | None
    moment: datetime | None


Layout = Callable[[random.Random, datetime, str, str, str], str]


def messages(rng: random.Random) -> str:
    """Messages with shapes that a naive header reader takes for fields: a leading number, severity word, bracket,
    ``word:``, dash, address."""
    return rng.choice(
        [
            f"consumer {rng.randint(1, 9)} stalled",
            f"{rng.randint(2, 90)} jobs queued",
            f"ERROR budget at {rng.randint(1, 99)} percent",
            f"[client 10.0.0.{rng.randint(1, 9)}] request refused",
            f"Retrying: attempt {rng.randint(1, 5)} of 5",
            "- checkpoint -",
            f"10.0.0.{rng.randint(1, 9)} connected",
            f"WARN flag set by user{rng.randint(1, 9)}",
            f"cache miss for key k{rng.randint(1, 999)}",
        ]
    )


LAYOUTS: dict[str, tuple[Layout, str, bool]] = {  # layout, the fields it writes (Level, Component), has a year
    "iso timestamp, level, bracketed component": (
        lambda r, t, lv, c, m: f"{t:%Y-%m-%dT%H:%M:%S}.{t.microsecond // 1000:03d}Z {lv} [{c}] {m}",
        "LC",
        True,
    ),
    "syslog-like, host and pid": (
        lambda r, t, lv, c, m: f"{t:%b} {t.day:>2} {t:%H:%M:%S} web-{r.randint(1, 3)} {c}[{r.randint(80, 9999)}]: {m}",
        "C",
        False,
    ),
    "epoch and level": (lambda r, t, lv, c, m: f"{t.timestamp():.3f} {lv} {m}", "L", True),
    "component ending with a colon": (
        lambda r, t, lv, c, m: f"{t:%Y-%m-%d %H:%M:%S},{t.microsecond // 1000:03d} {lv} {c}: {m}",
        "LC",
        True,
    ),
    "dash separated": (lambda r, t, lv, c, m: f"{t:%Y-%m-%d %H:%M:%S} - {c} - {lv} - {m}", "LC", True),
    "padded columns between bars": (
        lambda r, t, lv, c, m: f"{t:%d.%m.%Y %H:%M:%S} | {lv:<5} | {c:<12} | {m}",
        "LC",
        True,
    ),
    "tab separated, compact date": (lambda r, t, lv, c, m: f"{t:%Y%m%d}\t{t:%H%M%S}\t{lv}\t{c}\t{m}", "LC", True),
    "bracketed time and level": (lambda r, t, lv, c, m: f"[{t:%d/%b/%Y:%H:%M:%S} +0000] [{lv.lower()}] {m}", "L", True),
    "severity first, then the time": (
        lambda r, t, lv, c, m: f"[{lv}] {t:%Y-%m-%d %H:%M:%S} {c}: {m}",
        "LC",
        True,
    ),
    "a tag a log shipper put first": (
        lambda r, t, lv, c, m: f"{c:<12} | {t:%Y-%m-%dT%H:%M:%S}Z {lv} {m}",  # the tag names the service
        "LC",
        True,
    ),
    "a flag, an epoch, a date, a host": (
        lambda r, t, lv, c, m: f"- {int(t.timestamp())} {t:%Y.%m.%d} node-{r.randint(1, 9)} {c}: {m}",
        "C",
        True,
    ),
    "adjacent bracketed fields": (
        lambda r, t, lv, c, m: f"[{t:%Y-%m-%d %H:%M:%S},{t.microsecond // 1000:03d}][{lv:<5}][{c:<14}] {m}",
        "LC",
        True,
    ),
    "pids then a one-letter level": (
        lambda r, t, lv, c, m: (
            f"{t:%m-%d %H:%M:%S}.{t.microsecond // 1000:03d} {r.randint(80, 9999):>5} "
            f"{r.randint(80, 9999):>5} {lv[0]} {c}: {m}"
        ),
        "LC",
        False,
    ),
    "a severity letter fused to the date, a pid, file:line]": (
        lambda r, t, lv, c, m: (
            f"{lv[0]}{t:%m%d %H:%M:%S}.{t.microsecond:06d} {r.randint(80, 99999):>7} {c}:{r.randint(1, 400)}] {m}"
        ),
        "LC",
        False,
    ),
}


def source_lines(layout: Layout, fields: str, count: int, seed: int, trace_share: float = 0.0) -> list[Line]:
    rng = random.Random(seed)
    out: list[Line] = []
    for i in range(count):
        moment = START + timedelta(seconds=37 * i)
        level, component, message = rng.choice(LEVELS), rng.choice(COMPONENTS), messages(rng)
        raw = layout(rng, moment, level, component, message)
        out.append(Line(raw, message, level if "L" in fields else None, component if "C" in fields else None, moment))
        while rng.random() < trace_share:  # a stack trace's continuation lines: no header
            frame = f"\tat org.example.Job.run(Job.java:{rng.randint(1, 400)})"
            out.append(Line(frame, frame, None, None, None))
    return out


def learned(lines: list[Line]) -> LogSource:
    source = LogSource()
    source.learn(line.raw for line in lines)
    return source


@pytest.mark.parametrize("name", list(LAYOUTS))
@pytest.mark.parametrize("trace_share", [0.0, 0.4])
def test_the_header_layout_is_learned_from_a_sources_first_lines(name: str, trace_share: float) -> None:
    layout, fields, has_year = LAYOUTS[name]
    lines = source_lines(layout, fields, 400, seed=len(name), trace_share=trace_share)
    source = learned(lines)
    assert source.shape is not None and not source.learning
    for line in lines:
        parsed = source.parse(line.raw)
        assert (parsed.message, parsed.level, parsed.component) == (line.message, line.level, line.component), line
        if line.moment is None:
            assert parsed.timestamp is None
            continue
        assert parsed.timestamp is not None, line
        got = datetime.fromtimestamp(parsed.timestamp, UTC)
        if has_year:
            assert got == line.moment.replace(microsecond=got.microsecond), line  # to the precision written
        else:
            assert got.strftime("%m-%d %H:%M:%S") == line.moment.strftime("%m-%d %H:%M:%S"), line


def test_lines_without_a_header_pass_through_unchanged() -> None:
    rng = random.Random(3)
    plain = [messages(rng) for _ in range(300)]
    source = LogSource()
    source.learn(plain)
    assert source.shape is None
    for line in plain:
        assert source.parse(line) == parse_line(line)
        assert (source.parse(line).message, source.parse(line).level) == (line, None)


def test_a_severity_and_name_opening_a_few_messages_are_not_taken_for_a_header() -> None:
    rng = random.Random(5)
    lines = [messages(rng) for _ in range(195)] + [f"ERROR in step {i}: worker.Pool: gave up" for i in range(5)]
    source = LogSource()
    source.learn(lines)
    assert source.shape is None
    assert source.parse(lines[-1]).message == lines[-1]


def test_a_header_without_a_timestamp_is_learned_when_most_lines_have_it() -> None:
    rng = random.Random(6)
    lines = [f"{rng.choice(LEVELS)} {rng.choice(COMPONENTS)}: {messages(rng)}" for _ in range(200)]
    source = LogSource()
    source.learn(lines)
    parsed = source.parse("ERROR billing: consumer 7 stalled")
    assert (parsed.level, parsed.component, parsed.message) == ("ERROR", "billing", "consumer 7 stalled")


def test_a_line_that_does_not_fit_the_layout_is_split_on_its_own_evidence() -> None:
    layout, fields, _ = LAYOUTS["iso timestamp, level, bracketed component"]
    source = learned(source_lines(layout, fields, 200, seed=1))
    other = "2026-03-04 05:06:07,250 WARN queue.Worker: consumer 3 stalled"
    parsed = source.parse(other)
    assert (parsed.level, parsed.component, parsed.message) == ("WARN", "queue.Worker", "consumer 3 stalled")
    assert source.parse("Traceback (most recent call last):").message == "Traceback (most recent call last):"


def test_learning_stops_after_the_sample_and_keeps_only_the_layout() -> None:
    layout, fields, _ = LAYOUTS["dash separated"]
    lines = source_lines(layout, fields, 50, seed=2)
    source = LogSource(sample_lines=20)
    source.learn(line.raw for line in lines[:10])
    assert source.learning and source.shape is not None  # usable while it learns
    source.learn(line.raw for line in lines[10:])
    assert not source.learning
    shape = source.shape
    source.learn(["garbage that would change nothing"] * 100)
    assert source.shape is shape


def test_one_line_alone_gets_a_header_only_when_it_starts_with_a_timestamp() -> None:
    parsed = parse_line("2026-03-04T05:06:07Z web-2 cron[812]: job 4 done")
    assert (parsed.component, parsed.message) == ("cron", "job 4 done")
    assert parse_line("2026-03-04T05:06:07Z INFO Starting server: port 80").message == "Starting server: port 80"
    assert parse_line("2026-03-04T05:06:07Z INFO [main] ready").message == "[main] ready"  # maybe the message's
    for plain in ("INFO: only a message", "812 jobs queued", "[client 10.0.0.1] refused", "Mar is a month"):
        assert parse_line(plain).message == plain


# --- explicit formats -----------------------------------------------------------------------------------------------


def test_an_explicit_format_splits_its_fields() -> None:
    layout = LogFormat("<Date> <Time> <Level> <Component>: <Content>")
    parsed = layout.split("2026-03-04 05:06:07,250 WARN queue.Worker: consumer 3 stalled: retry")
    assert parsed is not None
    assert (parsed.level, parsed.component, parsed.message) == ("WARN", "queue.Worker", "consumer 3 stalled: retry")
    assert parsed.timestamp == pytest.approx(at(2026, 3, 4, 5, 6, 7, micro=250_000))
    assert layout.split("\tat org.example.Job.run(Job.java:12)") is None
    escaped = LogFormat(r"\[<Time>\] \[<Level>\] <Content>")  # loghub writes its formats as regular expressions
    parsed = escaped.split("[Wed Mar 04 05:06:07 2026] [notice] worker 4 started")
    assert parsed is not None and (parsed.level, parsed.message) == ("NOTICE", "worker 4 started")
    piped = LogFormat("<Host>|<Level>|<Program>|<Content>")
    parsed = piped.split("web-2|E|billing|charge 7 declined")
    assert parsed is not None and (parsed.level, parsed.component, parsed.message) == (
        "ERROR",
        "billing",
        "charge 7 declined",
    )
    assert piped.split("x" * 100_000) is None  # a line that does not fit fails quickly: fields never backtrack


def test_a_level_fused_to_the_date_after_it_is_a_format() -> None:
    """glog and klog write the severity letter and the month and day as one word: the letters are the level."""
    layout = LogFormat("<Level><Date> <Time> <Pid> <Component>] <Content>")
    parsed = layout.split("W0304 05:06:07.250000    8272 pool.go:61] worker 3 stalled: retry")
    assert parsed is not None
    assert (parsed.level, parsed.component, parsed.message) == ("WARN", "pool.go:61", "worker 3 stalled: retry")
    year = datetime.now(UTC).year
    assert parsed.timestamp in (
        pytest.approx(at(year, 3, 4, 5, 6, 7, micro=250_000)),
        pytest.approx(at(year - 1, 3, 4, 5, 6, 7, micro=250_000)),  # a year-less date never lies ahead
    )
    assert layout.split("1203 05:06:07.250000 8272 pool.go:61] no level") is None
    # Only the date fused to the level is read as month and day: a year field of four digits stays a year.
    spelled = LogFormat("<Day> <Month> <Year> <Time> <Content>").split("05 Mar 2025 05:06:07 worker 3 stalled")
    assert spelled is not None and spelled.timestamp == pytest.approx(at(2025, 3, 5, 5, 6, 7))
    assert layout.split("W" * 100_000) is None  # the letters end the level: nothing to try twice


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ("<Date> <Time> <Level>", "<Content> exactly once"),
        ("<Content> <Content>", "<Content> exactly once"),
        ("<Level> <level> <Content>", "each field once"),
        ("<Date> " * 100 + "<Content>", "at most 500 characters"),
        # touching fields could be cut anywhere: a pushed '<A><B><C><D><Content>!' held a CPU for minutes
        ("<A><B><C><D><Content>!", "fields <A> and <B> have nothing between them"),
        ("<Level><Content>", "fields <Level> and <Content> have nothing between them"),
        ("<Date><Level> <Content>", "fields <Date> and <Level> have nothing between them"),
    ],
)
def test_a_format_that_cannot_be_used_says_why(spec: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        LogFormat(spec)
    with pytest.raises(ValidationError, match=reason):
        Settings(log_formats={"api": spec})


def test_a_source_with_an_explicit_format_does_not_guess() -> None:
    source = LogSource("<Date> <Time> <Level> <Component>: <Content>")
    assert not source.learning
    parsed = source.parse("2026-03-04 05:06:07 ERROR billing: charge 7 declined")
    assert (parsed.level, parsed.component, parsed.message) == ("ERROR", "billing", "charge 7 declined")
    stray = "2026-03-04T05:06:07Z ERROR [billing] charge 8 declined"  # not the format: all message
    assert source.parse(stray).message == stray
    json_line = '{"level": "warn", "msg": "charge 9 declined", "logger": "billing"}'
    assert source.parse(json_line).message == "charge 9 declined"  # a structured line is split by its fields


PIPED = [f"web-{i % 3}|{'EWI'[i % 3]}|billing|charge {i} declined by issuer {i * 7}" for i in range(30)]


def test_the_log_patterns_command_takes_a_format(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    path.write_text("\n".join(PIPED) + "\n", encoding="utf-8")
    command = [sys.executable, "-m", "server", "log-patterns", str(path), "--log-format"]
    done = subprocess.run([*command, "<Host>|<Level>|<Component>|<Content>"], capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(row) for row in done.stdout.decode().splitlines()]
    assert len(rows) == 30 and {r["template"] for r in rows} == {"charge <*> declined by issuer <*>"}
    bad = subprocess.run([*command, "<Level> <Component>"], capture_output=True, timeout=120)
    assert bad.returncode == 2 and b"<Content> exactly once" in bad.stderr and not bad.stdout


# --- through the MCP client: pushes, settings, CloudWatch log groups ---------------------------------------------


def raw_push(lines: list[str], now: float, **attributes: Any) -> list[dict[str, Any]]:
    """Pushed lines a second apart, the newest a second ago: a line stamped in the future could fall in the next hour,
    outside a query's window (the test failed when run in the last minute of an hour)."""
    first = now - len(lines)
    return [{"message": line, "timestamp": first + i, "attributes": attributes} for i, line in enumerate(lines)]


async def test_a_pushed_sources_header_layout_is_learned_and_feeds_the_learning_engine(
    make_server: ServerFactory,
) -> None:
    layout, fields, _ = LAYOUTS["padded columns between bars"]
    lines = source_lines(layout, fields, 120, seed=9)
    now = datetime.now(UTC).timestamp()
    async with connect(make_server()) as client:
        pushed = await call(
            client, "ingest_telemetry", {"tenant_id": "shop", "logs": raw_push([x.raw for x in lines], now)}
        )
        assert pushed["rejected"] == 0
        result = await call(client, "query_error_patterns", {"tenant_id": "shop", "limit": 100})
        insights = await call(client, "query_telemetry_insights", {"tenant_id": "shop", "kinds": ["error_pattern"]})
    stalled = next(p for p in result["patterns"] if p["template"] == "consumer <*> stalled")
    expected = [x for x in lines if x.message.startswith("consumer ")]
    assert stalled["count"] == len(expected)
    assert stalled["levels"] == {lv: sum(1 for x in expected if x.level == lv) for lv in {x.level for x in expected}}
    assert set(stalled["components"]) == {x.component for x in expected}
    assert stalled["error_count"] == sum(1 for x in expected if x.level == "ERROR")
    assert not any("|" in p["template"] for p in result["patterns"]), "the header was mined as message"
    components = {i["component"] for i in insights["insights"]}
    assert components and components <= set(COMPONENTS)  # the engine's insights name the header's components


async def test_a_format_given_with_a_push_or_in_the_settings_splits_that_source(
    make_server: ServerFactory, settings: Settings
) -> None:
    now = datetime.now(UTC).timestamp()
    spec = "<Host>|<Level>|<Component>|<Content>"
    async with connect(make_server(log_formats={"edge": spec})) as client:
        by_setting = raw_push(PIPED, now, log_source="edge")
        by_push = raw_push([x.replace("billing", "payments") for x in PIPED], now, log_format=spec)
        unknown = raw_push([x.replace("billing", "ledger") for x in PIPED], now, log_source="elsewhere")
        pushed = await call(client, "ingest_telemetry", {"tenant_id": "shop", "logs": by_setting + by_push + unknown})
        assert pushed["rejected"] == 0
        result = await call(client, "query_error_patterns", {"tenant_id": "shop", "limit": 100})
        refused = await call(
            client,
            "ingest_telemetry",
            {"tenant_id": "shop", "logs": [{"message": "x", "attributes": {"log_format": "<Level> <Message>"}}]},
        )
    templates = {p["template"]: p for p in result["patterns"]}
    split = templates["charge <*> declined by issuer <*>"]
    assert split["count"] == 60 and set(split["components"]) == {"billing", "payments"}
    assert split["levels"] == {"ERROR": 20, "WARN": 20, "INFO": 20} and split["error_count"] == 20
    assert sum(p["count"] for t, p in templates.items() if "|" in t) == 30  # no format, no layout: as written
    assert refused["rejected"] == 1 and "<Content> exactly once" in refused["rejections"][0]["reason"]


async def test_a_cloudwatch_log_groups_format_comes_from_the_settings(
    make_server: ServerFactory, settings: Settings
) -> None:
    now = datetime.now(UTC).timestamp()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with store_of(settings, Databases.telemetry) as store:
        events = [
            {"timestamp": int((now - 60 + i) * 1000), "message": line, "eventId": str(i), "logStreamName": "s"}
            for i, line in enumerate(PIPED)
        ]
        store.add_logs([to_record(e, "/ecs/edge", "shop") for e in events])
    async with connect(make_server(log_formats={"/ecs/edge": "<Host>|<Level>|<Component>|<Content>"})) as client:
        result = await call(client, "query_error_patterns", {"tenant_id": "shop"})
    (pattern,) = result["patterns"]
    assert pattern["template"] == "charge <*> declined by issuer <*>"
    assert pattern["components"] == ["billing"] and pattern["error_count"] == 10
