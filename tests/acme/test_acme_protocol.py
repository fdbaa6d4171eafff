"""RFC 8555 conformance and refusals of certforge-acme, request by request
(run by test_acme_protocol.sh inside acme_env.sh's environment). Each
refusal is checked for its exact problem type and HTTP status, for a fresh
Replay-Nonce, and for leaving the state exactly as it was."""
import json
import os
import socket
import ssl
import subprocess
import sys
import time

from acme_lowlevel import (DIR, ROOT, Client, Key, b64, csr, jws, problem, start_responder, state, unb64)

TESTS = []
PHASE = os.environ.get("PHASE", "1")


def test(f):
    """A test of phase 1 (the default configuration)."""
    if PHASE == "1":
        TESTS.append(f)
    return f


def phase2(f):
    """A test of phase 2 (EAB required, orders_per_account = 2)."""
    if PHASE == "2":
        TESTS.append(f)
    return f


def refused(fn, typ, status=None):
    """fn() must be refused with typ and change nothing."""
    before = state()
    r = fn()
    j = problem(r, typ, status)
    assert state() == before, "a refused request changed the state: " + json.dumps(j)
    return j


@test
def directory_and_nonce():
    c = Client()
    for k in ("newNonce", "newAccount", "newOrder", "revokeCert", "keyChange", "renewalInfo"):
        assert c.d[k].startswith("https://"), k
    assert c.d["meta"]["externalAccountRequired"] is False
    assert "default" in c.d["meta"]["profiles"]
    r = c.s.head(c.d["newNonce"])
    assert r.status_code == 200 and r.headers["Cache-Control"] == "no-store" and "rel=\"index\"" in r.headers["Link"]
    r = c.s.get(c.d["newNonce"])
    assert r.status_code == 204 and r.headers["Replay-Nonce"]
    # GET on a POST-as-GET resource: 405 (RFC 8555 §6.3)
    r = c.s.get(c.d["newOrder"])
    assert r.status_code == 405, r.status_code


@test
def nonces():
    c = Client()
    c.register()
    # missing nonce
    refused(lambda: c.post(c.d["newOrder"], {"identifiers": [{"type": "dns", "value": "n.example.test"}]}, nonce=...),
            "badNonce", 400)
    # forged: right prefix, wrong MAC
    good = c.new_nonce()
    forged = good[:-3] + ("AAA" if good[-3:] != "AAA" else "BBB")
    refused(lambda: c.post(c.d["newOrder"], {"identifiers": [{"type": "dns", "value": "n.example.test"}]}, nonce=forged),
            "badNonce", 400)
    # foreign: another front end's prefix
    refused(lambda: c.post(c.d["newOrder"], {"identifiers": [{"type": "dns", "value": "n.example.test"}]},
                           nonce="zz" + good[1:]), "badNonce", 400)
    # reused
    n = c.new_nonce()
    r = c.post(c.d["newOrder"], {"identifiers": [{"type": "dns", "value": "n.example.test"}]}, nonce=n)
    assert r.status_code == 201, r.text
    refused(lambda: c.post(c.d["newOrder"], {"identifiers": [{"type": "dns", "value": "n2.example.test"}]}, nonce=n),
            "badNonce", 400)
    # the badNonce answer's own nonce works (clients retry with it)
    r = c.post(c.d["newOrder"], {"identifiers": [{"type": "dns", "value": "n2.example.test"}]}, nonce=forged)
    assert c.nonce
    r = c.post(c.d["newOrder"], {"identifiers": [{"type": "dns", "value": "n3.example.test"}]})
    assert r.status_code == 201, r.text


