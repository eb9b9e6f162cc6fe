"""Starts a real wsguard (the binary under test) with the demo users, for clients from Python."""
import contextlib
import os
import subprocess
import tempfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("WSGUARD_BIN", os.path.join(ROOT, "target", "debug", "wsguard"))


@contextlib.contextmanager
def _serve(*extra):
    with tempfile.TemporaryDirectory() as data:
        subprocess.run([BIN, "demo", "--data-dir", data], check=True, capture_output=True)
        proc = subprocess.Popen(
            [BIN, "serve", "--bind", "127.0.0.1:0", "--data-dir", data, *extra],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
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
