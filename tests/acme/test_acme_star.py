"""STAR (RFC 8739) against certforge-acme (run by test_acme_star.sh): an
order with auto-renewal gets a star-certificate URL serving the current
certificate (unauthenticated GET where allowed, with Cert-Not-Before /
Cert-Not-After); the scheduler renews ahead of each period so consecutive
certificates overlap; renewals survive a certforged outage and a kill -9
of certforge-acme (recorded once); cancellation stops the series;
refusals use RFC 8739's problem types."""
import datetime
import os
import signal
import sqlite3
import subprocess
import sys
import time

import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from acme_lowlevel import Client, csr, problem, start_responder

T = os.environ["T"]
LIFE, ADJUST = 60, 20


def iso(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def star_order(c, name, end_in=300, get=True, **extra):
    ar = {"end-date": iso(time.time() + end_in), "lifetime": LIFE, "lifetime-adjust": ADJUST, "allow-certificate-get": get}
    ar.update(extra)
    r = c.post(c.d["newOrder"], {"identifiers": [{"type": "dns", "value": name}], "profile": "star", "auto-renewal": ar})
    return r


def fetch(url):
    r = requests.get(url, verify=os.environ["ACME_ROOT"])
    return r


def serial_of(pem):
    return x509.load_pem_x509_certificate(pem.encode()).serial_number


def db():
    return sqlite3.connect("file:" + T + "/acme.db?mode=ro", uri=True)


def main():
    start_responder()
    c = Client()
    meta = c.d["meta"]["auto-renewal"]
    assert meta["min-lifetime"] == 60 and meta["allow-certificate-get"] is True, meta
    c.register()
    # refusals
    problem(star_order(c, "x.example.test", lifetime=30), "malformed", 400)
    problem(star_order(c, "x.example.test", end_in=10 ** 9), "malformed", 400)
    problem(star_order(c, "x.example.test", **{"start-date": iso(time.time() + 3600)}), "malformed", 400)
    r = c.post(c.d["newOrder"], {"identifiers": [{"type": "dns", "value": "x.example.test"}], "profile": "star",
                                 "notAfter": iso(time.time() + 600), "auto-renewal": {"end-date": iso(time.time() + 300), "lifetime": 60}})
    problem(r, "malformed", 400)

    # order A: the series
    r = star_order(c, "star-a.example.test")
    assert r.status_code == 201, r.text
    o = r.json()
    o["_url"] = r.headers["Location"]
    assert o["auto-renewal"]["lifetime"] == LIFE and o["auto-renewal"]["allow-certificate-get"] is True, o
    o = c.validate_http01(o)
    t0 = time.time()
    r = c.finalize(o, csr(["star-a.example.test"])[0])
    assert r.status_code == 200, r.text
    o = c.wait(o, ("valid", "invalid"))
    assert o["status"] == "valid" and "star-certificate" in o and "certificate" not in o, o
    url = o["star-certificate"]
    r = fetch(url)  # no authentication
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/pem-certificate-chain", r.status_code
    assert "Cert-Not-Before" in r.headers and "Cert-Not-After" in r.headers, r.headers
    c0 = x509.load_pem_x509_certificate(r.text.encode())
    life0 = (c0.not_valid_after - c0.not_valid_before).total_seconds()
    assert life0 <= LIFE + 61 + 5, life0  # the first period (plus the profile's backdate)
    # noRevAvail (RFC 9608) from the engine's STAR profile; no CRL pointer
    assert any(e.oid.dotted_string == "2.5.29.56" for e in c0.extensions), [e.oid for e in c0.extensions]
    # order B: cancel and revoke refusals
    rb = star_order(c, "star-b.example.test", get=False)
    ob = rb.json()
    ob["_url"] = rb.headers["Location"]
    ob = c.validate_http01(ob)
    c.finalize(ob, csr(["star-b.example.test"])[0])
    ob = c.wait(ob, ("valid",))
    assert fetch(ob["star-certificate"]).status_code == 404  # allow-certificate-get false: no unauthenticated GET
    rb = c.post(ob["star-certificate"], None)  # POST-as-GET by its account
    assert rb.status_code == 200, rb.text
    cb = x509.load_pem_x509_certificate(rb.text.encode())
    problem(c.post(c.d["revokeCert"], {"certificate": _b64(cb)}), "autoRenewalRevocationNotSupported", 403)
    r = c.post(ob["_url"], {"status": "canceled"})
    assert r.status_code == 200 and r.json()["status"] == "canceled", r.text
    problem(c.post(ob["star-certificate"], None), "autoRenewalCanceled", 403)
    problem(c.post(ob["_url"], {"status": "canceled"}), "autoRenewalCancellationInvalid", 403)
    problem(c.post(o["_url"].replace(o["_url"].rsplit("/", 1)[1], ob["_url"].rsplit("/", 1)[1]), {"status": "valid"}),
            "malformed", 400)

    # certforged stopped across the first renewal's due time (t0+25), and
    # certforge-acme killed while that renewal hangs: on restart the
    # schedule is taken up, certforged's return is caught up
    engine = int(os.environ["ENGINE_PID_REAL"])
    while time.time() < t0 + 20:
        time.sleep(0.2)
    os.kill(engine, signal.SIGSTOP)
    try:
        while time.time() < t0 + 29:
            time.sleep(0.2)
        os.kill(int(os.environ["ACME_PID_REAL"]), signal.SIGKILL)
        open(T + "/restart", "w").close()
        for _ in range(300):
            if os.path.exists(T + "/restarted"):
                break
            time.sleep(0.1)
        time.sleep(2)
    finally:
        os.kill(engine, signal.SIGCONT)
    s1 = None
    while time.time() < t0 + 55:
        r = fetch(url)
        if r.status_code == 200 and serial_of(r.text) != c0.serial_number:
            s1 = x509.load_pem_x509_certificate(r.text.encode())
            break
        time.sleep(0.5)
    assert s1 is not None, "no renewal before the first certificate expired"
    # no gap: the new one starts before the old one ends, and ends one period later
    assert s1.not_valid_before < c0.not_valid_after, (s1.not_valid_before, c0.not_valid_after)
    assert s1.not_valid_after > c0.not_valid_after, (s1.not_valid_after, c0.not_valid_after)
    print("renewed at t0+%.1f s, overlap %.0f s" % (time.time() - t0, (c0.not_valid_after - s1.not_valid_before).total_seconds()))
    # recorded once: certificates of the order = its sequence number
    order_id = o["_url"].rsplit("/", 1)[1]
    with db() as d:
        n = d.execute("SELECT COUNT(*) FROM certs WHERE order_id = ?", (order_id,)).fetchone()[0]
        seq = d.execute("SELECT star_seq FROM orders WHERE id = ?", (order_id,)).fetchone()[0]
        nb = d.execute("SELECT COUNT(*) FROM certs WHERE order_id = ?", (ob["_url"].rsplit("/", 1)[1],)).fetchone()[0]
    assert n == seq == 2, (n, seq)
    assert nb == 1, nb  # the canceled order got nothing more
    print("STAR: all passed")


def _b64(cert):
    from acme_lowlevel import b64
    return b64(cert.public_bytes(serialization.Encoding.DER))


if __name__ == "__main__":
    main()