@test
def header_rules():
    c = Client()
    c.register()
    o = {"identifiers": [{"type": "dns", "value": "h.example.test"}]}
    # url header not the request URL: unauthorized (§6.4)
    refused(lambda: c.post(c.d["newOrder"], o, hdr_url=c.d["newAccount"]), "unauthorized", 403)
    # jwk and kid together
    refused(lambda: c.post(c.d["newOrder"], o, extra={"jwk": c.key.jwk()}), "malformed", 400)
    # neither
    refused(lambda: c.post(c.d["newOrder"], o, extra={"kid": ...}), "malformed", 400)
    # alg none and HS256: badSignatureAlgorithm
    refused(lambda: c.raw(c.d["newOrder"], jws(None, {"nonce": c.new_nonce(), "url": c.d["newOrder"], "kid": c.kid,
                                                       "alg": "none"}, o)), "badSignatureAlgorithm", 400)
    refused(lambda: c.raw(c.d["newOrder"], jws(None, {"nonce": c.new_nonce(), "url": c.d["newOrder"], "kid": c.kid},
                                               o, alg="HS256", mac_key=b"k" * 32)), "badSignatureAlgorithm", 400)
    # unknown kid
    refused(lambda: c.post(c.d["newOrder"], o, extra={"kid": c.kid[:-4] + "AAAA"}), "accountDoesNotExist", 400)
    # newAccount signed with kid: malformed (it needs jwk)
    refused(lambda: c.post(c.d["newAccount"], {"termsOfServiceAgreed": True}), "malformed", 400)
    # wrong Content-Type
    r = refused(lambda: c.raw(c.d["newOrder"], jws(c.key, {"nonce": c.new_nonce(), "url": c.d["newOrder"], "kid": c.kid}, o),
                              ctype="application/json"), "malformed")
    # crit present
    refused(lambda: c.post(c.d["newOrder"], o, extra={"crit": ["exp"], "exp": 1}), "malformed", 400)


@test
def tampering():
    c = Client()
    c.register()
    o = {"identifiers": [{"type": "dns", "value": "t.example.test"}]}
    body = jws(c.key, {"nonce": c.new_nonce(), "url": c.d["newOrder"], "kid": c.kid}, o)
    body["payload"] = b64(json.dumps({"identifiers": [{"type": "dns", "value": "evil.example.test"}]}).encode())
    refused(lambda: c.raw(c.d["newOrder"], body), "malformed", 400)
    body = jws(c.key, {"nonce": c.new_nonce(), "url": c.d["newOrder"], "kid": c.kid}, o)
    sig = bytearray(unb64(body["signature"]))
    sig[5] ^= 1
    body["signature"] = b64(bytes(sig))
    refused(lambda: c.raw(c.d["newOrder"], body), "malformed", 400)
    # signed by another key than the account's
    other = Key()
    refused(lambda: c.post(c.d["newOrder"], o, key=other), "malformed", 400)
    # malformed JSON, bad base64url, not an object
    refused(lambda: c.raw(c.d["newOrder"], "{not json"), "malformed", 400)
    body = jws(c.key, {"nonce": c.new_nonce(), "url": c.d["newOrder"], "kid": c.kid}, o)
    body["payload"] = body["payload"][:-1] + "*"
    refused(lambda: c.raw(c.d["newOrder"], body), "malformed", 400)
    refused(lambda: c.raw(c.d["newOrder"], "[1,2]"), "malformed", 400)
    refused(lambda: c.post(c.d["newOrder"], b"[1]"), "malformed", 400)


@test
def oversized_body():
    """A body over limits.max_body: 413 before it is read."""
    c = Client()
    before = state()
    host, port = DIR.split("/")[2].split(":")
    ctx = ssl.create_default_context(cafile=ROOT)
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(port))), server_hostname=host)
    s.sendall(("POST /acme/new-account HTTP/1.1\r\nHost: %s\r\nContent-Type: application/jose+json\r\n"
               "Content-Length: 70000\r\n\r\n" % host).encode())
    s.settimeout(10)
    head = s.recv(4096).decode(errors="replace")
    s.close()
    assert head.startswith("HTTP/1.1 413"), head[:80]
    assert state() == before


