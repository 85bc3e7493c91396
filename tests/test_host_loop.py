"""``examples/host_loop.py``: stops cleanly on SIGTERM/SIGINT and loses nothing it acknowledged."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class HostLoop:
    """The example running as a subprocess, and a line client to it."""

    def __init__(self, data_dir: pathlib.Path) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "examples.host_loop",
                "--data-dir",
                str(data_dir),
                "--stats-interval",
                "0.2",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        # stderr is drained by a thread so a test can wait for a log line while the
        # process runs (and the pipe never fills up).
        self.err_lines: list[str] = []
        self._err_reader = threading.Thread(target=self._drain_stderr, daemon=True)
        self._err_reader.start()
        ready = json.loads(self.process.stdout.readline())
        assert ready["event"] == "ready"
        self.port = int(ready["port"])

    def _drain_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.err_lines.append(line)

    def wait_for_log(self, text: str, timeout: float = 30.0) -> None:
        """Wait until a stderr line contains ``text``."""
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.err_lines):
            assert time.monotonic() < deadline, f"no log line with {text!r} within {timeout} s"
            time.sleep(0.02)

    def connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        return sock

    @staticmethod
    def ask(sock: socket.socket, line: str) -> str:
        sock.sendall(line.encode() + b"\n")
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = sock.recv(4096)
            assert chunk, f"connection closed while waiting for the answer to {line!r}"
            reply += chunk
        return reply.decode().strip()

    def stop(self, signum: int) -> tuple[int, str, str]:
        self.process.send_signal(signum)
        assert self.process.stdout is not None
        out = self.process.stdout.read()
        self.process.wait(timeout=30)
        self._err_reader.join(timeout=30)
        return self.process.returncode, out, "".join(self.err_lines)


def test_sigterm_stops_cleanly_and_every_acknowledged_write_survives_a_restart(
    tmp_path: pathlib.Path,
) -> None:
    data_dir = tmp_path / "node1"
    first = HostLoop(data_dir)
    try:
        with first.connect() as sock:
            for i in range(100):
                assert first.ask(sock, f"PUT key{i:03d} value{i}") == "OK"
            assert first.ask(sock, "DEL key007") == "OK"
            assert first.ask(sock, "GET key042") == "VALUE value42"
            assert first.ask(sock, "GET key007") == "NONE"
            assert first.ask(sock, "FROB") == "ERR expected PUT key value, GET key or DEL key"
            idle = first.connect()  # left open and silent across the stop
        first.wait_for_log("groups ")  # the stats reporter runs while serving
        code, out, err = first.stop(signal.SIGTERM)
    finally:
        if first.process.poll() is None:
            first.process.kill()
    assert code == 0, err
    assert json.loads(out.strip().splitlines()[-1]) == {"event": "stopped"}
    assert "SIGTERM: stopping" in err
    assert "served 104 requests; closing the node and its storage" in err
    assert idle.recv(16) == b""  # the idle connection was closed, not left hanging
    idle.close()

    second = HostLoop(data_dir)  # the storage lock was released: the directory reopens
    try:
        with second.connect() as sock:
            for i in range(100):
                want = "NONE" if i == 7 else f"VALUE value{i}"
                assert second.ask(sock, f"GET key{i:03d}") == want
        code, out, err = second.stop(signal.SIGINT)
    finally:
        if second.process.poll() is None:
            second.process.kill()
    assert code == 0, err
    assert "SIGINT: stopping" in err


async def test_a_request_the_store_cannot_carry_out_is_answered_with_err() -> None:
    from examples.host_loop import LineServer
    from examples.rangekv.client import AmbiguousWriteError

    class LostWrites:
        async def put(self, key: bytes, value: bytes) -> None:
            raise AmbiguousWriteError("proposal in group 1 did not complete before the deadline")

    server = LineServer(LostWrites())  # type: ignore[arg-type]
    assert await server.execute(["PUT", "k", "v"]) == (
        "ERR AmbiguousWriteError: proposal in group 1 did not complete before the deadline"
    )
    assert await server.execute(["NOPE"]) == "ERR expected PUT key value, GET key or DEL key"
