"""HTTP connections are bounded: idle, slow and never-reading clients cannot hold the server's descriptors or flood its
log, bodies are bounded per route, and one key cannot fill the legacy session table. Real server, real sockets."""

from __future__ import annotations

import contextlib
import json
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.polling import eventually_sync
from tests.test_transports import HEADERS, INIT, free_port, server_env

pytestmark = pytest.mark.slow
WAIT = 60.0  # generous bound for anything that must happen (a busy machine is slow, never wrong)


class Server:
    def __init__(self, proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.proc, self.port, self.log = proc, port, log
        self.base = f"http://127.0.0.1:{port}"

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=WAIT)

    def metric(self, name: str, **labels: str) -> float:
        text = httpx2.get(f"{self.base}/metrics", timeout=WAIT).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name in (name, f"{name}_total") and all(sample.labels.get(k) == v for k, v in labels.items()):
                    return float(sample.value)
        raise AssertionError(f"metric {name} {labels} not found")

    def wait_metric(self, name: str, at_least: float, **labels: str) -> float:
        eventually_sync(lambda: self.metric(name, **labels) >= at_least, f"{name} {labels} >= {at_least:g}", WAIT)
        return self.metric(name, **labels)

    def answers(self) -> bool:
        assert self.proc.poll() is None, self.log.read_text()
        try:
            return httpx2.get(f"{self.base}/health", timeout=2).status_code == 200
        except httpx2.TransportError:
            return False


@contextlib.contextmanager
def serve(tmp_path: Path, nofile: int | None = None, **env: str) -> Iterator[Server]:
    port = free_port()
    log = tmp_path / "server.log"

    def limit_files() -> None:
        if nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    with log.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "server", "serve", "--transport", "http", "--port", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=server_env(tmp_path, **env),
            cwd=tmp_path,
            preexec_fn=limit_files,
        )
    server = Server(proc, port, log)
    try:
        eventually_sync(server.answers, "the server answers /health", WAIT)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def closed_by_server(sock: socket.socket) -> bytes:
    """Read until the server closes the connection (bounded by the socket timeout); return what it sent."""
    got = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            got += chunk
    return got


def test_idle_connections_beyond_the_descriptor_limit_do_not_lock_out_other_clients(tmp_path: Path) -> None:
    # 256 descriptors, as a small systemd limit; 400 idle sockets would exhaust them without the connection cap.
    with serve(tmp_path, nofile=256, SELF_BUILDING_HTTP_READ_TIMEOUT_SECONDS="600") as server:
        idle = [server.connect() for _ in range(400)]
        try:
            for _ in range(5):
                assert httpx2.get(f"{server.base}/health", timeout=WAIT).status_code == 200
            with httpx2.Client(timeout=WAIT) as http:
                reply = http.post(f"{server.base}/mcp", json=INIT, headers=HEADERS)
            assert reply.status_code == 200
            limit = server.metric("http_connections_limit")
            assert limit < 256
            assert server.metric("http_connections_open") <= limit
            assert server.metric("http_connections_closed_by_server", reason="evicted") >= 400 - limit
        finally:
            for sock in idle:
                sock.close()
    assert server.log.stat().st_size < 64 * 1024, server.log.read_text()[-2000:]


def test_a_connection_that_sends_nothing_is_closed_after_the_read_timeout(tmp_path: Path) -> None:
    with serve(tmp_path, SELF_BUILDING_HTTP_READ_TIMEOUT_SECONDS="0.5") as server, server.connect() as sock:
        assert closed_by_server(sock) == b""
        assert server.wait_metric("http_connections_closed_by_server", 1, reason="header_timeout") >= 1


def test_a_request_head_sent_a_byte_at_a_time_gets_408_and_is_closed(tmp_path: Path) -> None:
    with serve(tmp_path, SELF_BUILDING_HTTP_READ_TIMEOUT_SECONDS="1") as server, server.connect() as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        sent_until = time.monotonic() + WAIT
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            while (
                time.monotonic() < sent_until
                and server.metric("http_connections_closed_by_server", reason="header_timeout") < 1
            ):
                sock.sendall(b"X")  # always some progress: a silence timeout alone would never fire
                time.sleep(0.05)  # pace: the slow client under test
        assert closed_by_server(sock).startswith(b"HTTP/1.1 408")


def test_a_body_trickled_slower_than_the_request_timeout_gets_408(tmp_path: Path) -> None:
    env = {"SELF_BUILDING_HTTP_READ_TIMEOUT_SECONDS": "1", "SELF_BUILDING_HTTP_REQUEST_TIMEOUT_SECONDS": "2"}
    with serve(tmp_path, **env) as server, server.connect() as sock:
        sock.sendall(
            b"POST /dashboard/api/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"x-dashboard-action: 1\r\nContent-Length: 3000\r\n\r\n"
        )
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            for _ in range(3000):
                if server.metric("http_connections_closed_by_server", reason="body_timeout") >= 1:
                    break
                sock.sendall(b" ")
                time.sleep(0.05)  # pace: the slow client under test
        assert closed_by_server(sock).startswith(b"HTTP/1.1 408")