@test
def accounts():
    c = Client()
    r = c.register(contact=["mailto:a@example.org"])
    assert r.status_code == 201 and r.json()["status"] == "valid" and r.json()["orders"].endswith("/orders")
    # the same key again: 200 and the same URL (§7.3.1)
    r2 = c.post(c.d["newAccount"], {"termsOfServiceAgreed": True}, use_jwk=True)
    assert r2.status_code == 200 and r2.headers["Location"] == c.kid
    # onlyReturnExisting for an unknown key
    d = Client()
    refused(lambda: d.post(d.d["newAccount"], {"onlyReturnExisting": True}, use_jwk=True), "accountDoesNotExist", 400)
    # contacts
    refused(lambda: d.post(d.d["newAccount"], {"contact": ["tel:+358"]}, use_jwk=True), "unsupportedContact", 400)
    refused(lambda: d.post(d.d["newAccount"], {"contact": ["mailto:a@b@c"]}, use_jwk=True), "invalidContact", 400)
    refused(lambda: d.post(d.d["newAccount"], {"contact": ["mailto:x@example.org?subject=hi"]}, use_jwk=True),
            "invalidContact", 400)
    # update the contact, then read it back with POST-as-GET
    r = c.post(c.kid, {"contact": ["mailto:b@example.org"]})
    assert r.status_code == 200 and r.json()["contact"] == ["mailto:b@example.org"]
    assert c.get(c.kid).json()["contact"] == ["mailto:b@example.org"]
    # another account's URL
    d.register()
    refused(lambda: d.post(c.kid, None), "unauthorized", 403)
    # deactivate; then everything is refused
    r = c.post(c.kid, {"status": "deactivated"})
    assert r.status_code == 200 and r.json()["status"] == "deactivated"
    refused(lambda: c.order(["x.example.test"]), "unauthorized", 403)
    refused(lambda: c.post(c.d["newAccount"], {}, use_jwk=True), "unauthorized", 403)


@test
def key_change():
    c = Client()
    c.register()
    new = Key()
    inner = jws(new, {"jwk": new.jwk(), "url": c.d["keyChange"]}, {"account": c.kid, "oldKey": c.key.jwk()})
    # the inner JWS must name the right old key
    bad = jws(new, {"jwk": new.jwk(), "url": c.d["keyChange"]}, {"account": c.kid, "oldKey": Key().jwk()})
    refused(lambda: c.post(c.d["keyChange"], bad), "malformed", 400)
    r = c.post(c.d["keyChange"], inner)
    assert r.status_code == 200, r.text
    old = c.key
    c.key = new
    assert c.order(["kc.example.test"]).status_code == 201
    c.key = old
    refused(lambda: c.order(["kc2.example.test"]), "malformed", 400)  # the old key no longer verifies
    # a key another account uses: 409 with that account's URL
    d = Client()
    d.register()
    c.key = new
    inner = jws(d.key, {"jwk": d.key.jwk(), "url": c.d["keyChange"]}, {"account": c.kid, "oldKey": new.jwk()})
    before = state()
    r = c.post(c.d["keyChange"], inner)
    assert r.status_code == 409 and r.headers["Location"] == d.kid, (r.status_code, r.text)
    assert state() == before


