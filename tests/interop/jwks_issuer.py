"""An outside token issuer for the tests, run as a process of its own: RS256 tokens from a key
ring published as a JWKS, as an identity provider (or an application with asymmetric keys) does.

    python tests/interop/jwks_issuer.py [--port 0]

prints `jwks issuer listening on http://127.0.0.1:PORT/` once it accepts connections. That URL
is its `iss`. Endpoints:

- `GET /.well-known/jwks.json`: the listed public keys (`kid`, `alg` RS256, `use` sig);
- `POST /token?sub=NAME[&ttl=SECONDS][&aud=AUD][&iss=ISS][&forge=1]`: a token signed by the
  current key, with `iss` (this URL unless given), `aud` ("wsguard" unless given), `sub`, `iat`,
  `exp` (`ttl`, 300 s by default), `jti`, and the key's `kid` in the header. `forge=1` signs with
  a throwaway key under the current `kid`: a token no published key verifies.
  Answers `{"access_token", "token_type", "expires_in", "kid"}`;
- `POST /rotate[?drop_old=1]`: a new key signs from now on and is listed; the older ones stay
  listed (their tokens keep verifying) unless `drop_old=1`. Answers `{"kid", "listed"}`.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa


def _b64(number: int) -> str:
    raw = number.to_bytes((number.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class KeyRing:
    """The signing keys, newest last; `listed` are those the JWKS publishes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: list[tuple[str, rsa.RSAPrivateKey]] = []
        self._listed: set[str] = set()
        self.rotate(drop_old=False)

    @staticmethod
    def _new() -> tuple[str, rsa.RSAPrivateKey]:
        return f"rs256-{uuid.uuid4().hex[:12]}", rsa.generate_private_key(65537, 2048)

    def rotate(self, drop_old: bool) -> tuple[str, list[str]]:
        kid, key = self._new()
        with self._lock:
            self._keys.append((kid, key))
            if drop_old:
                self._listed.clear()
            self._listed.add(kid)
            return kid, [k for k, _ in self._keys if k in self._listed]

    def current(self) -> tuple[str, rsa.RSAPrivateKey]:
        with self._lock:
            return self._keys[-1]

    def jwks(self) -> dict[str, Any]:
        with self._lock:
            keys = [(kid, key) for kid, key in self._keys if kid in self._listed]
        published = []
        for kid, key in keys:
            numbers = key.public_key().public_numbers()
            published.append(
                {
                    "kty": "RSA",
                    "kid": kid,
                    "alg": "RS256",
                    "use": "sig",
                    "n": _b64(numbers.n),
                    "e": _b64(numbers.e),
                }
            )
        return {"keys": published}


class Handler(BaseHTTPRequestHandler):
    ring: KeyRing
    issuer: str

    def do_GET(self) -> None:
        if urlsplit(self.path).path == "/.well-known/jwks.json":
            self._json(200, self.ring.jwks())
        else:
            self._json(404, {"detail": "Not Found"})

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        if url.path == "/token":
            self._token(query)
        elif url.path == "/rotate":
            kid, listed = self.ring.rotate(drop_old=query.get("drop_old") == "1")
            self._json(200, {"kid": kid, "listed": listed})
        else:
            self._json(404, {"detail": "Not Found"})

    def _token(self, query: dict[str, str]) -> None:
        sub = query.get("sub", "")
        ttl = query.get("ttl", "300")
        if not sub or not ttl.isdigit():
            self._json(422, {"detail": "sub is required; ttl is whole seconds"})
            return
        kid, key = self.ring.current()
        if query.get("forge") == "1":
            key = rsa.generate_private_key(65537, 2048)
        now = int(time.time())
        claims = {
            "iss": query.get("iss", self.issuer),
            "aud": query.get("aud", "wsguard"),
            "sub": sub,
            "iat": now,
            "exp": now + int(ttl),
            "jti": uuid.uuid4().hex,
        }
        token = jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})
        body = {"access_token": token, "token_type": "bearer", "expires_in": int(ttl), "kid": kid}
        self._json(200, body)

    def _json(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write("jwks issuer: " + format % args + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    port = server.server_address[1]
    Handler.ring = KeyRing()
    Handler.issuer = f"http://{args.host}:{port}/"
    print(f"jwks issuer listening on {Handler.issuer}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
