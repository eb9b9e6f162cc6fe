"""Starting the real processes the interop tests talk to (wsguard, the example FastAPI app, the
JWKS issuer), waiting until they accept requests, and always ending them. Each one's stderr goes
to a log file that a failure quotes."""

from __future__ import annotations

import contextlib
import os
import secrets
import selectors
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("WSGUARD_BIN", str(ROOT / "target" / "debug" / "wsguard"))
EXAMPLE_APP = ROOT / "examples" / "fastapi-app"
JWKS_ISSUER = Path(__file__).resolve().parent / "jwks_issuer.py"
START_TIMEOUT = 30.0


def _tail(log: Path) -> str:
    try:
        return log.read_text(errors="replace")[-3000:]
    except OSError:
        return "(no log)"


@contextlib.contextmanager
def running(
    argv: list[str],
    log: Path,
    env: dict[str, str] | None = None,
    pass_fds: tuple[int, ...] = (),
    cwd: Path | None = None,
) -> Iterator[subprocess.Popen[str]]:
    """`argv` as a process (stdout a pipe, stderr into `log`), terminated (then killed) on exit."""
    with log.open("w") as err:
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=err,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
            pass_fds=pass_fds,
            cwd=cwd,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout:
            proc.stdout.close()


def first_line(proc: subprocess.Popen[str], log: Path, prefix: str) -> str:
    """The process's first stdout line, which must start with `prefix`: the rest of it."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        if not selector.select(timeout=START_TIMEOUT):
            raise AssertionError(
                f"{proc.args[0]} printed nothing in {START_TIMEOUT}s:\n{_tail(log)}"
            )
    line = proc.stdout.readline().strip()
    if not line.startswith(prefix):
        if not line:  # it is exiting: let the message say with what
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        raise AssertionError(
            f"{' '.join(map(str, proc.args))}: expected {prefix!r}, got {line!r} "
            f"(exit {proc.poll()}):\n{_tail(log)}"
        )
    return line.removeprefix(prefix)


def listening_socket() -> socket.socket:
    """A loopback socket already listening on a free port: handed to uvicorn (`--fd`), so the port
    is known before the app starts and no other process can take it meanwhile."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def private_file(path: Path, contents: str) -> Path:
    """A file only its owner may read (0600), as wsguard demands of secrets."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(contents)
    return path


def new_app_secret(directory: Path) -> tuple[Path, str]:
    """The example app's HS256 secret: `openssl rand -hex 32` style, in a 0600 file for wsguard
    and as the text the app gets in SECRET_KEY."""
    secret = secrets.token_hex(32)
    return private_file(directory / "app.secret", secret + "\n"), secret


# --- the example app -------------------------------------------------------------------------


@dataclass
class ExampleApp:
    url: str
    proc: subprocess.Popen[str]
    #: Its SECRET_KEY.
    secret: str

    def token(self, username: str, password: str) -> str:
        response = httpx.post(
            f"{self.url}/token", data={"username": username, "password": password}, timeout=10
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["token_type"] == "bearer"
        return str(body["access_token"])


def app_env(secret: str, wsguard_url: str, api_key: str, public_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WSGUARD_")}
    env.update(SECRET_KEY=secret, WSGUARD_URL=wsguard_url, WSGUARD_API_KEY=api_key)
    if public_url is not None:
        env["WSGUARD_PUBLIC_URL"] = public_url
    return env


@contextlib.contextmanager
def example_app(sock: socket.socket, env: dict[str, str], log: Path) -> Iterator[ExampleApp]:
    """The example app under uvicorn on `sock`, once it answers."""
    argv = [sys.executable, "-m", "uvicorn", "main:app", "--app-dir", str(EXAMPLE_APP)]
    argv += ["--fd", str(sock.fileno()), "--log-level", "warning"]
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with running(argv, log, env=env, pass_fds=(sock.fileno(),)) as proc:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                raise AssertionError(
                    f"the example app exited with {proc.returncode}:\n{_tail(log)}"
                )
            try:
                if httpx.get(f"{url}/config.json", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"the example app did not answer in {START_TIMEOUT}s:\n{_tail(log)}"
                )
            time.sleep(0.1)
        yield ExampleApp(url, proc, env["SECRET_KEY"])


# --- the JWKS issuer -------------------------------------------------------------------------


@dataclass
class JwksIssuer:
    #: Its `iss`, with the trailing slash.
    url: str

    def token(self, sub: str, **params: str) -> dict[str, object]:
        response = httpx.post(f"{self.url}token", params={"sub": sub, **params}, timeout=10)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def rotate(self, drop_old: bool = False) -> dict[str, object]:
        params = {"drop_old": "1"} if drop_old else {}
        response = httpx.post(f"{self.url}rotate", params=params, timeout=30)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def jwks(self) -> dict[str, object]:
        return dict(httpx.get(f"{self.url}.well-known/jwks.json", timeout=10).json())


@contextlib.contextmanager
def jwks_issuer(log: Path) -> Iterator[JwksIssuer]:
    with running([sys.executable, str(JWKS_ISSUER), "--port", "0"], log) as proc:
        yield JwksIssuer(first_line(proc, log, "jwks issuer listening on "))


# --- wsguard ---------------------------------------------------------------------------------


@dataclass
class Wsguard:
    url: str
    data_dir: Path
    config: Path

    @property
    def connect_url(self) -> str:
        return self.url.replace("http://", "ws://", 1) + "/connect"

    def apikey(self, name: str, scopes: str) -> str:
        """`wsguard apikey add`: the key, the only line it prints."""
        argv = [BIN, "--config", str(self.config), "apikey", "add", name, "--scopes", scopes]
        argv += ["--data-dir", str(self.data_dir)]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"{' '.join(argv)} exited {done.returncode}: {done.stderr}"
        lines = done.stdout.splitlines()
        assert len(lines) == 1 and lines[0].strip(), f"expected the key alone, got {done.stdout!r}"
        return lines[0].strip()


@contextlib.contextmanager
def wsguard(data_dir: Path, config: Path, log: Path) -> Iterator[Wsguard]:
    argv = [BIN, "--config", str(config), "serve", "--bind", "127.0.0.1:0"]
    argv += ["--data-dir", str(data_dir)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("WSGUARD_")}
    with running(argv, log, env=env) as proc:
        yield Wsguard(first_line(proc, log, "wsguard listening on "), data_dir, config)
