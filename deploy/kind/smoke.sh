#!/usr/bin/env bash
# deploy/kind/smoke.sh — smoke test of a Latchkey deployed by deploy/kind/up.sh:
#
#   1. `kubectl port-forward` the service to 127.0.0.1:$LOCAL_PORT; wait for /health
#   2. read client_id and client_secret from the Secret the operator wrote for the
#      client_credentials example (examples/oauthclient-service.yaml -> reports-oauth)
#   3. POST /oauth/token grant_type=client_credentials, client_secret_basic (README,
#      "Client credentials")
#   4. GET /.well-known/jwks.json and check the access token: header alg RS256, typ
#      at+jwt, a kid that JWKS publishes, the RS256 signature against that key
#      (PKCS#1 v1.5 / SHA-256, checked in plain python3), iss = the Secret's issuer,
#      client_id = the Secret's client_id, exp in the future
#
# Prints PASS or FAIL; exits 0 only on PASS. Needs kubectl and python3 (no modules
# outside the standard library).
#
# Environment (defaults in brackets):
#   CONTEXT     kubectl context [kind-latchkey]
#   NAMESPACE   [latchkey]
#   SERVICE     the service's Service [latchkey]
#   SERVICE_PORT  its port [the port named http, else the first port]
#   LOCAL_PORT  local end of the port-forward [8080; matches up.sh's default issuer]
#   SECRET      the client's credentials Secret [reports-oauth]
#   SCOPE       scope to request [none: the client's whole allowed set]
set -Eeuo pipefail

CONTEXT=${CONTEXT:-kind-latchkey}
NAMESPACE=${NAMESPACE:-latchkey}
SERVICE=${SERVICE:-latchkey}
SERVICE_PORT=${SERVICE_PORT:-}
LOCAL_PORT=${LOCAL_PORT:-8080}
SECRET=${SECRET:-reports-oauth}
SCOPE=${SCOPE:-}

PF_PID=
PF_LOG=
cleanup() {
    if [[ -n $PF_PID ]]; then
        kill "$PF_PID" 2>/dev/null || true
        wait "$PF_PID" 2>/dev/null || true
    fi
    if [[ -n $PF_LOG ]]; then
        rm -f -- "$PF_LOG"
    fi
}
trap cleanup EXIT
fail() {
    printf 'smoke: %s\n' "$*" >&2
    if [[ -n $PF_LOG && -s $PF_LOG ]]; then
        printf 'smoke: kubectl port-forward said:\n' >&2
        sed 's/^/    /' "$PF_LOG" >&2
    fi
    echo FAIL
    exit 1
}
kn() { kubectl --context "$CONTEXT" --namespace "$NAMESPACE" "$@"; }

command -v kubectl >/dev/null 2>&1 || fail "kubectl is not on PATH"
command -v python3 >/dev/null 2>&1 || fail "python3 is not on PATH"

kn get service "$SERVICE" >/dev/null 2>&1 || {
    kn get services >&2 || true
    fail "no Service $SERVICE in namespace $NAMESPACE (context $CONTEXT); set SERVICE="
}
if [[ -z $SERVICE_PORT ]]; then
    SERVICE_PORT=$(kn get service "$SERVICE" -o jsonpath='{.spec.ports[?(@.name=="http")].port}')
    [[ -n $SERVICE_PORT ]] || SERVICE_PORT=$(kn get service "$SERVICE" -o jsonpath='{.spec.ports[0].port}')
fi
[[ $SERVICE_PORT =~ ^[0-9]+$ ]] || fail "cannot tell the port of Service $SERVICE; set SERVICE_PORT="

# The client's credentials, as JSON on python's stdin below (never on a command line).
secret_json=$(kn get secret "$SECRET" -o json) || fail "cannot read Secret $SECRET"

echo "smoke: port-forward svc/$SERVICE $LOCAL_PORT:$SERVICE_PORT (context $CONTEXT, namespace $NAMESPACE)"
PF_LOG=$(mktemp)
kn port-forward "service/$SERVICE" "$LOCAL_PORT:$SERVICE_PORT" --address 127.0.0.1 >"$PF_LOG" 2>&1 &
PF_PID=$!

BASE_URL=http://127.0.0.1:$LOCAL_PORT
ready=0
for ((i = 0; i < 30; i++)); do
    kill -0 "$PF_PID" 2>/dev/null || fail "kubectl port-forward exited (is local port $LOCAL_PORT free? set LOCAL_PORT=)"
    if python3 - "$BASE_URL/health" <<'EOF' 2>/dev/null; then
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=2) as r:
    sys.exit(0 if r.status == 200 else 1)
EOF
        ready=1
        break
    fi
    sleep 1
done
((ready)) || fail "$BASE_URL/health did not answer 200 within 30s"

