"""``self-building-mcp cloudwatch setup``: the alarm event pipeline (queue, rule, target), and with ``--dashboard``
/ ``--alarms`` the dashboard and alarms of the metrics the server publishes. Each part is idempotent; AWS trouble is
one line on stderr and exit code 1; every change is written to the audit log."""

from __future__ import annotations

import argparse
import json
import logging
import sqlite3
import sys
from typing import Any

from server.settings import Settings

logger = logging.getLogger(__name__)
EXIT_USAGE = 2


def add_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add ``cloudwatch setup`` to the CLI's subcommands."""
    cloudwatch = commands.add_parser(
        "cloudwatch", help="set up AWS resources for CloudWatch streaming and publishing", description="AWS-side setup."
    )
    cloudwatch_commands = cloudwatch.add_subparsers(dest="cloudwatch_command", metavar="COMMAND", required=True)
    setup = cloudwatch_commands.add_parser(
        "setup",
        parents=[common],
        help="create the alarm event pipeline; with --dashboard/--alarms, the dashboard and alarms too",
        description="Create (or find, or correct) an SQS queue, an EventBridge rule matching CloudWatch alarm state "
        "changes (narrowed to cloudwatch.alarm_names / alarm_name_prefix when set) and the rule's target, so the "
        "server receives alarm changes as they happen. --dashboard and --alarms add a CloudWatch dashboard and "
        "four alarms for the metrics the server publishes (enable_cloudwatch_publishing); --no-pipeline leaves the "
        "queue and rule out. Safe to run again: what is as it should be is left as it is, what differs is put "
        "back. Uses the cloudwatch region, profile and endpoint settings and the usual AWS credentials chain.",
    )
    setup.add_argument(
        "--queue-name", type=_queue_name, default="self-building-mcp-alarm-events", help="SQS queue name"
    )
    setup.add_argument(
        "--rule-name", type=_rule_name, default="self-building-mcp-alarm-state", help="EventBridge rule name"
    )
    setup.add_argument("--dashboard", action="store_true", help="create the dashboard of the server's metrics")
    setup.add_argument("--alarms", action="store_true", help="create the alarms on the server's metrics")
    setup.add_argument("--no-pipeline", action="store_true", help="skip the alarm event queue and rule")
    setup.add_argument("--alarm-topic", type=_topic, metavar="ARN", help="SNS topic the alarms notify (with --alarms)")
    setup.add_argument(
        "--server", type=_server, metavar="NAME", help="Server dimension of the metrics (default: this host's name)"
    )
    setup.add_argument("--json", action="store_true", help="print JSON instead of a summary")


def _queue_name(text: str) -> str:
    from telemetry.cloudwatch.setup import QUEUE_NAME

    if not QUEUE_NAME.match(text):
        raise argparse.ArgumentTypeError(f"queue name must be 1-80 letters, digits, '-' or '_', got {text!r}")
    return text


def _rule_name(text: str) -> str:
    from telemetry.cloudwatch.setup import RULE_NAME

    if not RULE_NAME.match(text):
        raise argparse.ArgumentTypeError(f"rule name must be 1-64 letters, digits, '.', '-' or '_', got {text!r}")
    return text


def _topic(text: str) -> str:
    from telemetry.cloudwatch.dashboard import TOPIC_ARN

    if not TOPIC_ARN.match(text):
        raise argparse.ArgumentTypeError(f"expected an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME), got {text!r}")
    return text


def _server(text: str) -> str:
    if not 1 <= len(text) <= 200 or not text.isprintable():
        raise argparse.ArgumentTypeError(f"server name must be 1-200 printable characters, got {text!r}")
    return text


def run(settings: Settings, args: argparse.Namespace) -> int:
    """Run ``cloudwatch setup`` with the parsed arguments; returns the exit code."""
    usage = None
    if args.no_pipeline and not (args.dashboard or args.alarms):
        usage = "--no-pipeline needs --dashboard and/or --alarms (there is nothing else to set up)"
    elif args.alarm_topic and not args.alarms:
        usage = "--alarm-topic needs --alarms"
    if usage:
        sys.stderr.write(f"self-building-mcp cloudwatch setup: error: {usage}\n")
        return EXIT_USAGE
    from telemetry.errors import SetupError

    lines: list[str] = []
    output: dict[str, Any] = {}
    try:
        if not args.no_pipeline:
            output, lines = _pipeline(settings, args.queue_name, args.rule_name)
        if args.dashboard or args.alarms:
            extra, more = _dashboard_and_alarms(settings, args)
            changed = bool(output.get("changed")) or extra["changed"]
            output, lines = {**output, **extra, "changed": changed}, [*lines, *([""] if lines else []), *more]
    except SetupError as exc:
        sys.stderr.write(f"self-building-mcp: error: {exc}\n")
        return 1
    sys.stdout.write(json.dumps(output, indent=2) + "\n" if args.json else "\n".join(lines) + "\n")
    return 0


