"""Real servers a fault test can stop and start: redis-server and a PostgreSQL cluster on ports of their own,
gunicorn and RQ workers as processes. Used by tests/test_faults*.py and bench/faults.py.

Missing binaries skip the tests that need them with the reason, except in CI (CI=true), where .ci/run
installs them and a skip would hide an untested fault.
"""
from __future__ import annotations

import glob
import http.client
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


# The job tests' Redis (RQ queues and job records under a prefix of each test's own).
REDIS_URL = os.environ.get("VISAGE_TEST_REDIS_URL", "redis://127.0.0.1:6379/11")


def redis_for_tests():
    """A connection to the job tests' Redis, or the test skipped with the reason (.ci/run starts one)."""
    import pytest
    redis = pytest.importorskip("redis")
    connection = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        connection.ping()
    except redis.RedisError as e:
        pytest.skip(f"RQ tests need Redis at {REDIS_URL} (.ci/run starts one): {e}")
    return connection


class Unavailable(RuntimeError):
    """A server binary is missing here."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_for(predicate, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"{what}: not within {timeout:.0f} s")


def wait_for_status(store, job_id: str, statuses=("done", "failed", "cancelled"), timeout: float = 180):
    """A video or batch job's record once its status is one of `statuses` (`store` is its jobs' service)."""
    try:
        return wait_for(lambda: (record := store.get(job_id))["status"] in statuses and record, timeout,
                        f"job {job_id}", interval=0.05)
    except TimeoutError:
        raise AssertionError(f"job {job_id} still {store.get(job_id)['status']} after {timeout:.0f} s") from None


class RedisServer:
    """redis-server on a free port; without `persistent` a restart loses everything (as a cache-only Redis),
    with it every write is appended to a file first (appendonly, fsync always) and survives the restart."""

    def __init__(self, persistent: bool = False):
        self.binary = shutil.which("redis-server")
        if not self.binary:
            raise Unavailable("redis-server is not installed (Debian: apt-get install redis-server)")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = None
        self.folder = tempfile.mkdtemp(prefix="visage-redis-")
        self.persistence = ["--appendonly", "yes", "--appendfsync", "always"] if persistent else ["--appendonly", "no"]

    def start(self) -> "RedisServer":
        self.proc = subprocess.Popen([self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--dir", self.folder, *self.persistence],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: port_open(self.port), 20, "redis-server start")
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)
        wait_for(lambda: not port_open(self.port), 10, "redis-server stop")


class PostgresServer:
    """A PostgreSQL cluster of its own (initdb + pg_ctl in a temporary folder, as user postgres when root)."""

    def __init__(self):
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        if not bins:
            raise Unavailable("PostgreSQL server binaries are missing (/usr/lib/postgresql/*/bin; Debian: postgresql)")
        self.bin = Path(bins[-1]).parent
        self.user = "postgres" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                raise Unavailable("running as root without a postgres user to run the server as") from None
        self.folder = Path(tempfile.mkdtemp(prefix="visage-pg-"))
        self.data = self.folder / "data"
        self.port = free_port()
        self.url = f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/postgres"
        if os.geteuid() == 0:
            shutil.chown(self.folder, self.user)
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", self.user, "--no-sync")

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        command = [str(self.bin / tool), *args]
        if os.geteuid() == 0:
            command = ["su", self.user, "-s", "/bin/sh", "-c", " ".join(f"'{a}'" for a in command)]
        return subprocess.run(command, capture_output=True, text=True, timeout=120, check=check,
                              cwd=str(self.folder))

    def start(self) -> "PostgresServer":
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.folder / "log"), "-w", "start")
        wait_for(lambda: port_open(self.port), 30, "PostgreSQL start")
        return self

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop", check=False)
        wait_for(lambda: not port_open(self.port), 30, "PostgreSQL stop")

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


def request(port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
         timeout: float = 60) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def multipart(fields: dict, files: dict) -> tuple[bytes, str]:
    """A multipart/form-data body: fields {name: value}, files {name: (filename, bytes)}."""
    boundary = "visage-test-boundary-7d1e"
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, (filename, data) in files.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                     f'Content-Type: application/octet-stream\r\n\r\n'.encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def python_env(**settings) -> dict:
    env = {**os.environ, **{k: str(v) for k, v in settings.items()}}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def start_gunicorn(env: dict, port: int, log_path: Path, workers: int = 1, extra: tuple = ()) -> subprocess.Popen:
    """The real server with gunicorn.conf.py (what `make run` uses); returns once /api/v1/health answers."""
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--bind",
                                 f"127.0.0.1:{port}", "--workers", str(workers), *extra, "wsgi:app"],
                                cwd=ROOT, env=env, start_new_session=True, stdout=log, stderr=log)

    def up():
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited ({proc.returncode}): {log_path.read_text()[-3000:]}")
        try:
            return request(port, "GET", "/api/v1/health", timeout=5)[0] == 200
        except OSError:
            return False
    wait_for(up, 180, "gunicorn start", interval=0.5)
    return proc


def start_worker(env: dict, log_path: Path, name: str) -> subprocess.Popen:
    with open(log_path, "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "app.jobs.worker", "--name", name], cwd=ROOT, env=env,
                                start_new_session=True, stdout=log, stderr=log)


def stop_process(proc: subprocess.Popen, sig=signal.SIGTERM, timeout: float = 60) -> int | None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    return proc.returncode
