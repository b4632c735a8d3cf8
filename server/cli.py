"""The ``self-building-mcp`` command: ``serve`` (stdio or HTTP), ``status``, the offline analysis commands, and
``cloudwatch setup``."""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import anyio
from pydantic import ValidationError

from server import __version__, cloudwatch_cli, worker_cli
from server.guard import StartupError, check_packages
from server.logging_setup import configure_logging
from server.runtime import tune_process
from server.settings import ConfigFileError, Settings
from server.settings_load import load_settings

if TYPE_CHECKING:
    from telemetry.host.system import HostSource

logger = logging.getLogger(__name__)
EXIT_USAGE = 2
EXIT_PIPE_CLOSED = 141  # 128 + SIGPIPE: what a shell reports for a writer whose reader went away (``| head``)


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, metavar="FILE", help="TOML settings file (below env vars in priority)")
    common.add_argument("--data-dir", type=Path, metavar="DIR", help="where databases live (SELF_BUILDING_DATA_DIR)")
    common.add_argument("--workspace", type=Path, metavar="DIR", help="workspace directory (SELF_BUILDING_WORKSPACE)")
    common.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="stderr log level")

    parser = argparse.ArgumentParser(
        prog="self-building-mcp",
        description="An MCP server that watches systems, learns from telemetry and improves code.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = commands.add_parser("serve", parents=[common], help="run the MCP server", description="Run the MCP server.")
    serve.add_argument("--transport", choices=["stdio", "http"], default="stdio", help="transport (default: stdio)")
    serve.add_argument("--host", help="HTTP bind address (default 127.0.0.1; SELF_BUILDING_HTTP_HOST)")
    serve.add_argument("--port", type=_port, help="HTTP port (default 8765; SELF_BUILDING_HTTP_PORT)")

    status = commands.add_parser(
        "status", parents=[common], help="print the system status", description="Print the get_system_status snapshot."
    )
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")

    detect = commands.add_parser(
        "detect-anomalies",
        help="run the streaming anomaly detector over a timestamp,value CSV",
        description="Read a CSV with a header line and timestamp,value rows; print one JSON line per row, in order: "
        '{"timestamp", "value", "score", "anomaly"}. The same detector the server runs on live series.',
    )
    detect.add_argument("file", type=Path, metavar="FILE.csv", help="CSV file with a timestamp,value header")

    patterns = commands.add_parser(
        "log-patterns",
        help="group log lines into templates",
        description="Read log lines (raw, or message contents only); print one JSON line per input line, in order: "
        '{"pattern_id", "template"}. The same miner the server runs on ingested logs.',
    )
    patterns.add_argument("file", type=Path, metavar="FILE", help="log file, one message per line")
    patterns.add_argument(
        "--log-format",
        metavar="FORMAT",
        help="the lines' layout, e.g. '<Date> <Time> <Level> <Component>: <Content>' (default: learned from the "
        "first lines)",
    )

    move = commands.add_parser(
        "migrate",
        parents=[common],
        help="move the data directory's SQLite stores into an empty PostgreSQL database",
        description="Copy every SQLite store of the data directory into an empty PostgreSQL database (its tables "
        "are made first), in one transaction, checking each table's row count; the SQLite files are only read. "
        "Stop the server first; then run it with SELF_BUILDING_DATABASE_URL set to the same URL.",
    )
    move.add_argument("--to", required=True, type=_postgres_url, metavar="URL", help="postgresql://user:pw@host/db")

    worker_cli.add_parser(commands, common)
    cloudwatch_cli.add_parser(commands, common)
    return parser


def _postgres_url(text: str) -> str:
    if not text.startswith(("postgresql://", "postgres://")):
        raise argparse.ArgumentTypeError("--to must be a postgresql:// URL")
    return text


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"port must be a number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be between 0 and 65535, got {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code. The process is expected to end right after."""
    try:
        return _main(argv)
    finally:
        # Nothing needs collecting any more: without this, the collector's last passes over the whole heap (SDK
        # models, schemas) hold the exit up by about a quarter of a second. Everything is closed and flushed by now.
        gc.freeze()


def _main(argv: Sequence[str] | None) -> int:
    tune_process()  # before the heavy imports below: they allocate enough to trigger hundreds of collections
    args = _parser().parse_args(argv)
    if args.command in ("detect-anomalies", "log-patterns"):
        return _to_stdout(lambda: _offline(args.command, args.file, getattr(args, "log_format", None)))
    try:
        check_packages()
        # The CPU figure is a difference of two readings: take the first now, so the start-up below is the window.
        host = _host_source() if args.command == "status" else None
        settings = load_settings(
            args.config,
            data_dir=args.data_dir,
            workspace=args.workspace,
            log_level=args.log_level,
            http_host=getattr(args, "host", None),
            http_port=getattr(args, "port", None),
        )
    except (ConfigFileError, StartupError) as exc:
        sys.stderr.write(f"self-building-mcp: error: {exc}\n")
        return EXIT_USAGE
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        sys.stderr.write(f"self-building-mcp: error: invalid settings: {problems}\n")
        return EXIT_USAGE
    problem = None if args.command == "cloudwatch" else _unusable_dir(settings.data_dir)  # setup uses no database
    if problem:
        sys.stderr.write(
            f"self-building-mcp: error: data directory {settings.data_dir}: {problem}; "
            "set SELF_BUILDING_DATA_DIR or --data-dir to a writable directory\n"
        )
        return EXIT_USAGE
    key = settings.mcp_api_key.get_secret_value() if settings.mcp_api_key else ""
    level = settings.log_level
    if args.command == "status" and args.log_level is None and level in ("DEBUG", "INFO"):
        level = "WARNING"  # a one-shot command: its output is the answer; only warnings and errors beside it
    configure_logging(level, secrets=(key,))
    if args.command == "serve":
        return _serve(settings, args.transport)
    if args.command == "cloudwatch":
        return _to_stdout(lambda: cloudwatch_cli.run(settings, args))
    if args.command == "worker":
        return worker_cli.run(settings)
    if args.command == "migrate":
        return _to_stdout(lambda: _migrate(settings, args.to))
    return _to_stdout(lambda: anyio.run(_status, settings, args.json, host))


def _migrate(settings: Settings, url: str) -> int:
    import psycopg

    from server.migrate import MigrationError, Moved, migrate

    def report(moved: Moved) -> None:
        sys.stdout.write(f"{moved.file}: {moved.table}: {moved.rows} rows\n")

    try:
        moved = anyio.run(migrate, settings, url, report)
    except (MigrationError, psycopg.Error) as exc:
        sys.stderr.write(f"self-building-mcp: error: migrate: {exc}\n")
        return 1
    total = sum(m.rows for m in moved)
    sys.stdout.write(f"moved {total} rows in {len(moved)} tables; now run with SELF_BUILDING_DATABASE_URL set\n")
    return 0


def _host_source() -> HostSource:
    from telemetry.host.system import PsutilHostSource

    return PsutilHostSource()


def _to_stdout(command: Callable[[], int]) -> int:
    """Run a command that writes to stdout; when the reader goes away (``| head``), exit quietly like other tools."""
    try:
        code = command()
        sys.stdout.flush()  # here, not at interpreter exit, where a closed pipe could only print a warning
    except BrokenPipeError:
        # Python flushes stdout again at exit: point it at the null device so that cannot fail a second time.
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)
        return EXIT_PIPE_CLOSED
    return code