def _audit(settings: Settings, target: str, outcome: dict[str, Any]) -> None:
    """Record the AWS changes in the server's audit log; a data folder that cannot be written is only a warning."""
    from generators.deploy import SqliteAuditLog
    from generators.errors import StorageFullError

    try:
        audit_log = SqliteAuditLog(settings.data_dir / "audit.sqlite3")
    except (OSError, sqlite3.Error, StorageFullError) as exc:
        logger.warning("cloudwatch setup not recorded in the audit log (%s): %s", settings.data_dir, exc)
        return
    try:
        detail = {**outcome, "region": settings.cloudwatch.region}
        audit_log.append("cloudwatch_setup", target, actor="cli", tenant="system", detail=detail)
    finally:
        audit_log.close()


def _pipeline(settings: Settings, queue_name: str, rule_name: str) -> tuple[dict[str, Any], list[str]]:
    from telemetry.cloudwatch.setup import ensure_alarm_event_pipeline

    result = ensure_alarm_event_pipeline(settings.cloudwatch, queue_name=queue_name, rule_name=rule_name)
    _audit(settings, "alarm-event-pipeline", result.model_dump(include={"actions", "changed"}))
    rows = [
        ("queue", result.actions["queue"], result.queue_url),
        ("queue policy", result.actions["queue_policy"], "events.amazonaws.com may send from the rule only"),
        ("rule", result.actions["rule"], result.rule_arn),
        ("target", result.actions["target"], f"rule -> {result.queue_arn}"),
    ]
    lines = [
        "Alarm event pipeline " + ("set up:" if result.changed else "already set up, nothing changed:"),
        *(f"  {name:<13} {action:<10} {detail}" for name, action, detail in rows),
        f"  {'pattern':<13} {json.dumps(result.event_pattern)}",
        "",
    ]
    if settings.cloudwatch.sqs_queue_url == result.queue_url:
        lines.append("cloudwatch.sqs_queue_url already points at this queue.")
    else:
        lines += [
            "To receive alarm state changes from this queue, set",
            f"  SELF_BUILDING_CLOUDWATCH__SQS_QUEUE_URL={result.queue_url}",
            "(or sqs_queue_url in the [self_building.cloudwatch] table of the --config file) and "
            "SELF_BUILDING_ENABLE_CLOUDWATCH_STREAMING=true.",
        ]
    return result.model_dump(mode="json"), lines


def _dashboard_and_alarms(settings: Settings, args: argparse.Namespace) -> tuple[dict[str, Any], list[str]]:
    from server.cloudwatch_publishing import server_name
    from telemetry.cloudwatch.dashboard import alarm_period, ensure_alarms, ensure_dashboard

    server = args.server or server_name()
    namespace = settings.cloudwatch_publish_namespace
    period = alarm_period(settings.cloudwatch_publish_interval_seconds)
    output: dict[str, Any] = {"namespace": namespace, "server": server}
    rows: list[tuple[str, str, str]] = []
    if args.dashboard:
        board = ensure_dashboard(settings.cloudwatch, namespace, server, period)
        _audit(
            settings, "dashboard", {"name": board.name, "action": board.action, "changed": board.action != "unchanged"}
        )
        output["dashboard"] = board.model_dump()
        rows.append(("dashboard", board.action, f"{board.name} ({board.widgets} widgets)"))
    if args.alarms:
        alarms = ensure_alarms(settings.cloudwatch, namespace, server, period, topic_arn=args.alarm_topic)
        actions = {alarm.name: alarm.action for alarm in alarms}
        changed = any(action != "unchanged" for action in actions.values())
        _audit(settings, "alarms", {"actions": actions, "topic": args.alarm_topic, "changed": changed})
        output["alarms"] = [alarm.model_dump() for alarm in alarms]
        rows += [("alarm", alarm.action, f"{alarm.name}: {alarm.condition}") for alarm in alarms]
    output["changed"] = any(action != "unchanged" for _, action, _ in rows)
    lines = [
        f"Dashboard and alarms of server {server!r} (namespace {namespace}) "
        + ("set up:" if output["changed"] else "already set up, nothing changed:"),
        *(f"  {name:<13} {action:<10} {detail}" for name, action, detail in rows),
    ]
    if not settings.enable_cloudwatch_publishing:
        lines.append("The server sends these metrics only with SELF_BUILDING_ENABLE_CLOUDWATCH_PUBLISHING=true.")
    return output, lines