@test
def orders_and_finalize():
    c = Client()
    c.register()
    refused(lambda: c.post(c.d["newOrder"], {"identifiers": []}), "malformed", 400)
    j = refused(lambda: c.order(["ok.example.test", "bad_name.example.test", "10.0.0.1"]), "rejectedIdentifier", 400)
    assert len(j["subproblems"]) == 2 and j["subproblems"][0]["identifier"]["value"] == "bad_name.example.test"
    refused(lambda: c.post(c.d["newOrder"], {"identifiers": [{"type": "ip", "value": "10.0.0.1"}]}),
            "unsupportedIdentifier", 400)
    refused(lambda: c.order(["p.example.test"], profile="nope"), "invalidProfile", 400)
    refused(lambda: c.order(["p.example.test"], notAfter="2099-01-01T00:00:00Z"), "malformed", 400)
    r = c.order(["Fin.Example.Test", "fin2.example.test"])
    assert r.status_code == 201, r.text
    o = r.json()
    o["_url"] = r.headers["Location"]
    assert o["status"] == "pending" and len(o["authorizations"]) == 2
    assert {i["value"] for i in o["identifiers"]} == {"fin.example.test", "fin2.example.test"}
    der, _ = csr(["fin.example.test", "fin2.example.test"])
    # finalize before ready
    refused(lambda: c.finalize(o, der), "orderNotReady", 403)
    # another account cannot see it
    d = Client()
    d.register()
    problem(d.get(o["_url"]), "malformed", 404)
    o = c.validate_http01(o)
    assert o["status"] == "ready", o
    # CSR with fewer / more names than the order
    refused(lambda: c.finalize(o, csr(["fin.example.test"])[0]), "badCSR", 400)
    refused(lambda: c.finalize(o, csr(["fin.example.test", "fin2.example.test", "x.example.test"])[0]), "badCSR", 400)
    refused(lambda: c.finalize(o, b"\x30\x03\x02\x01\x00"), "badCSR", 400)
    refused(lambda: c.post(o["finalize"], {"csr": "!!"}), "malformed", 400)
    r = c.finalize(o, der)
    assert r.status_code == 200, r.text
    f = r.json()
    assert f["status"] in ("valid", "processing"), f
    # idempotent: a second finalize issues nothing
    refused(lambda: c.finalize(o, der), "orderNotReady", 403)
    f = c.wait(o, ("valid", "invalid"))
    assert f["status"] == "valid", f
    r = c.get(f["certificate"])
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/pem-certificate-chain"
    # leaf, then the issuer chain certforged returns (its issuer, then the configured chain)
    assert r.text.count("BEGIN CERTIFICATE") == 3, r.text.count("BEGIN CERTIFICATE")
    # certforged's ledger has exactly one certificate for this order
    order_id = o["_url"].rsplit("/", 1)[1]
    out = subprocess.run([os.environ["CF"], "ledger", "export", "--format", "jsonl", "--db", os.environ["T"] + "/ledger.db"],
                         capture_output=True, text=True, check=True).stdout
    mine = [l for l in out.splitlines() if order_id in l]
    assert len(mine) == 1, mine
    # the account's orders list
    lst = c.get(c.kid + "/orders").json()["orders"]
    assert o["_url"] in lst


@test
def authz_deactivation_and_challenge_once():
    c = Client()
    c.register()
    r = c.order(["deact.example.test"])
    o = r.json()
    az = o["authorizations"][0]
    a = c.get(az).json()
    assert a["status"] == "pending" and {ch["type"] for ch in a["challenges"]} >= {"http-01", "dns-01"}
    refused(lambda: c.post(az, {"status": "valid"}), "malformed", 400)
    r = c.post(az, {"status": "deactivated"})
    assert r.status_code == 200 and r.json()["status"] == "deactivated"
    assert c.get(r.url if False else o["finalize"].replace("finalize", "order")).json()["status"] == "invalid"
    # a failing challenge makes the authorization and the order invalid
    r = c.order(["nobody-home.example.test"])
    o = r.json()
    a = c.get(o["authorizations"][0]).json()
    ch = [x for x in a["challenges"] if x["type"] == "http-01"][0]
    c.post(ch["url"], {})  # nothing answers for this token
    o["_url"] = r.headers["Location"]
    o = c.wait(o, ("invalid",))
    a = c.get(o["authorizations"][0]).json()
    assert a["status"] == "invalid"
    bad = [x for x in a["challenges"] if x["type"] == "http-01"][0]
    assert bad["status"] == "invalid" and bad["error"]["type"].endswith((":unauthorized", ":connection", ":incorrectResponse"))


@test
def wildcard_needs_dns01():
    c = Client()
    c.register()
    r = c.order(["*.wild.example.test"])
    assert r.status_code == 201, r.text
    a = c.get(r.json()["authorizations"][0]).json()
    assert a.get("wildcard") is True and [x["type"] for x in a["challenges"]] == ["dns-01"]
    assert a["identifier"]["value"] == "wild.example.test"