def test_a_client_that_reads_none_of_its_responses_is_disconnected(tmp_path: Path) -> None:
    with serve(tmp_path, SELF_BUILDING_HTTP_WRITE_TIMEOUT_SECONDS="1") as server, server.connect() as sock:
        request = b"GET /dashboard/dashboard.js HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % server.port
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request * 2000)  # ~22 MB of responses, pipelined, never read
        assert server.wait_metric("http_connections_closed_by_server", 1, reason="write_timeout") >= 1
        closed_by_server(sock)  # ends (EOF or reset) instead of waiting for the socket timeout
        assert httpx2.get(f"{server.base}/health", timeout=WAIT).status_code == 200


def test_sign_in_bodies_are_bounded_before_they_are_read(tmp_path: Path) -> None:
    with serve(tmp_path, SELF_BUILDING_MCP_API_KEY="k" * 32) as server:
        with server.connect() as sock:  # a huge announced body is refused at once, unread
            sock.sendall(
                b"POST /dashboard/api/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b"x-dashboard-action: 1\r\nContent-Length: 300000000\r\n\r\n"
            )
            assert closed_by_server(sock).startswith(b"HTTP/1.1 413")

        def chunks() -> Iterator[bytes]:
            yield b'{"key": "'
            for _ in range(100):
                yield b"x" * 1024

        reply = httpx2.post(
            f"{server.base}/dashboard/api/login",
            content=chunks(),  # chunked: no length announced
            headers={"content-type": "application/json", "x-dashboard-action": "1"},
            timeout=WAIT,
        )
        assert reply.status_code == 413
        assert "at most 4096 bytes" in reply.json()["error"]

        action = {"content-type": "application/json", "x-dashboard-action": "1"}
        for body in (b"[" * 2000 + b"]" * 2000, b'{"key": ' + b"[" * 100 + b"]" * 100 + b"}", b"[1, 2]", b"{nope"):
            refused = httpx2.post(f"{server.base}/dashboard/api/login", content=body, headers=action, timeout=WAIT)
            assert refused.status_code == 400, (body[:20], refused.status_code, refused.text)
            assert "must be a JSON object" in refused.json()["error"]


def test_one_key_cannot_fill_the_legacy_session_table(tmp_path: Path) -> None:
    tenants = tmp_path / "tenants.toml"
    tenants.write_text(
        '[[keys]]\nname = "reader"\nkey_env = "READER_KEY"\ntenants = ["*"]\nroles = ["read"]\n'
        '[[keys]]\nname = "admin"\nkey_env = "ADMIN_KEY"\ntenants = ["*"]\nroles = ["admin"]\n',
        encoding="utf-8",
    )
    env = {
        "SELF_BUILDING_TENANTS_FILE": str(tenants),
        "READER_KEY": "r" * 32,
        "ADMIN_KEY": "a" * 32,
        "SELF_BUILDING_LEGACY_SESSIONS_PER_KEY": "4",
    }
    with serve(tmp_path, **env) as server, httpx2.Client(timeout=WAIT) as http:

        def initialize(key: str) -> str:
            reply = http.post(f"{server.base}/mcp", json=INIT, headers={**HEADERS, "Authorization": f"Bearer {key}"})
            assert reply.status_code == 200, reply.text
            return reply.headers["mcp-session-id"]

        def alive(key: str, session: str) -> bool:
            ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
            headers = {**HEADERS, "Authorization": f"Bearer {key}", "mcp-session-id": session}
            return http.post(f"{server.base}/mcp", json=ping, headers=headers).status_code == 200

        admin_session = initialize("a" * 32)
        reader_sessions = [initialize("r" * 32) for _ in range(40)]
        assert [alive("r" * 32, s) for s in reader_sessions[-4:]] == [True] * 4
        assert not any(alive("r" * 32, s) for s in reader_sessions[:-4])  # the oldest were ended
        assert alive("a" * 32, admin_session)  # another key's session is untouched
        assert initialize("a" * 32)


def test_a_client_that_leaves_mid_upload_is_noted_quietly(tmp_path: Path) -> None:
    with serve(tmp_path) as server:
        for version in (b"", b"MCP-Protocol-Version: 2026-07-28\r\n"):
            with server.connect() as sock:
                sock.sendall(
                    b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n" % server.port
                    + b"Accept: application/json, text/event-stream\r\n"
                    + version
                    + b'Content-Length: 1000\r\n\r\n{"jsonrpc": '
                )
        eventually_sync(lambda: server.log.read_text().count("went away while sending") >= 2, "both logged", WAIT)
        assert httpx2.get(f"{server.base}/health", timeout=WAIT).status_code == 200
    log = server.log.read_text()
    assert "Traceback" not in log and " ERROR " not in log, log


def test_an_mcp_body_over_the_limit_gets_a_json_rpc_error(tmp_path: Path) -> None:
    with serve(tmp_path) as server, server.connect() as sock:
        sock.sendall(
            b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n" % server.port
            + b"Content-Length: 50000000\r\n\r\n"
        )
        reply = closed_by_server(sock)
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413")
    error = json.loads(body)
    assert error["jsonrpc"] == "2.0" and error["id"] is None and error["error"]["code"] == -32600
