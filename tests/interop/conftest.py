"""Starts real processes for the clients from Python: wsguard (the binary under test) with the
demo users; and wsguard as the gateway of the example FastAPI app, with an outside JWKS issuer."""

import contextlib
import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import processes
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("WSGUARD_BIN", os.path.join(ROOT, "target", "debug", "wsguard"))


@contextlib.contextmanager
def _serve(*extra):
    with tempfile.TemporaryDirectory() as data:
        subprocess.run([BIN, "demo", "--data-dir", data], check=True, capture_output=True)
        proc = subprocess.Popen(
            [BIN, "serve", "--bind", "127.0.0.1:0", "--data-dir", data, *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            line = proc.stdout.readline().strip()
            assert line.startswith("wsguard listening on http://"), line
            yield line.removeprefix("wsguard listening on ")
        finally:
            proc.terminate()
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def server():
    with _serve() as base:
        yield base


@pytest.fixture(scope="module", params=["RS256", "ES256", "EdDSA"])
def asymmetric_server(request):
    """A server signing with `request.param`: yields (base URL, algorithm)."""
    with _serve("--jwt-alg", request.param) as base:
        yield base, request.param


# --- wsguard as the gateway of the example FastAPI app (test_gateway.py, test_example_app.py) --


@dataclass
class Gateway:
    """wsguard trusting the example app (HS256, shared secret) and the JWKS issuer (RS256), with
    the app running beside it with its own API key."""

    wsguard: processes.Wsguard
    app: processes.ExampleApp
    issuer: processes.JwksIssuer
    #: Scopes publish, disconnect, read: the example app's key.
    api_key: str
    #: Scope read only.
    read_key: str


def gateway_config(secret_file: Path, issuer: str, app_origin: str) -> str:
    """wsguard.toml as the example's README tells, plus the issuer and namespaces the tests use.
    Strings are written as JSON strings, which TOML reads alike."""
    q = json.dumps
    return f"""
allowed_origins = [{q(app_origin)}]

# The example app: HS256 with the shared secret, tokens {{"sub", "iat", "exp"}} without `iss`.
[[trusted_issuers]]
secret_file = {q(str(secret_file))}
username_claim = "sub"

[[trusted_issuers]]
issuer = {q(issuer)}
jwks_url = {q(issuer + ".well-known/jwks.json")}
audience = "wsguard"

[[namespaces]]
name = "news"
subscribe = "any"
publish = "api"
history_size = 100
history_ttl = "24h"
presence = false

[[namespaces]]
name = "room"
subscribe = "any"
publish = "subscribers"
presence = true

[[namespaces]]
name = "live"
subscribe = "any"
history_size = 0

# The documents page: the app's session cookie admits sockets, its data who follows a document.
[proxy]
connect = {q(app_origin + "/rt/connect")}
forward_headers = ["Cookie"]

[[namespaces]]
name = "doc"
subscribe = "proxy"
subscribe_proxy = {q(app_origin + "/rt/subscribe")}
presence = true
"""


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gateway")
    with contextlib.ExitStack() as stack:
        app_socket = stack.enter_context(processes.listening_socket())
        app_origin = f"http://127.0.0.1:{app_socket.getsockname()[1]}"
        issuer = stack.enter_context(processes.jwks_issuer(tmp / "jwks-issuer.log"))
        secret_file, secret = processes.new_app_secret(tmp)
        config = tmp / "wsguard.toml"
        config.write_text(gateway_config(secret_file, issuer.url, app_origin))
        wsguard = stack.enter_context(processes.wsguard(tmp / "data", config, tmp / "wsguard.log"))
        api_key = wsguard.apikey("example-app", "publish,disconnect,read")
        read_key = wsguard.apikey("dashboard", "read")
        env = processes.app_env(secret, wsguard.url, api_key, wsguard.connect_url)
        app = stack.enter_context(processes.example_app(app_socket, env, tmp / "app.log"))
        yield Gateway(wsguard, app, issuer, api_key, read_key)


@pytest.fixture(scope="module")
def app_alone(tmp_path_factory):
    """The example app with no wsguard behind it (its WSGUARD_URL refuses connections)."""
    tmp = tmp_path_factory.mktemp("app")
    with contextlib.ExitStack() as stack:
        app_socket = stack.enter_context(processes.listening_socket())
        with processes.listening_socket() as taken:  # a port, closed again: nothing listens there
            nowhere = f"http://127.0.0.1:{taken.getsockname()[1]}"
        _, secret = processes.new_app_secret(tmp)
        env = processes.app_env(secret, nowhere, "not-a-real-key", "ws://127.0.0.1:8000/connect")
        yield stack.enter_context(processes.example_app(app_socket, env, tmp / "app.log"))
