#!/usr/bin/env python3
"""Writes the hand-made seeds of each fuzz target into fuzz/corpus/<target>/.

Run once when a target or its input shapes change, then `fuzz/run.sh cmin` to fold
them into the minimised corpus. The tokens are signed with fixtures/signing-key.pem,
the key the jwt_verify harness publishes, so they reach signature verification. Needs
Python 3 with the `cryptography` package (for the signatures and the extra PEM keys).
"""
import base64
import hashlib
import json
import pathlib

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

FUZZ = pathlib.Path(__file__).resolve().parent.parent
ISSUER = "https://issuer.fuzz.invalid"
AUDIENCE = "https://api.fuzz.invalid"
KEY = serialization.load_pem_private_key((FUZZ / "fixtures/signing-key.pem").read_bytes(), None)


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def uint(n: int) -> bytes:
    return n.to_bytes((n.bit_length() + 7) // 8, "big")


def jwk_of(public) -> dict:
    nums = public.public_numbers()
    n, e = b64u(uint(nums.n)), b64u(uint(nums.e))
    canonical = json.dumps({"e": e, "kty": "RSA", "n": n}, separators=(",", ":"))
    kid = b64u(hashlib.sha256(canonical.encode()).digest())
    return {"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid, "n": n, "e": e}


KID = jwk_of(KEY.public_key())["kid"]


def jwt(header: dict, claims, sign=True) -> str:
    body = claims if isinstance(claims, str) else json.dumps(claims, separators=(",", ":"))
    head = b64u(json.dumps(header, separators=(",", ":")).encode()) + "." + b64u(body.encode())
    if not sign:
        return head + "."
    sig = KEY.sign(head.encode(), padding.PKCS1v15(), hashes.SHA256())
    return head + "." + b64u(sig)


def write(target: str, seeds: dict) -> None:
    folder = FUZZ / "corpus" / target
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in seeds.items():
        (folder / f"seed-{name}").write_bytes(data if isinstance(data, bytes) else data.encode())


access = {
    "iss": ISSUER, "sub": "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "aud": AUDIENCE,
    "client_id": "web", "scope": "openid profile", "jti": "b3BhcXVlLWp0aQ",
    "iat": 1700000000, "exp": 4102444800, "sid": "ZmFtaWx5",
}
id_token = {"iss": ISSUER, "sub": access["sub"], "aud": "web", "iat": 1700000000,
            "exp": 1700000900, "sid": "ZmFtaWx5", "nonce": "n-0S6_WzA2Mj"}
at = {"alg": "RS256", "typ": "at+jwt", "kid": KID}
write("jwt_verify", {
    "access": jwt(at, access),
    "access-media-type": jwt({**at, "typ": "application/at+jwt"}, access),
    "expired": jwt(at, {**access, "exp": 1700000900}),
    "wrong-audience": jwt(at, {**access, "aud": "https://other.invalid"}),
    "id-token-hint": jwt({**at, "typ": "JWT"}, id_token),
    "no-kid": jwt({"alg": "RS256", "typ": "at+jwt"}, access),
    "unknown-kid": jwt({**at, "kid": "not-a-published-kid"}, access),
    "alg-none": jwt({"alg": "none", "typ": "at+jwt", "kid": KID}, access, sign=False),
    "alg-hs256": jwt({**at, "alg": "HS256"}, access),
    "claims-access": json.dumps(access),
    "claims-id-token": json.dumps(id_token),
    "claims-aud-array": json.dumps({**access, "aud": [AUDIENCE, "x"]}),
    "claims-odd-times": json.dumps({**access, "exp": 4.1e9, "iat": -1, "nbf": 1e300}),
})

write("token_form", {
    "code": "grant_type=authorization_code&code=c0de&redirect_uri=https%3A%2F%2Fapp.example%2Fcb"
            "&code_verifier=dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk&client_id=web",
    "client-credentials": "grant_type=client_credentials&scope=read+write&client_id=svc&client_secret=s3cr%2Bt",
    "refresh": "grant_type=refresh_token&refresh_token=cmVmcmVzaA&scope=openid",
    "password": "grant_type=password&username=alice&password=p%40ss+word%21",
    "repeated": "scope=&scope=read",
    "nul": "username=a%00b",
    "authorize-query": "response_type=code&client_id=web&state=xyz&code_challenge_method=S256"
                       "&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&nonce=n",
    "basic-header": "Basic d2ViOnMzY3IldA==",
    "bearer-header": "Bearer eyJhbGciOiJSUzI1NiJ9.e30.",
    "basic-decoded": "my%20client:s%3Acret+x",
})

write("client_input", {
    "public-client": json.dumps({
        "client_id": "web", "name": "Web app", "public": True,
        "grant_types": ["authorization_code", "refresh_token"],
        "redirect_uris": ["https://app.example/cb", "http://127.0.0.1:8080/cb"],
        "post_logout_redirect_uris": ["https://app.example/"],
        "scopes": ["openid", "profile", "email"], "token_endpoint_auth_method": "none",
    }),
    "admin-client": json.dumps({
        "client_id": "ops", "grant_types": ["client_credentials"], "admin": True,
        "scopes": ["latchkey:admin"], "token_endpoint_auth_method": "client_secret_post",
        "access_token_ttl": 300, "audience": "https://api.example",
    }),
    "resource-server": json.dumps({"resource_server": True, "refresh_token_ttl": 86400,
                                   "first_party": False, "scopes": ["read:things"]}),
    "https": "https://app.example/cb?x=1",
    "loopback": "http://[::1]:4000/callback",
    "userinfo-trick": "http://localhost:1@evil.example/cb",
    "scope": "openid profile read:things",
    "scope-bad": 're"ad write',
})

write("durations", {
    "seconds": "900", "s": "90s", "m": "15m", "h": "1h", "d": "14d", "overflow": "18446744073709551615d",
    "rate": "100 per hour", "rate-slash": "10/minute", "rate-period": "5 per 10s", "off": "off",
    "routes": "/auth/login=60 per minute,/auth/register=30 per minute,/oauth/token=off",
    "cidr": "10.0.0.0/8", "ipv6": "::1", "cidr6": "fd00::/8",
})

pkcs8 = (FUZZ / "fixtures/signing-key.pem").read_bytes()
pkcs1 = KEY.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                          serialization.NoEncryption())
short = rsa.generate_private_key(65537, 1024).private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
ec_key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
public = KEY.public_key().public_bytes(serialization.Encoding.PEM,
                                       serialization.PublicFormat.SubjectPublicKeyInfo)
write("key_pem", {
    "pkcs8": pkcs8, "pkcs1": pkcs1, "rsa-1024": short, "ec": ec_key, "public-only": public,
    "truncated": pkcs8[: len(pkcs8) // 2],
})

jwk = jwk_of(KEY.public_key())
write("jwk", {
    "fixture": json.dumps(jwk),
    "rfc7638-example": json.dumps({
        "kty": "RSA", "use": "sig", "alg": "RS256", "kid": "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPeb"
             "WKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368Q"
             "QMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2"
             "NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
        "e": "AQAB",
    }),
    "bad-base64": json.dumps({**jwk, "n": "not base64!"}),
    "ec": json.dumps({**jwk, "kty": "EC"}),
    "tiny": json.dumps({**jwk, "n": "AQ", "e": "AQ"}),
})
