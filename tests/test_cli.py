"""The self-building-mcp command: help, errors with exit code 2, status as a table and as JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

COMMAND = [sys.executable, "-m", "server"]


def run(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SELF_BUILDING_")}
    environ.update(SELF_BUILDING_DATA_DIR=str(tmp_path / "data"), **env)
    return subprocess.run([*COMMAND, *args], capture_output=True, text=True, env=environ, cwd=tmp_path, timeout=120)


@pytest.mark.parametrize("args", [["--help"], ["serve", "--help"], ["status", "--help"]])
def test_help_on_every_command(tmp_path: Path, args: list[str]) -> None:
    proc = run(tmp_path, *args)
    assert proc.returncode == 0
    assert proc.stdout.startswith("usage: self-building-mcp")
    for flag in {"serve": ["--transport", "--host", "--port", "--config"], "status": ["--json"]}.get(args[0], []):
        assert flag in proc.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "the following arguments are required: COMMAND"),
        (["serve", "--transport", "carrier-pigeon"], "invalid choice: 'carrier-pigeon'"),
        (["serve", "--port", "http"], "port must be a number, got 'http'"),
        (["serve", "--port", "70000"], "port must be between 0 and 65535, got 70000"),
        (["status", "--bogus"], "unrecognized arguments: --bogus"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["status", "--config", "/nonexistent.toml"], "config file /nonexistent.toml does not exist"),
    ],
)
def test_bad_options_exit_2_with_a_message(tmp_path: Path, args: list[str], message: str) -> None:
    proc = run(tmp_path, *args)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert proc.stdout == ""


def test_bad_environment_value_exits_2(tmp_path: Path) -> None:
    proc = run(tmp_path, "status", SELF_BUILDING_HTTP_PORT="lots")
    assert proc.returncode == 2 and "invalid settings: http_port" in proc.stderr


def test_config_file_is_read_and_env_wins(tmp_path: Path) -> None:
    config = tmp_path / "sb.toml"
    config.write_text('[self_building]\nstatus_max_age_seconds = 7\nlog_level = "WARNING"\n', encoding="utf-8")
    bad = tmp_path / "bad.toml"
    bad.write_text("unknown_setting = 1\n", encoding="utf-8")
    assert "unknown setting(s) unknown_setting" in run(tmp_path, "status", "--config", str(bad)).stderr
    proc = run(tmp_path, "status", "--json", "--config", str(config), SELF_BUILDING_LOG_LEVEL="ERROR")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["monitoring"]["running"] is False


def test_status_json_is_the_tool_snapshot(tmp_path: Path) -> None:
    proc = run(tmp_path, "status", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert set(data) == {
        "verdict",
        "reasons",
        "note",
        "host",
        "gpu",
        "monitoring",
        "server",
        "telemetry_sources",
        "sandbox",
    }
    assert data["host"]["cpu"]["logical_cores"] >= 1 and data["gpu"]["available"] in (True, False)


def test_status_table(tmp_path: Path) -> None:
    proc = run(tmp_path, "status")
    assert proc.returncode == 0, proc.stderr
    labels = [line.split()[0] for line in proc.stdout.splitlines() if line.strip()]
    for label in ("verdict", "host", "cpu", "load", "memory", "disk", "monitoring", "server"):
        assert label in labels, proc.stdout
    assert "gpu" in labels


def test_settings_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from server.settings_load import load_settings

    config = tmp_path / "sb.toml"
    config.write_text('http_port = 9000\nlog_level = "DEBUG"\nallowed_hosts = ["a.example:*"]\n', encoding="utf-8")
    monkeypatch.setenv("SELF_BUILDING_LOG_LEVEL", "ERROR")
    monkeypatch.setenv("SELF_BUILDING_ALLOWED_ORIGINS", "https://x.example, https://y.example")
    settings = load_settings(config, http_port=None, workspace=tmp_path)
    assert settings.http_port == 9000  # from the file
    assert settings.log_level == "ERROR"  # env beats the file
    assert settings.allowed_hosts == ["a.example:*"]
    assert settings.allowed_origins == ["https://x.example", "https://y.example"]
    assert load_settings(config, http_port=9100).http_port == 9100  # a flag beats everything
    monkeypatch.delenv("SELF_BUILDING_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert load_settings().data_dir == tmp_path / "xdg" / "self-building-mcp"


def test_example_config_loads(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from server.settings_load import access_keys, load_settings

    root = Path(__file__).resolve().parent.parent
    monkeypatch.chdir(tmp_path)  # the tenants file is found relative to the config file, not the working directory
    monkeypatch.setenv("OPS_MCP_KEY", "an-ops-key-from-the-environment")
    settings = load_settings(root / "examples" / "self-building.toml")
    assert settings.monitoring_autostart is True and settings.allowed_hosts == ["mcp.internal.example:*"]
    assert settings.tenants_file == root / "examples" / "tenants.toml"
    assert sorted(k.name for k in access_keys(settings)) == ["ops", "shop-agent"]
    assert settings.cloudwatch.region == "us-east-1" and len(settings.cloudwatch.metrics) == 2
    for name in ("claude_desktop_config.json", "http_client_config.json"):
        config = json.loads((root / "examples" / name).read_text(encoding="utf-8"))
        assert "self-building" in config["mcpServers"]


def test_unusable_data_dir_is_reported(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory", encoding="utf-8")
    proc = run(tmp_path, "status", "--data-dir", str(blocker / "data"))
    assert proc.returncode == 2
    assert f"data directory {blocker / 'data'}: cannot be created" in proc.stderr
    assert "SELF_BUILDING_DATA_DIR" in proc.stderr and "Traceback" not in proc.stderr


def test_nested_settings_merge_file_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from server.settings_load import load_settings

    config = tmp_path / "sb.toml"
    config.write_text(
        '[self_building.cloudwatch]\nregion = "eu-west-1"\nalarm_name_prefix = "shop-"\n', encoding="utf-8"
    )
    monkeypatch.setenv("SELF_BUILDING_CLOUDWATCH__ALARM_NAMES", '["db-cpu"]')
    cloudwatch = load_settings(config).cloudwatch
    assert cloudwatch.alarm_names == ["db-cpu"]  # from the environment
    assert cloudwatch.region == "eu-west-1" and cloudwatch.alarm_name_prefix == "shop-"  # kept from the file


def test_status_prints_only_warnings_and_errors(tmp_path: Path) -> None:
    proc = run(tmp_path, "status")
    assert proc.returncode == 0, proc.stderr
    assert [line for line in proc.stderr.splitlines() if " INFO " in line or " DEBUG " in line] == []


def offline_inputs(tmp_path: Path, lines: int) -> dict[str, Path]:
    log = tmp_path / "app.log"
    log.write_text(
        "".join(
            f"2024-05-01 10:00:{i % 60:02d} ERROR db: connection {i} to 10.0.0.{i % 255} refused\n"
            for i in range(lines)
        ),
        encoding="utf-8",
    )
    series = tmp_path / "series.csv"
    series.write_text("timestamp,value\n" + "".join(f"{i},{i % 7}\n" for i in range(lines)), encoding="utf-8")
    return {"log-patterns": log, "detect-anomalies": series}


@pytest.mark.parametrize("command", ["log-patterns", "detect-anomalies", "status"])
def test_a_reader_gone_before_the_first_line_ends_it_quietly(tmp_path: Path, command: str) -> None:
    """Exit 141 (128 + SIGPIPE, what a shell reports for ``cat big | head``), without a traceback."""
    args = [command, str(offline_inputs(tmp_path, 50)[command])] if command != "status" else [command]
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SELF_BUILDING_")}
    environ.update(SELF_BUILDING_DATA_DIR=str(tmp_path / "data"))
    read_end, write_end = os.pipe()
    os.close(read_end)  # a real pipe whose reader has already gone
    try:
        proc = subprocess.run(
            [*COMMAND, *args],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            env=environ,
            cwd=tmp_path,
            timeout=120,
        )
    finally:
        os.close(write_end)
    assert proc.returncode == 141, proc.stderr
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr and "Exception ignored" not in proc.stderr


def test_log_patterns_piped_into_head_stops_quietly(tmp_path: Path) -> None:
    """``log-patterns FILE | head -n 1``: megabytes of output, the reader leaves after the first line."""
    log = offline_inputs(tmp_path, 60_000)["log-patterns"]
    proc = subprocess.Popen(
        [*COMMAND, "log-patterns", str(log)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert json.loads(proc.stdout.readline())["template"]
    proc.stdout.close()  # what head does after its lines; the rest cannot fit in the pipe
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 141, err
    assert b"Traceback" not in err and b"BrokenPipe" not in err