def _offline(command: str, path: Path, log_format: str | None = None) -> int:
    """The offline analysis commands: no settings, no server, output on stdout only."""
    if not path.is_file():
        sys.stderr.write(f"self-building-mcp: error: {path} is not a readable file\n")
        return EXIT_USAGE
    if command == "detect-anomalies":
        from telemetry.learning.anomaly import detect_csv

        return detect_csv(path, sys.stdout)
    from telemetry.learning.logpatterns import LogFormat, mine_file

    try:
        layout = LogFormat(log_format) if log_format else None
    except ValueError as exc:
        sys.stderr.write(f"self-building-mcp: error: --log-format: {exc}\n")
        return EXIT_USAGE
    return mine_file(path, sys.stdout, log_format=layout)


def _unusable_dir(path: Path) -> str | None:
    """Why ``path`` cannot hold the databases, or None when it can (it is created if missing)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"cannot be created ({exc.strerror})"
    if not os.access(path, os.W_OK | os.X_OK):
        return "is not writable"
    return None


def _serve(settings: Settings, transport: str) -> int:
    """Serve until end of input (stdio) or SIGINT/SIGTERM; a stop that went cleanly exits with 0."""
    # SIGTERM unwinds like Ctrl-C (KeyboardInterrupt) until a transport takes the signals over: the stdio transport
    # ends the input; uvicorn shuts down, then re-raises the signal it caught, which lands here.
    if hasattr(signal, "SIGTERM"):
        signal.signal(signal.SIGTERM, _interrupt)
    from server.app import create_server

    server = create_server(settings)
    try:
        if transport == "stdio":
            from server.stdio import serve_stdio

            anyio.run(serve_stdio, server)
            return 0
        from server.http import UnsafeBindError, serve_http  # uvicorn and starlette only when serving HTTP

        try:
            anyio.run(serve_http, server, settings)
        except UnsafeBindError as exc:
            sys.stderr.write(f"self-building-mcp: error: {exc}\n")
            return EXIT_USAGE
    except KeyboardInterrupt:
        pass
    return 0


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


async def _status(settings: Settings, as_json: bool, host: HostSource | None = None) -> int:
    """Ask the real server through an in-memory client, so the CLI shows exactly what the tool returns."""
    from mcp import Client

    from server.app import create_server

    async with Client(create_server(settings, host_source=host)) as client:
        result = await client.call_tool("get_system_status", {})
    if result.is_error or result.structured_content is None:
        sys.stderr.write(f"self-building-mcp: error: {result.content}\n")
        return 1
    data = result.structured_content
    sys.stdout.write(json.dumps(data, indent=2) + "\n" if as_json else render_table(data))
    return 0


def _gib(value: float) -> str:
    return f"{value / 2**30:.1f} GiB"


def render_table(status: dict[str, Any]) -> str:
    """A terminal view of the status snapshot."""
    host, gpu, mon, srv = status["host"], status["gpu"], status["monitoring"], status["server"]
    cpu, mem = host["cpu"], host["memory"]
    rows: list[tuple[str, str]] = [
        ("verdict", status["verdict"].upper()),
        *[("  reason", r) for r in status["reasons"]],
        *([("  note", status["note"])] if status.get("note") else []),
        ("host", f"{host['hostname']} ({host['platform']}), up {host['uptime_seconds'] / 3600:.1f} h"),
        (
            "cpu",
            f"{cpu['percent']:.1f}% of {cpu['logical_cores']} cores; per core "
            + " ".join(f"{c:.0f}" for c in cpu["per_core"]),
        ),
        ("load", " ".join(f"{x:.2f}" for x in cpu["load_average"]) if cpu["load_average"] else "n/a"),
        (
            "memory",
            f"{mem['percent']:.1f}% ({_gib(mem['used_bytes'])} of {_gib(mem['total_bytes'])}), "
            f"swap {mem['swap_percent']:.1f}%",
        ),
    ]
    rows += [(f"disk {d['mountpoint']}", f"{d['percent']:.1f}% of {_gib(d['total_bytes'])}") for d in host["disks"]]
    rates = host.get("io_rates")
    if rates:
        rows.append(
            (
                "net",
                f"out {rates['net_sent_bytes_per_s'] / 1024:.1f} KiB/s, "
                f"in {rates['net_recv_bytes_per_s'] / 1024:.1f} KiB/s",
            )
        )
        rows.append(
            (
                "disk io",
                f"read {rates['disk_read_bytes_per_s'] / 1024:.1f} KiB/s, "
                f"write {rates['disk_write_bytes_per_s'] / 1024:.1f} KiB/s",
            )
        )
    if gpu["available"]:
        for dev in gpu["devices"]:
            rows.append(
                (
                    f"gpu {dev['index']}",
                    f"{dev['name']}: {dev['utilization_percent']}% util, "
                    f"{dev['memory_percent']:.0f}% mem, {dev['temperature_c']} °C",
                )
            )
    else:
        rows.append(("gpu", f"none ({gpu['reason']})"))
    rows.append(
        (
            "monitoring",
            f"{'running' if mon['running'] else 'stopped'}, every {mon['interval_seconds']:g}s, "
            f"{mon['active_events']} open event(s)",
        )
    )
    rows.append(("server", f"v{srv['version']}, {srv['tool_calls']} tool call(s), {srv['tool_failures']} failed"))
    width = max(len(k) for k, _ in rows)
    return "".join(f"{k:<{width}}  {v}\n" for k, v in rows)
