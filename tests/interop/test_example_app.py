"""The example FastAPI app (examples/fastapi-app) on its own, under uvicorn, with no wsguard
behind it: it refuses to start without its settings, logs in and issues the tokens wsguard is
configured to trust, guards `/notify`, and serves its page under a CSP without inline script.
With wsguard: test_gateway.py."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import httpx
import jwt
import processes
import pytest

STATIC = processes.EXAMPLE_APP / "static"


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"SECRET_KEY": None}, "SECRET_KEY is not set"),
        ({"SECRET_KEY": "too-short"}, "shorter than 32"),
        (
            {"SECRET_KEY": "09d25e094faa6ca2556c818166b7a9563b93f7099f6f0f4caa6cf63b88e8d3e7"},
            "tutorial's published example",
        ),
        ({"WSGUARD_API_KEY": None}, "WSGUARD_API_KEY is not set"),
        ({"WSGUARD_URL": ""}, "WSGUARD_URL is not set"),
        ({"WSGUARD_PUBLIC_URL": "http://127.0.0.1:8000/connect"}, "ws:// or wss://"),
    ],
)
def test_it_refuses_to_start_without_its_settings(change, message):
    env = processes.app_env("f" * 8 + "0123456789abcdef" * 3, "http://127.0.0.1:9", "key", None)
    for name, value in change.items():
        if value is None:
            env.pop(name)
        else:
            env[name] = value
    argv = [sys.executable, "-m", "uvicorn", "main:app", "--app-dir", str(processes.EXAMPLE_APP)]
    argv += ["--port", "0"]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert message in done.stderr, done.stderr
    assert "Uvicorn running" not in done.stderr


def test_the_tutorials_login_issues_hs256_tokens_with_sub_iat_and_exp(app_alone):
    before = int(time.time())
    token = app_alone.token("johndoe", "secret")
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    claims = jwt.decode(token, app_alone.secret, algorithms=["HS256"])
    assert set(claims) == {"sub", "iat", "exp"}
    assert claims["sub"] == "johndoe"
    assert before <= claims["iat"] <= time.time() and claims["exp"] - claims["iat"] == 30 * 60

    me = httpx.get(f"{app_alone.url}/users/me/", headers=auth(token))
    assert me.status_code == 200
    assert me.json() == {
        "username": "johndoe",
        "email": "johndoe@example.com",
        "full_name": "John Doe",
        "disabled": False,
        "admin": False,
    }
    items = httpx.get(f"{app_alone.url}/users/me/items/", headers=auth(token))
    assert items.json() == [{"item_id": "Foo", "owner": "johndoe"}]


def test_bad_logins_and_tokens_are_refused(app_alone):
    url = app_alone.url
    for username, password in (("johndoe", "wrong"), ("nobody", "secret")):
        refused = httpx.post(f"{url}/token", data={"username": username, "password": password})
        assert refused.status_code == 401
        assert refused.json() == {"detail": "Incorrect username or password"}
        assert refused.headers["www-authenticate"] == "Bearer"
    disabled = httpx.post(f"{url}/token", data={"username": "alice", "password": "secret3"})
    assert (disabled.status_code, disabled.json()) == (400, {"detail": "Inactive user"})

    assert httpx.get(f"{url}/users/me/").status_code == 401
    token = app_alone.token("johndoe", "secret")
    forged = jwt.encode({"sub": "janedoe", "exp": int(time.time()) + 60}, "x" * 32, "HS256")
    expired = jwt.encode(
        {"sub": "johndoe", "exp": int(time.time()) - 60}, app_alone.secret, "HS256"
    )
    for bad in (token[:-2], forged, expired):
        assert httpx.get(f"{url}/users/me/", headers=auth(bad)).status_code == 401


def test_notify_is_for_oneself_or_an_admin_and_reports_an_unreachable_wsguard(app_alone):
    url = app_alone.url
    john = app_alone.token("johndoe", "secret")
    jane = app_alone.token("janedoe", "secret2")

    def notify(username: str, token: str | None, body: object) -> httpx.Response:
        headers = auth(token) if token else {}
        return httpx.post(f"{url}/notify/{username}", json=body, headers=headers, timeout=20)

    assert notify("johndoe", None, {"text": "hi"}).status_code == 401
    other = notify("janedoe", john, {"text": "hi"})
    assert (other.status_code, other.json()) == (
        403,
        {"detail": "Only an admin may notify another user"},
    )
    assert notify("nobody", jane, {"text": "hi"}).status_code == 404
    for bad in ({}, {"text": ""}, {"text": "x" * 1001}, {"text": 5}):
        assert notify("johndoe", john, bad).status_code == 422, bad
    # Allowed, but nothing listens at its WSGUARD_URL: a 502 that names nothing internal.
    for username, token in (("johndoe", john), ("johndoe", jane)):
        failed = notify(username, token, {"text": "hi"})
        assert (failed.status_code, failed.json()) == (
            502,
            {"detail": "Could not deliver the notification"},
        )


def test_the_page_is_static_under_a_csp_without_inline_script(app_alone):
    page = httpx.get(f"{app_alone.url}/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["script-src"] == "'self'"
    assert directives["default-src"] == "'none'"
    assert directives["connect-src"] == "'self' ws://127.0.0.1:8000"
    assert "unsafe" not in csp
    assert page.headers["x-content-type-options"] == "nosniff"

    html = page.text
    assert re.findall(r"<script[^>]*>", html) == ['<script type="module" src="/static/app.js">']
    assert not re.search(r"\son[a-z]+\s*=", html), "an inline event handler"
    script = httpx.get(f"{app_alone.url}/static/app.js")
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]
    assert script.text == (STATIC / "app.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script.text, sink
    assert "localStorage." not in script.text and "sessionStorage." not in script.text
    assert httpx.get(f"{app_alone.url}/static/style.css").status_code == 200
    # wsguard's JavaScript client, which the page imports, from this checkout.
    client = httpx.get(f"{app_alone.url}/js/wsguard.js")
    assert client.status_code == 200 and "javascript" in client.headers["content-type"]

    config = httpx.get(f"{app_alone.url}/config.json").json()
    assert config == {"wsguard_url": "ws://127.0.0.1:8000/connect"}


def test_the_examples_pins_are_the_tested_ones():
    def pins(path) -> dict[str, str]:
        """{name without extras: version}."""
        lines = (line.split("#")[0].strip() for line in path.read_text().splitlines())
        pairs = (line.split("==") for line in lines if line)
        return {name.split("[")[0].lower(): version for name, version in pairs}

    example = pins(processes.EXAMPLE_APP / "requirements.txt")
    tested = pins(processes.ROOT / "tests" / "interop" / "requirements.txt")
    assert "fastapi" in example
    assert {name: tested.get(name) for name in example} == example
