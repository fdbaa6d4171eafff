"""A low-level ACME client for certforge-acme's protocol tests: every JWS is
built here (cryptography for the keys, no ACME library), so tests can send
exactly the malformed, forged or replayed requests RFC 8555 says a server
must refuse. Used by test_acme_protocol.py and test_acme_ari.py."""
import base64
import hashlib
import hmac
import http.server
import json
import os
import sqlite3
import threading

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils
from cryptography.x509.oid import NameOID

DIR = os.environ["ACME_DIR"]
ROOT = os.environ["ACME_ROOT"]
STATE = os.environ["T"] + "/acme.db"
HTTP01_PORT = int(os.environ["HTTP01_PORT"])


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def unb64(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


class Key:
    def __init__(self):
        self.k = ec.generate_private_key(ec.SECP256R1())

    def jwk(self):
        n = self.k.public_key().public_numbers()
        return {"crv": "P-256", "kty": "EC", "x": b64(n.x.to_bytes(32, "big")), "y": b64(n.y.to_bytes(32, "big"))}

    def thumb(self):
        return b64(hashlib.sha256(json.dumps(self.jwk(), sort_keys=True, separators=(",", ":")).encode()).digest())

    def sign(self, data):
        r, s = utils.decode_dss_signature(self.k.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def jws(key, protected, payload, alg="ES256", mac_key=None):
    """Flattened JWS; payload None = POST-as-GET ("" payload)."""
    protected = dict(protected)
    protected.setdefault("alg", alg)
    p64 = b64(json.dumps(protected).encode())
    pl64 = "" if payload is None else b64(payload if isinstance(payload, bytes) else json.dumps(payload).encode())
    signing_input = (p64 + "." + pl64).encode()
    if mac_key is not None:
        sig = hmac.new(mac_key, signing_input, hashlib.sha256).digest()
    elif key is None:
        sig = b""
    else:
        sig = key.sign(signing_input)
    return {"protected": p64, "payload": pl64, "signature": b64(sig)}


class Client:
    def __init__(self, key=None):
        self.s = requests.Session()
        self.s.verify = ROOT
        self.d = self.s.get(DIR).json()
        self.key = key or Key()
        self.kid = None
        self.nonce = None

    def new_nonce(self):
        r = self.s.head(self.d["newNonce"])
        assert r.status_code == 200, r.status_code
        return r.headers["Replay-Nonce"]

    def raw(self, url, body, ctype="application/jose+json"):
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        r = self.s.post(url, data=data, headers={"Content-Type": ctype})
        if "Replay-Nonce" in r.headers:
            self.nonce = r.headers["Replay-Nonce"]
        return r

    def post(self, url, payload, key=None, use_jwk=False, extra=None, nonce=None, hdr_url=None, alg="ES256"):
        key = key or self.key
        prot = {"nonce": nonce if nonce is not None else (self.nonce or self.new_nonce()), "url": hdr_url or url}
        if use_jwk or self.kid is None:
            prot["jwk"] = key.jwk()
        else:
            prot["kid"] = self.kid
        if extra:
            prot.update(extra)
        prot = {k: v for k, v in prot.items() if v is not Ellipsis}
        self.nonce = None
        return self.raw(url, jws(key, prot, payload, alg=alg))

    def register(self, **kw):
        payload = {"termsOfServiceAgreed": True}
        payload.update(kw)
        r = self.post(self.d["newAccount"], payload, use_jwk=True)
        assert r.status_code in (200, 201), (r.status_code, r.text)
        self.kid = r.headers["Location"]
        return r

    def order(self, names, **kw):
        payload = {"identifiers": [{"type": "dns", "value": n} for n in names]}
        payload.update(kw)
        return self.post(self.d["newOrder"], payload)

    def get(self, url):
        return self.post(url, None)

    def keyauth(self, token):
        return token + "." + self.key.thumb()

    def validate_http01(self, order_json):
        """Answer every authorization's http-01 challenge; wait until ready."""
        for az in order_json["authorizations"]:
            a = self.get(az).json()
            if a["status"] == "valid":
                continue
            ch = [c for c in a["challenges"] if c["type"] == "http-01"][0]
            Responder.tokens[ch["token"]] = self.keyauth(ch["token"])
            r = self.post(ch["url"], {})
            assert r.status_code == 200, r.text
        return self.wait(order_json, ("ready", "valid", "invalid"))

    def wait(self, order_json, states, url=None):
        import time
        url = url or order_json["_url"]
        for _ in range(600):  # bounded (30 s), generous for a loaded machine
            o = self.get(url).json()
            if o["status"] in states:
                o["_url"] = url
                return o
            time.sleep(0.05)
        raise AssertionError("order stuck in " + o["status"])

    def finalize(self, order_json, csr_der):
        return self.post(order_json["finalize"], {"csr": b64(csr_der)})


def csr(names, key=None):
    key = key or ec.generate_private_key(ec.SECP256R1())
    b = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
    b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
    return b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER), key


class Responder(http.server.BaseHTTPRequestHandler):
    """http-01 answers on 127.0.0.1:HTTP01_PORT."""
    tokens = {}

    def do_GET(self):
        tok = self.path.rsplit("/", 1)[-1]
        if self.path.startswith("/.well-known/acme-challenge/") and tok in self.tokens:
            body = self.tokens[tok].encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_response(404)
            self.end_headers()

    def log_message(self, *a):
        pass


def start_responder():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", HTTP01_PORT), Responder)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


TABLES = ("accounts", "orders", "authzs", "challenges", "certs", "eab_keys")


def state():
    """A fingerprint of certforge-acme's whole state (SQLite or PostgreSQL):
    refused requests must leave it as it was."""
    pg = os.environ.get("ACME_PG_CONNINFO")
    if pg:
        import subprocess
        return [(t, subprocess.run(["psql", pg, "-At", "-c", "SELECT * FROM " + t + " ORDER BY 1"], capture_output=True,
                                   text=True, check=True).stdout) for t in TABLES]
    db = sqlite3.connect("file:" + STATE + "?mode=ro", uri=True)
    out = []
    for t in TABLES:
        out.append((t, db.execute("SELECT * FROM " + t + " ORDER BY 1").fetchall()))
    db.close()
    return out


def problem(r, typ, status=None):
    assert r.headers.get("Content-Type", "").startswith("application/problem+json"), (r.status_code, r.headers, r.text)
    j = r.json()
    assert j["type"] == "urn:ietf:params:acme:error:" + typ, (typ, j)
    if status is not None:
        assert r.status_code == status, (r.status_code, status, j)
    assert "Replay-Nonce" in r.headers, "a problem answer without Replay-Nonce"
    return j
