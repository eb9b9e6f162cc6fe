"""A third party verifies wsguard's tokens with PyJWT, knowing nothing but the JWKS URL."""

import jwt
import requests


def test_pyjwt_verifies_tokens_with_only_the_jwks(asymmetric_server):
    base, alg = asymmetric_server
    response = requests.post(f"{base}/token", data={"username": "johndoe", "password": "secret"})
    response.raise_for_status()
    token = response.json()["access_token"]

    signing_key = jwt.PyJWKClient(f"{base}/.well-known/jwks.json").get_signing_key_from_jwt(token)
    claims = jwt.decode(
        token,
        signing_key.key,
        algorithms=[alg],
        issuer="wsguard",
        options={"require": ["exp", "iat", "nbf", "sub", "iss"]},
    )
    assert claims["sub"] == "johndoe"
    assert claims["type"] == "access"
    assert jwt.get_unverified_header(token)["kid"] == signing_key.key_id

    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    try:
        jwt.decode(forged, signing_key.key, algorithms=[alg], issuer="wsguard")
    except jwt.InvalidSignatureError:
        pass
    else:
        raise AssertionError("a tampered signature verified")
