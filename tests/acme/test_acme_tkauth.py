"""NF enrolment with the NfInstanceId identifier and tkauth-01 (RFC 9447,
TS 33.310), run by test_acme_tkauth.sh: an authority token from the
reference token authority (certforge acme token issue, key in the OAM's
HSM token) validates the identifier; the certificate carries the NF
instance ID as urn:uuid: and the token's NF types; every refusal is the
right problem and issues nothing."""
import json
import os
import subprocess
import sys
import time
import uuid

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from acme_lowlevel import Client, Key, b64, problem, start_responder

CF = os.environ["CF"]
T = os.environ["T"]
TESTS = []


def test(f):
    TESTS.append(f)
    return f


def token(nf, thumb, nf_types=("AMF",), ttl="10m", key="oam-ta", cert=None, tktype=None):
    args = [CF, "acme", "token", "issue", "--token", os.environ["OAM_TOKEN"], "--key", "pkcs11:token=oam;object=" + key,
            "--cert", cert or T + "/oam-ta.pem", "--nf-instance-id", nf, "--account-key-thumbprint", thumb, "--ttl", ttl]
    for t in nf_types:
        args += ["--nf-type", t]
    if tktype:
        args += ["--tktype", tktype]
    return subprocess.run(args, capture_output=True, text=True, check=True).stdout.strip()


def ledger_count():
    out = subprocess.run([CF, "ledger", "export", "--format", "jsonl", "--db", T + "/ledger.db"], capture_output=True,
                         text=True, check=True).stdout
    return len(out.splitlines())


def nf_csr(nf, dns=None):
    k = ec.generate_private_key(ec.SECP256R1())
    sans = [x509.UniformResourceIdentifier("urn:uuid:" + nf)] + ([x509.DNSName(dns)] if dns else [])
    # no commonName: RFC 8555 §7.4 would count it as a name to match
    b = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    from cryptography.hazmat.primitives import serialization
    return b.sign(k, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def nf_order(c, nf, dns=None):
    ids = [{"type": "NfInstanceId", "value": nf.upper()}] + ([{"type": "dns", "value": dns}] if dns else [])
    r = c.post(c.d["newOrder"], {"identifiers": ids, "profile": "nf"})
    assert r.status_code == 201, r.text
    o = r.json()
    o["_url"] = r.headers["Location"]
    return o


def tkauth_challenge(c, o):
    for az in o["authorizations"]:
        a = c.get(az).json()
        if a["identifier"]["type"] == "NfInstanceId":
            assert [ch["type"] for ch in a["challenges"]] == ["tkauth-01"], a
            ch = a["challenges"][0]
            assert ch["tkauth-type"] == "atc" and ch["token-authority"] == "https://oam.5gc.example/token", ch
            return az, ch
    raise AssertionError("no NfInstanceId authorization")


def answer(c, ch, tok):
    r = c.post(ch["url"], {"tkauth": tok})
    assert r.status_code == 200, r.text
    return r


def wait_authz(c, az):
    for _ in range(600):  # bounded (30 s), generous for a loaded machine
        a = c.get(az).json()
        if a["status"] != "pending":
            return a
        time.sleep(0.05)
    raise AssertionError("authorization stuck")


@test
def enrolment():
    c = Client()
    c.register()
    nf = str(uuid.uuid4())
    o = nf_order(c, nf, "amf1.5gc.example.test")
    assert {"type": "NfInstanceId", "value": nf} in o["identifiers"], o["identifiers"]
    az, ch = tkauth_challenge(c, o)
    answer(c, ch, token(nf, c.key.thumb(), ("AMF",)))
    a = wait_authz(c, az)
    assert a["status"] == "valid", a
    o = c.validate_http01(o)  # the dns identifier
    assert o["status"] == "ready", o
    r = c.finalize(o, nf_csr(nf, "amf1.5gc.example.test"))
    assert r.status_code == 200, r.text
    o = c.wait(o, ("valid", "invalid"))
    assert o["status"] == "valid", o
    pem = c.get(o["certificate"]).text
    cert = x509.load_pem_x509_certificate(pem.encode())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical
    assert san.value.get_values_for_type(x509.UniformResourceIdentifier) == ["urn:uuid:" + nf]
    assert san.value.get_values_for_type(x509.DNSName) == ["amf1.5gc.example.test"]
    nft = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier("1.3.6.1.5.5.7.1.34"))
    assert not nft.critical and b"AMF" in nft.value.value, nft
    with open(T + "/nf-cert.pem", "w") as f:
        f.write(pem)
    print("  issued", cert.serial_number, "for", nf)