# The check, in python3 (standard library only): the Secret's JSON on stdin.
read -r -d '' CHECK_TOKEN <<'EOF' || true
import base64, hashlib, json, os, sys, time, urllib.error, urllib.parse, urllib.request

def die(msg):
    print(f"smoke: {msg}", file=sys.stderr)
    sys.exit(1)

def b64url(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))

secret = json.load(sys.stdin)
data = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
for key in ("client_id", "client_secret", "issuer"):
    if not data.get(key):
        die(f"Secret {secret['metadata']['name']} has no {key}")
client_id, client_secret = data["client_id"], data["client_secret"]
base = os.environ["BASE_URL"]
print(f"smoke: client_id {client_id}, issuer {data['issuer']}")

# RFC 6749 2.3.1: client_secret_basic credentials are form-urlencoded, then base64.
cred = f"{urllib.parse.quote_plus(client_id)}:{urllib.parse.quote_plus(client_secret)}"
form = {"grant_type": "client_credentials"}
if os.environ.get("SCOPE"):
    form["scope"] = os.environ["SCOPE"]
req = urllib.request.Request(
    base + "/oauth/token",
    data=urllib.parse.urlencode(form).encode(),
    headers={
        "Authorization": "Basic " + base64.b64encode(cred.encode()).decode(),
        "Content-Type": "application/x-www-form-urlencoded",
        "Accept": "application/json",
    },
    method="POST",
)
try:
    with urllib.request.urlopen(req, timeout=10) as r:
        body = json.load(r)
except urllib.error.HTTPError as e:
    die(f"POST /oauth/token answered {e.code}: {e.read().decode(errors='replace')}")
if body.get("token_type", "").lower() != "bearer" or "access_token" not in body:
    die(f"unexpected token response: {sorted(body)}")
if "refresh_token" in body:
    die("client_credentials returned a refresh token")
print(f"smoke: token issued: expires_in {body.get('expires_in')}, scope {body.get('scope')!r}")

token = body["access_token"]
parts = token.split(".")
if len(parts) != 3:
    die("the access token is not a JWS compact serialization")
header, claims = json.loads(b64url(parts[0])), json.loads(b64url(parts[1]))
if header.get("alg") != "RS256":
    die(f"alg is {header.get('alg')!r}, expected RS256")
if header.get("typ", "").lower() not in ("at+jwt", "application/at+jwt"):
    die(f"typ is {header.get('typ')!r}, expected at+jwt (RFC 9068)")
kid = header.get("kid")
if not kid:
    die("the token header has no kid")

with urllib.request.urlopen(base + "/.well-known/jwks.json", timeout=10) as r:
    jwks = json.load(r)
keys = {k.get("kid"): k for k in jwks.get("keys", [])}
print(f"smoke: JWKS publishes {len(keys)} key(s); token kid {kid}")
if kid not in keys:
    die(f"kid {kid} is not in JWKS ({sorted(k for k in keys if k)})")
jwk = keys[kid]
if jwk.get("kty") != "RSA":
    die(f"JWK {kid} has kty {jwk.get('kty')!r}")

# RS256 = RSASSA-PKCS1-v1_5 with SHA-256 (RFC 7518 3.3, RFC 8017 8.2.2).
n = int.from_bytes(b64url(jwk["n"]), "big")
e = int.from_bytes(b64url(jwk["e"]), "big")
k_len = (n.bit_length() + 7) // 8
sig = b64url(parts[2])
if len(sig) != k_len:
    die("signature length does not match the key")
em = pow(int.from_bytes(sig, "big"), e, n).to_bytes(k_len, "big")
digest_info = bytes.fromhex("3031300d060960864801650304020105000420")
digest = hashlib.sha256(f"{parts[0]}.{parts[1]}".encode()).digest()
expected = b"\x00\x01" + b"\xff" * (k_len - 3 - len(digest_info) - len(digest)) + b"\x00" + digest_info + digest
if em != expected:
    die(f"RS256 signature does not verify with JWKS key {kid}")
print("smoke: signature verifies with the published key")

now = time.time()
if claims.get("iss") != data["issuer"]:
    die(f"iss {claims.get('iss')!r} differs from the Secret's issuer {data['issuer']!r}")
if claims.get("client_id") != client_id:
    die(f"client_id claim {claims.get('client_id')!r}, expected {client_id!r}")
if not isinstance(claims.get("exp"), (int, float)) or claims["exp"] <= now:
    die(f"exp {claims.get('exp')!r} is not in the future")
print(f"smoke: claims ok: iss {claims['iss']}, sub {claims.get('sub')}, aud {claims.get('aud')}, "
      f"scope {claims.get('scope')!r}, expires in {int(claims['exp'] - now)}s")
EOF

export BASE_URL SCOPE
if printf '%s' "$secret_json" | python3 -c "$CHECK_TOKEN"; then
    echo PASS
else
    fail "token check failed"
fi
