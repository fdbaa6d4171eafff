"""Issuer rollover under load (run by test_acme_rollover.sh): the ACME
profile switches from certforged profile "dns" (issuer NF CA) to "dns-2"
(NF CA 2) at switch_at while four clients keep issuing: no issuance fails
across the switch, every certificate chains to the published trust
anchors, certificates from after the switch come from the new issuer, and
ARI tells holders of the old issuer's certificates to renew now."""
import datetime
import os
import subprocess
import sys
import threading
import time

from cryptography import x509

from acme_lowlevel import Client, b64, csr, start_responder

SWITCH_AT = int(os.environ["SWITCH_AT"])
T = os.environ["T"]


def issue(c, name):
    r = c.order([name])
    assert r.status_code == 201, r.text
    o = r.json()
    o["_url"] = r.headers["Location"]
    o = c.validate_http01(o)
    r = c.finalize(o, csr([name])[0])
    assert r.status_code == 200, r.text
    o = c.wait(o, ("valid", "invalid"))
    assert o["status"] == "valid", o
    return c.get(o["certificate"]).text


def ari_id(cert):
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    serial = cert.serial_number.to_bytes((cert.serial_number.bit_length() + 8) // 8, "big")
    return b64(aki) + "." + b64(serial)


def verify(cafile, untrusted, cert_pem):
    with open(T + "/leaf.pem", "w") as f:
        f.write(cert_pem)
    args = ["openssl", "verify", "-x509_strict", "-CAfile", cafile]
    if untrusted:
        args += ["-untrusted", untrusted]
    return subprocess.run(args + [T + "/leaf.pem"], capture_output=True, text=True)


def root_rollover(results):
    """Root rollover: the published anchors carry both roots and both links;
    a client that knows only the old root verifies the new issuer's
    certificates through the chain served with them (the new root as the
    old one signed it), one that knows only the new root verifies them
    directly and the old issuer's through the published old-by-new link;
    without the links, neither crosses."""
    anchors = open(T + "/published.pem").read()
    for name in ("root.pem", "root-2.pem", "root-2-by-root.pem", "root-by-root-2.pem"):
        body = open(T + "/" + name).read().strip()
        assert body in anchors, name + " not in the published trust anchors"
    crossed = 0
    for when, pem, c in results:
        with open(T + "/served.pem", "w") as f:
            f.write(pem)
        leaf = pem[: pem.index("-----END CERTIFICATE-----") + 25] + "\n"
        cert = x509.load_pem_x509_certificate(pem.encode())
        if "NF CA 2" in cert.issuer.rfc4514_string():
            v = verify(T + "/root.pem", T + "/served.pem", leaf)
            assert v.returncode == 0, ("new issuer under the old root", v.stdout + v.stderr)
            v = verify(T + "/root-2.pem", T + "/served.pem", leaf)
            assert v.returncode == 0, ("new issuer under the new root", v.stdout + v.stderr)
            with open(T + "/int2.pem", "w") as f:
                f.write(open(T + "/nf-ca-2.pem").read())
            v = verify(T + "/root.pem", T + "/int2.pem", leaf)
            assert v.returncode != 0, "the new issuer verified under the old root without the link"
            crossed += 1
        else:
            # the old intermediate and the old root as the new one signed it
            # (the served self-signed old root would end the path first)
            with open(T + "/old-chain.pem", "w") as f:
                f.write(open(T + "/nf-ca.pem").read() + open(T + "/root-by-root-2.pem").read())
            v = verify(T + "/root-2.pem", T + "/old-chain.pem", leaf)
            assert v.returncode == 0, ("old issuer under the new root via the link", v.stdout + v.stderr)
            v = verify(T + "/root-2.pem", T + "/served.pem", leaf)
            assert v.returncode != 0, "the old issuer verified under the new root without the link"
    assert crossed >= 1
    print("root rollover: %d certificates of the new root verified by clients of the old root" % crossed)


def main():
    start_responder()
    results, errors = [], []

    def worker(i):
        try:
            c = Client()
            c.register()
            n = 0
            while time.time() < SWITCH_AT + 6:
                pem = issue(c, "roll%d-%d.example.test" % (i, n))
                results.append((time.time(), pem, c))
                n += 1
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    assert not errors, errors
    old = new = 0
    for when, pem, c in results:
        with open(T + "/one.pem", "w") as f:
            f.write(pem)
        # the chain verifies against the published trust anchors
        v = subprocess.run(["openssl", "verify", "-CAfile", T + "/published.pem", "-untrusted", T + "/one.pem", T + "/one.pem"],
                           capture_output=True, text=True)
        assert v.returncode == 0, v.stdout + v.stderr
        cert = x509.load_pem_x509_certificate(pem.encode())
        issuer = cert.issuer.rfc4514_string()
        nb = cert.not_valid_before.replace(tzinfo=datetime.timezone.utc).timestamp()
        if issuer.startswith("CN=ACME test NF CA 2"):
            new += 1
            assert nb + 60 >= SWITCH_AT - 1, (issuer, nb)  # (the profile's 60 s backdate)
        else:
            old += 1
            assert nb + 60 <= SWITCH_AT + 2, (issuer, nb)
    assert old >= 1 and new >= 1, (old, new)
    if os.environ.get("ROLLOVER") == "root":
        root_rollover(results)
    # ARI: the old issuer's certificates are to be renewed now, the new ones' later
    now = datetime.datetime.now(datetime.timezone.utc)
    for when, pem, c in results:
        cert = x509.load_pem_x509_certificate(pem.encode())
        w = c.s.get(c.d["renewalInfo"] + "/" + ari_id(cert)).json()["suggestedWindow"]
        end = datetime.datetime.fromisoformat(w["end"].replace("Z", "+00:00"))
        if "NF CA 2" in cert.issuer.rfc4514_string():
            assert end > now, w
        else:
            assert end < now, ("old issuer's certificate not told to renew now", w)
    print("rollover: %d from the old issuer, %d from the new, no failure, ARI moves the old ones" % (old, new))


if __name__ == "__main__":
    main()