@test
def slow_client_is_cut():
    host, port = DIR.split("/")[2].split(":")
    ctx = ssl.create_default_context(cafile=ROOT)
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(port))), server_hostname=host)
    s.sendall(b"POST /acme/new-order HTTP/1.1\r\nHost: x\r\nContent-Type: application/jose+json\r\nContent-Length: 100\r\n\r\n{")
    s.settimeout(30)
    t0 = time.monotonic()
    data = b""
    try:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    except (ssl.SSLError, OSError):
        pass
    # the server closed the connection (bounded by the test's own timeout)
    assert time.monotonic() - t0 < 30


@test
def many_connections():
    host, port = DIR.split("/")[2].split(":")
    socks = []
    for _ in range(2000):
        try:
            socks.append(socket.create_connection(("127.0.0.1", int(port)), timeout=5))
        except OSError:
            break
    assert len(socks) >= 500, len(socks)
    for s in socks:
        s.close()
    # still serving
    c = Client()
    c.register()
    assert c.order(["after-flood.example.test"]).status_code == 201


def issue(c, names):
    r = c.order(names)
    assert r.status_code == 201, r.text
    o = r.json()
    o["_url"] = r.headers["Location"]
    o = c.validate_http01(o)
    der, key = csr(names)
    r = c.finalize(o, der)
    assert r.status_code == 200, r.text
    o = c.wait(o, ("valid",))
    pem = c.get(o["certificate"]).text
    from cryptography import x509 as _x
    return _x.load_pem_x509_certificate(pem.encode()), key, o


