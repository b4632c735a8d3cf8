"""A moto server on a free loopback port, reached over real HTTP through AWS_ENDPOINT_URL; a fault server that
answers every AWS call with one error; and a fault proxy in front of the moto server that starts failing on demand."""

from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx2
import pytest

from tests.polling import eventually_sync

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class MotoServer:
    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        eventually_sync(self._answers, f"moto server on port {self.port} answers", timeout=30)

    def _answers(self) -> bool:
        try:
            return httpx2.get(f"{self.url}/moto-api/", timeout=1).status_code < 500
        except httpx2.TransportError:
            return False

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
            self.proc = None

    def reset(self) -> None:
        httpx2.post(f"{self.url}/moto-api/reset", timeout=10)


@contextmanager
def aws_environment(url: str) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in [*CREDENTIALS, "AWS_ENDPOINT_URL"]}
    os.environ.update(CREDENTIALS, AWS_ENDPOINT_URL=url)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class FaultServer:
    """A stand-in AWS endpoint on a free loopback port that answers every call with one canned JSON-protocol error.

    CloudWatch, CloudWatch Logs, SQS and EventBridge all speak the JSON protocol in current botocore (CloudWatch
    "query compatible"), so ``{"__type": code, "message": ...}`` is how each reads an error. ``requests`` lists the
    ``X-Amz-Target`` of each request (``Logs_20140328.FilterLogEvents``), ``times`` when it came.
    """

    def __init__(self, status: int, code: str, message: str = "Rate exceeded") -> None:
        self.status, self.code, self.message = status, code, message
        self.requests: list[str] = []
        self.times: list[float] = []  # time.monotonic() of each request
        self._lock = threading.Lock()
        fault = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with fault._lock:
                    fault.times.append(time.monotonic())
                    fault.requests.append(self.headers.get("X-Amz-Target") or f"POST {self.path}")
                _fault_reply(self, fault.status, fault.code, fault.message)

            def log_message(self, format: str, *args: object) -> None:  # quiet: tests read the counts instead
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)

    def __enter__(self) -> FaultServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.requests)


def _fault_reply(handler: http.server.BaseHTTPRequestHandler, status: int, code: str, message: str) -> None:
    payload = json.dumps({"__type": code, "message": message}).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/x-amz-json-1.1")
    handler.send_header("Content-Length", str(len(payload)))
    handler.end_headers()
    handler.wfile.write(payload)


class FaultProxy:
    """A loopback HTTP proxy in front of a moto server: it passes every request on until :meth:`fail`, then answers
    each with one canned JSON-protocol error (see :class:`FaultServer`) until :meth:`heal`. ``requests`` lists the
    ``X-Amz-Target`` of every request it received (``GraniteServiceVersion20100801.DescribeAlarms``)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.requests: list[str] = []
        self._fault: tuple[int, str, str] | None = None
        self._lock = threading.Lock()
        self._http = httpx2.Client(timeout=30)
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with proxy._lock:
                    proxy.requests.append(self.headers.get("X-Amz-Target") or f"POST {self.path}")
                    fault = proxy._fault
                if fault is not None:
                    _fault_reply(self, *fault)
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                reply = proxy._http.post(f"{proxy.upstream}{self.path}", content=body, headers=headers)
                self.send_response(reply.status_code)
                for key, value in reply.headers.items():
                    if key.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(reply.content)))
                self.end_headers()
                self.wfile.write(reply.content)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)

    def fail(self, status: int, code: str, message: str = "fault injected") -> None:
        with self._lock:
            self._fault = (status, code, message)

    def heal(self) -> None:
        with self._lock:
            self._fault = None

    def count(self, target: str) -> int:
        """Requests received so far whose ``X-Amz-Target`` ends with ``target`` (``DescribeAlarms``)."""
        with self._lock:
            return sum(1 for r in self.requests if r.endswith(target))

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
        self._http.close()


def client(service: str) -> Any:
    """A boto3 client for the moto server the environment points at (see :func:`aws_environment`)."""
    import boto3

    name: Any = service  # the stubs only type literal service names
    return boto3.client(name, region_name="us-east-1")


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    """A moto server for the module, with the AWS environment pointing at it."""
    server = MotoServer(free_port())
    server.start()
    try:
        with aws_environment(server.url):
            yield server
    finally:
        server.stop()


@pytest.fixture
def aws(moto: MotoServer) -> Iterator[MotoServer]:
    """The module's moto server, emptied for this test."""
    moto.reset()
    yield moto