def refused_token(make, problem_type, detail_word, with_dns=False):
    """A token from make(nf, client) fails the challenge with problem_type;
    nothing is issued."""
    before = ledger_count()
    c = Client()
    c.register()
    nf = str(uuid.uuid4())
    o = nf_order(c, nf)
    az, ch = tkauth_challenge(c, o)
    answer(c, ch, make(nf, c))
    a = wait_authz(c, az)
    assert a["status"] == "invalid", a
    err = a["challenges"][0]["error"]
    assert err["type"] == "urn:ietf:params:acme:error:" + problem_type, err
    assert detail_word in err["detail"], err
    o2 = c.get(o["_url"]).json()
    assert o2["status"] == "invalid", o2
    assert ledger_count() == before


@test
def expired():
    def make(nf, c):
        t = token(nf, c.key.thumb(), ttl="1s")
        time.sleep(2.1)
        return t
    refused_token(make, "unauthorized", "expired")


@test
def wrong_signature():
    def make(nf, c):
        t = token(nf, c.key.thumb())
        h, p, s = t.split(".")
        sig = bytearray(base64_url_decode(s))
        sig[10] ^= 0x40
        return h + "." + p + "." + b64(bytes(sig))
    refused_token(make, "unauthorized", "signature")


def base64_url_decode(s):
    import base64
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


@test
def untrusted_chain():
    refused_token(lambda nf, c: token(nf, c.key.thumb(), key="rogue", cert=T + "/rogue.pem"), "unauthorized", "trust anchor")


@test
def fingerprint_of_another_account():
    refused_token(lambda nf, c: token(nf, Key().thumb()), "unauthorized", "fingerprint")


@test
def value_of_another_nf():
    refused_token(lambda nf, c: token(str(uuid.uuid4()), c.key.thumb()), "unauthorized", "not " )


@test
def other_identifier_type():
    refused_token(lambda nf, c: token(nf, c.key.thumb(), tktype="TNAuthList"), "unauthorized", "identifier type")


@test
def replayed_jti():
    c = Client()
    c.register()
    nf = str(uuid.uuid4())
    tok = token(nf, c.key.thumb())
    o = nf_order(c, nf)
    az, ch = tkauth_challenge(c, o)
    answer(c, ch, tok)
    assert wait_authz(c, az)["status"] == "valid"
    before = ledger_count()
    o = nf_order(c, nf)
    az, ch = tkauth_challenge(c, o)
    answer(c, ch, tok)
    a = wait_authz(c, az)
    assert a["status"] == "invalid" and "jti" in a["challenges"][0]["error"]["detail"], a
    assert ledger_count() == before


@test
def nf_type_outside_profile():
    c = Client()
    c.register()
    nf = str(uuid.uuid4())
    o = nf_order(c, nf)
    az, ch = tkauth_challenge(c, o)
    answer(c, ch, token(nf, c.key.thumb(), ("UDM",)))
    assert wait_authz(c, az)["status"] == "valid"
    o = c.wait(o, ("ready",))
    before = ledger_count()
    r = c.finalize(o, nf_csr(nf))
    problem(r, "unauthorized", 403)
    assert "UDM" in r.json()["detail"]
    assert c.get(o["_url"]).json()["status"] == "ready"
    assert ledger_count() == before


@test
def request_refusals():
    c = Client()
    c.register()
    nf = str(uuid.uuid4())
    # the default profile takes dns only
    r = c.post(c.d["newOrder"], {"identifiers": [{"type": "NfInstanceId", "value": nf}]})
    problem(r, "unsupportedIdentifier", 400)
    r = c.post(c.d["newOrder"], {"identifiers": [{"type": "NfInstanceId", "value": "not-a-uuid"}], "profile": "nf"})
    problem(r, "rejectedIdentifier", 400)
    r = c.post(c.d["newOrder"], {"identifiers": [{"type": "NfInstanceId", "value": nf},
                                                 {"type": "NfInstanceId", "value": str(uuid.uuid4())}], "profile": "nf"})
    problem(r, "rejectedIdentifier", 400)
    o = nf_order(c, nf)
    az, ch = tkauth_challenge(c, o)
    problem(c.post(ch["url"], {}), "malformed", 400)  # no tkauth
    problem(c.post(ch["url"], {"tkauth": 5}), "malformed", 400)
    # a CSR without the urn:uuid: SAN
    answer(c, ch, token(nf, c.key.thumb()))
    assert wait_authz(c, az)["status"] == "valid"
    o = c.wait(o, ("ready",))
    from acme_lowlevel import csr as dns_csr
    problem(c.finalize(o, dns_csr(["x.example.test"])[0]), "badCSR", 400)
    problem(c.finalize(o, nf_csr(str(uuid.uuid4()))), "badCSR", 400)


def main():
    start_responder()
    ran = failed = 0
    for t in TESTS:
        ran += 1
        try:
            t()
            print("PASS", t.__name__, flush=True)
        except Exception as e:  # noqa: BLE001
            failed += 1
            import traceback
            traceback.print_exc()
            print("FAIL", t.__name__, repr(e), flush=True)
    print("%d tests, %d failed" % (ran, failed))
    sys.exit(1 if failed or ran == 0 else 0)


if __name__ == "__main__":
    main()