def ari_id(cert):
    from cryptography import x509 as _x
    aki = cert.extensions.get_extension_for_class(_x.AuthorityKeyIdentifier).value.key_identifier
    serial = cert.serial_number.to_bytes((cert.serial_number.bit_length() + 8) // 8, "big")
    return b64(aki) + "." + b64(serial)


@test
def renewal_info():
    """RFC 9773: the window around 2/3 of the lifetime, an immediate window
    once revoked, replaces recorded, a second replacement refused."""
    import datetime
    c = Client()
    c.register()
    cert, key, _ = issue(c, ["ari.example.test"])
    cid = ari_id(cert)
    r = c.s.get(c.d["renewalInfo"] + "/" + cid)
    assert r.status_code == 200 and int(r.headers["Retry-After"]) > 0, (r.status_code, r.text)
    w = r.json()["suggestedWindow"]
    nb, na = cert.not_valid_before.replace(tzinfo=datetime.timezone.utc), cert.not_valid_after.replace(tzinfo=datetime.timezone.utc)
    life = (na - nb).total_seconds()
    start = datetime.datetime.fromisoformat(w["start"].replace("Z", "+00:00"))
    end = datetime.datetime.fromisoformat(w["end"].replace("Z", "+00:00"))
    mid = ((start - nb).total_seconds() + (end - nb).total_seconds()) / 2 / life
    assert abs(mid - 2 / 3) < 0.01 and start < end < na, (w, mid)
    # unknown and malformed identifiers
    assert c.s.get(c.d["renewalInfo"] + "/" + cid.split(".")[0] + ".AQ").status_code == 404
    problem(c.s.get(c.d["renewalInfo"] + "/not-an-id"), "malformed", 400)
    # replaces: recorded, and only once
    r = c.order(["ari.example.test"], replaces=cid)
    assert r.status_code == 201 and r.json()["replaces"] == cid, r.text
    refused(lambda: c.order(["ari.example.test"], replaces=cid), "alreadyReplaced", 409)
    # another account's certificate cannot be replaced
    d = Client()
    d.register()
    refused(lambda: d.order(["ari.example.test"], replaces=cid), "malformed", 400)
    # revoked: the window is in the past (renew now)
    from cryptography.hazmat.primitives import serialization as _s
    r = c.post(c.d["revokeCert"], {"certificate": b64(cert.public_bytes(_s.Encoding.DER)), "reason": 4})
    assert r.status_code == 200, r.text
    w = c.s.get(c.d["renewalInfo"] + "/" + cid).json()["suggestedWindow"]
    end = datetime.datetime.fromisoformat(w["end"].replace("Z", "+00:00"))
    assert end < datetime.datetime.now(datetime.timezone.utc), w


@test
def revocation_refusals():
    c = Client()
    c.register()
    cert, key, _ = issue(c, ["rv.example.test"])
    from cryptography.hazmat.primitives import serialization as _s
    der = b64(cert.public_bytes(_s.Encoding.DER))
    refused(lambda: c.post(c.d["revokeCert"], {"certificate": der, "reason": 7}), "badRevocationReason", 400)
    refused(lambda: c.post(c.d["revokeCert"], {"certificate": der, "reason": "1"}), "badRevocationReason", 400)
    d = Client()
    d.register()
    refused(lambda: d.post(d.d["revokeCert"], {"certificate": der}), "unauthorized", 403)
    # signed with an unrelated jwk
    e = Client()
    refused(lambda: e.post(e.d["revokeCert"], {"certificate": der}, use_jwk=True), "unauthorized", 403)
    refused(lambda: c.post(c.d["revokeCert"], {"certificate": "AAAA"}), "malformed", 400)


@phase2
def eab_required_server_side():
    c = Client()
    assert c.d["meta"]["externalAccountRequired"] is True
    refused(lambda: c.post(c.d["newAccount"], {"termsOfServiceAgreed": True}, use_jwk=True), "externalAccountRequired", 403)
    kid = subprocess.run([os.environ["CF"], "acme", "eab", "add", "--config", os.environ["T"] + "/acme.conf", "--json"],
                         capture_output=True, text=True, check=True).stdout
    k = json.loads(kid)
    mac = unb64(k["hmac_key"])
    def eab(url_override=None, payload=None, key=mac):
        return jws(None, {"alg": "HS256", "kid": k["kid"], "url": url_override or c.d["newAccount"]},
                   payload if payload is not None else c.key.jwk(), alg="HS256", mac_key=key)
    refused(lambda: c.post(c.d["newAccount"], {"externalAccountBinding": eab(key=b"x" * 32)}, use_jwk=True), "unauthorized", 403)
    refused(lambda: c.post(c.d["newAccount"], {"externalAccountBinding": eab(url_override=c.d["newOrder"])}, use_jwk=True),
            "malformed", 400)
    refused(lambda: c.post(c.d["newAccount"], {"externalAccountBinding": eab(payload=Key().jwk())}, use_jwk=True),
            "malformed", 400)
    r = c.post(c.d["newAccount"], {"externalAccountBinding": eab()}, use_jwk=True)
    assert r.status_code == 201 and r.json()["externalAccountBinding"]["kid"] == k["kid"], r.text


@phase2
def rate_limits():
    kid = json.loads(subprocess.run([os.environ["CF"], "acme", "eab", "add", "--config", os.environ["T"] + "/acme.conf",
                                     "--json"], capture_output=True, text=True, check=True).stdout)
    c = Client()
    eab = jws(None, {"alg": "HS256", "kid": kid["kid"], "url": c.d["newAccount"]}, c.key.jwk(), alg="HS256",
              mac_key=unb64(kid["hmac_key"]))
    r = c.post(c.d["newAccount"], {"externalAccountBinding": eab}, use_jwk=True)
    assert r.status_code == 201, r.text
    c.kid = r.headers["Location"]
    for i in range(2):
        assert c.order(["rl%d.example.test" % i]).status_code == 201
    before = state()
    r = c.order(["rl9.example.test"])
    problem(r, "rateLimited", 429)
    assert int(r.headers["Retry-After"]) > 0
    assert state() == before


def main():
    start_responder()
    only = sys.argv[1:]
    ran = failed = 0
    for t in TESTS:
        if only and t.__name__ not in only:
            continue
        ran += 1
        try:
            t()
            print("PASS", t.__name__, flush=True)
        except Exception as e:  # noqa: BLE001 - report every failure
            failed += 1
            import traceback
            traceback.print_exc()
            print("FAIL", t.__name__, repr(e), flush=True)
    print("%d tests, %d failed" % (ran, failed))
    sys.exit(1 if failed or ran == 0 else 0)


if __name__ == "__main__":
    main()
