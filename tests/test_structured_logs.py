"""Structured log lines (a JSON object, logfmt pairs) are mined by their message field, not their text (issue 12,
point 11; logfmt: issue 14)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from io import StringIO
from pathlib import Path
from typing import Any

import pytest

from server.databases import Databases
from server.settings import Settings
from telemetry.learning.logpatterns import WILDCARD, mine_file, parse_line
from telemetry.store.records import LogRecord
from tests.backend import store_of
from tests.conftest import ServerFactory, call, connect

pytestmark = pytest.mark.anyio


def json_lines(now: float) -> list[str]:
    """An agent's JSON lines as its logging library writes them: three shapes, each with its own field names."""
    lines: list[str] = []
    for i in range(6):
        when = datetime.fromtimestamp(now - 60 + i, UTC).isoformat()
        lines.append(
            json.dumps(
                {
                    "timestamp": when,
                    "level": "error",
                    "logger": "payments",
                    "tenant": "shop",
                    "message": f"charge {9000 + i} declined by issuer for order {41 + i}",
                }
            )
        )
        lines.append(json.dumps({"time": now - 60 + i, "lvl": "info", "component": "api", "msg": f"served {i} items"}))
        # pino/bunyan: numeric levels (30 info, 50 error), the app's name as "name"
        lines.append(json.dumps({"level": 50, "name": "worker", "msg": f"job {i} failed after {i + 1} retries"}))
    return lines


async def test_json_lines_pushed_as_messages_are_mined_by_their_message_field(make_server: ServerFactory) -> None:
    now = time.time()
    logs: list[dict[str, Any]] = [{"message": line, "timestamp": now - 60} for line in json_lines(now)]
    async with connect(make_server()) as client:
        pushed = await call(client, "ingest_telemetry", {"tenant_id": "shop", "logs": logs})
        assert pushed["rejected"] == 0
        result = await call(client, "query_error_patterns", {"tenant_id": "shop"})
    by_template = {p["template"]: p for p in result["patterns"]}
    assert WILDCARD not in by_template, "a JSON line mined as its text is all <*>"
    charge = by_template["charge <*> declined by issuer for order <*>"]
    assert charge["count"] == 6 and charge["error_count"] == 6 and charge["components"] == ["payments"]
    assert charge["levels"] == {"ERROR": 6}
    served = by_template["served <*> items"]
    assert served["count"] == 6 and served["error_count"] == 0 and served["components"] == ["api"]
    job = by_template["job <*> failed after <*> retries"]
    assert job["error_count"] == 6 and job["components"] == ["worker"] and job["levels"] == {"ERROR": 6}
    assert result["total_patterns"] == 3 and result["lines"] == 18 and result["error_lines"] == 12


async def test_json_lines_fetched_as_raw_lines_are_mined_the_same_after_a_restart(
    make_server: ServerFactory, settings: Settings
) -> None:
    """Lines stored as their whole JSON text (as CloudWatch delivers them, with the fields it read) are mined by
    their message when the patterns are rebuilt from the store."""
    now = time.time()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with store_of(settings, Databases.telemetry) as store:
        store.add_logs(
            [LogRecord("shop", now - 30, line, "INFO", None, {}, "cloudwatch") for line in json_lines(now)[::3]]
        )
    async with connect(make_server()) as client:
        result = await call(client, "query_error_patterns", {"tenant_id": "shop"})
    (pattern,) = result["patterns"]
    assert pattern["template"] == "charge <*> declined by issuer for order <*>"
    assert pattern["error_count"] == 6 and pattern["components"] == ["payments"]


def test_the_log_patterns_command_mines_json_lines_by_their_message(tmp_path: Path) -> None:
    path = tmp_path / "app.jsonl"
    path.write_text("\n".join(json_lines(time.time())) + "\n", encoding="utf-8")
    out = StringIO()
    assert mine_file(path, out) == 0
    templates = {json.loads(row)["template"] for row in out.getvalue().splitlines()}
    assert templates == {
        "charge <*> declined by issuer for order <*>",
        "served <*> items",
        "job <*> failed after <*> retries",
    }


@pytest.mark.parametrize(
    ("line", "level", "component", "message", "timestamp"),
    [
        (  # Go's slog text handler
            'time=2026-03-04T05:06:07.250Z level=WARN msg="consumer 3 stalled" component=queue attempt=2',
            "WARN",
            "queue",
            "consumer 3 stalled",
            datetime(2026, 3, 4, 5, 6, 7, 250_000, tzinfo=UTC).timestamp(),
        ),
        (  # logrus: an epoch as text, the logger's name, an escaped quote
            'ts=1772600767 lvl=error logger=billing msg="charge \\"7\\" declined" order=17',
            "ERROR",
            "billing",
            'charge "7" declined',
            1772600767.0,
        ),
        (  # a header, then pairs
            '2026-03-04T05:06:07Z INFO level=debug msg="cache warmed" component=api',
            "DEBUG",
            "api",
            "cache warmed",
            datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC).timestamp(),
        ),
    ],
)
def test_logfmt_lines_are_split_by_their_fields(
    line: str, level: str, component: str, message: str, timestamp: float
) -> None:
    parsed = parse_line(line)
    assert (parsed.level, parsed.component, parsed.message) == (level, component, message)
    assert parsed.timestamp == pytest.approx(timestamp)


@pytest.mark.parametrize(
    "line",
    ["user=alice logged in", "a=1 b=2", "msg=alone", 'level=info msg="unterminated', "x=" + "k=v " * 1000],
)
def test_lines_that_only_look_like_logfmt_stay_text(line: str) -> None:
    assert parse_line(line).message == line


async def test_logfmt_lines_pushed_are_mined_by_their_message(make_server: ServerFactory) -> None:
    now = time.time()
    lines = [f'level=error logger=payments msg="charge {9000 + i} declined" order={i}' for i in range(6)]
    async with connect(make_server()) as client:
        logs = [{"message": line, "timestamp": now - 60} for line in lines]
        assert (await call(client, "ingest_telemetry", {"tenant_id": "shop", "logs": logs}))["rejected"] == 0
        result = await call(client, "query_error_patterns", {"tenant_id": "shop"})
    (pattern,) = result["patterns"]
    assert pattern["template"] == "charge <*> declined"
    assert pattern["error_count"] == 6 and pattern["components"] == ["payments"]
