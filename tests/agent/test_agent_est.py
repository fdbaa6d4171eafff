"""certforge-agent over EST, run by test_agent_est.sh against the real
daemons: certforged, certforge-acme (NfInstanceId + tkauth-01, dns-01
validated against knotd), knotd (RFC 2136 + TSIG), the agent. Each case
checks the answer an NF gets and, for refusals, that nothing was issued."""
import os
import sqlite3
import subprocess
import sys
import time

import est_client as e
from cryptography import x509

T = e.T
TESTS = []


def test(f):
    TESTS.append(f)
    return f


def certs_issued():
    db = sqlite3.connect(T + "/agent.db")
    n = db.execute("SELECT COUNT(*) FROM certs").fetchone()[0]
    db.close()
    return n


def refused(status, reason_code, f):
    """f() must answer `status`, log `reason_code`, and issue nothing."""
    before = certs_issued()
    r = f()
    assert r.status_code == status, (r.status_code, r.text)
    time.sleep(0.3)
    with open(T + "/agent.log") as lg:
        last = [l for l in lg if " op=simple" in l][-1]
    assert " reason=%s " % reason_code in last, last
    assert certs_issued() == before, "a refusal issued a certificate"
    return r


@test
def cacerts():
    r = e.requests.get(e.EST + "/cacerts", verify=e.VERIFY, timeout=10)
    assert r.status_code == 200 and r.headers.get("Content-Transfer-Encoding") == "base64", r.headers
    subjects = sorted(c.subject.rfc4514_string() for c in e.p7_certs(r))
    want = sorted(x509.load_pem_x509_certificate(open(T + "/" + f, "rb").read()).subject.rfc4514_string()
                  for f in ("root.pem", "nf-ca.pem"))
    assert subjects == want, subjects


@test
def token_enrolment_then_reenrolment():
    nf, dns, thumb = e.new_nf(2)
    k = e.new_key()
    r, _ = e.enroll("simpleenroll", e.csr_der(k, nf, dns), token=e.token(nf, thumb))
    c = e.p7_certs(r)
    assert len(c) == 1, "RFC 7030 §4.2.3: the issued certificate"
    cert = c[0]
    assert e.sans(cert) == sorted(["URI:urn:uuid:" + nf] + ["DNS:" + d for d in dns]), e.sans(cert)
    assert e.same_key(cert, k), "the certificate is not for the NF's key"
    e.write_cert(cert, T + "/nfa.pem")
    e.write_key(k, T + "/nfa.key")
    e.verify_chain(T + "/nfa.pem")
    # NFTypes from the token (RFC 9310 id-pe-nftype 1.3.6.1.5.5.7.1.34)
    assert any(x.oid.dotted_string == "1.3.6.1.5.5.7.1.34" for x in cert.extensions), "no NFTypes"
    # the same request again: the same certificate (the answer was lost)
    r2, _ = e.enroll("simpleenroll", e.csr_der(k, nf, dns), token=e.token(nf, thumb))
    assert e.p7_certs(r2)[0].serial_number == cert.serial_number
    # re-enrolment with its certificate, same key: a new certificate
    r3, _ = e.enroll("simplereenroll", e.csr_der(k, nf, dns), cert=(T + "/nfa.pem", T + "/nfa.key"))
    c3 = e.p7_certs(r3)[0]
    assert c3.serial_number != cert.serial_number and e.same_key(c3, k)
    assert e.sans(c3) == e.sans(cert)
    # re-key: a new key under the current certificate, with a new token
    # (not needed while certforge-acme reuses the authorization; accepted)
    k2 = e.new_key()
    r4, _ = e.enroll("simplereenroll", e.csr_der(k2, nf, dns), cert=(T + "/nfa.pem", T + "/nfa.key"),
                     token=e.token(nf, thumb))
    assert e.same_key(e.p7_certs(r4)[0], k2)
    global NFA
    NFA = (nf, dns, thumb, k)


@test
def bootstrap_certificate_enrolment():
    nf, dns, thumb = e.new_nf(1)
    subprocess.run(["bash", "-c", ". $CF_SOURCE_DIR/tests/agent/agent_env_pki.sh; bootstrap_cert nfb %s" % nf],
                   check=True)
    k = e.new_key()
    boot = (T + "/nfb.pem", T + "/nfb.key")
    # dns names only: the bootstrap certificate carries no OAM token
    r, _ = e.enroll("simpleenroll", e.csr_der(k, None, dns), cert=boot)
    cert = e.p7_certs(r)[0]
    assert e.sans(cert) == ["DNS:" + dns[0]], e.sans(cert)
    e.write_cert(cert, T + "/nfb-op.pem")
    e.write_key(k, T + "/nfb-op.key")
    e.verify_chain(T + "/nfb-op.pem")
    # the instance ID needs the token
    refused(401, "token_needed", lambda: e.post("simpleenroll", e.csr_der(e.new_key(), nf, dns), cert=boot))
    # a bootstrap certificate cannot re-enrol
    refused(401, "no_credential", lambda: e.post("simplereenroll", e.csr_der(k, None, dns), cert=boot))
    # re-enrolment names what the certificate names (RFC 7030 §4.2.2)
    nf2 = e.nf_add(nf, dns + ["extra." + e.ZONE])
    refused(403, "reenroll_names", lambda: e.post("simplereenroll", e.csr_der(k, None, dns + ["extra." + e.ZONE]),
                                                   cert=(T + "/nfb-op.pem", T + "/nfb-op.key")))
    r, _ = e.enroll("simplereenroll", e.csr_der(k, None, dns), cert=(T + "/nfb-op.pem", T + "/nfb-op.key"))
    global NFB
    NFB = (nf, dns, thumb, k)


@test
def no_or_bad_credential():
    nf, dns, thumb = e.new_nf(1)
    k = e.new_key()
    refused(401, "no_credential", lambda: e.post("simpleenroll", e.csr_der(k, None, dns)))
    subprocess.run(["bash", "-c", ". $CF_SOURCE_DIR/tests/agent/agent_env_pki.sh; bootstrap_cert rogue1 %s rogue" % nf],
                   check=True)
    r = refused(401, "no_credential", lambda: e.post("simpleenroll", e.csr_der(k, None, dns),
                                                     cert=(T + "/rogue1.pem", T + "/rogue1.key")))
    assert "bootstrap trust anchor" in r.text, r.text
    refused(401, "bad_token", lambda: e.post("simpleenroll", e.csr_der(k, nf, dns), token="a.b.c"))
    # a token for another account key (another NF's thumbprint)
    other, _, other_thumb = e.new_nf(1)
    refused(401, "bad_token", lambda: e.post("simpleenroll", e.csr_der(k, nf, dns), token=e.token(nf, other_thumb)))
    # an unregistered NF with a valid-looking token
    import uuid
    stranger = str(uuid.uuid4())
    refused(403, "unknown_nf", lambda: e.post("simpleenroll", e.csr_der(k, stranger, []), token=e.token(stranger, thumb)))
    # an expired token
    tok = e.token(nf, thumb, ttl="1s")
    time.sleep(2.5)
    refused(401, "token_expired", lambda: e.post("simpleenroll", e.csr_der(k, nf, dns), token=tok))


@test
def csr_names_not_the_nfs():
    nf, dns, thumb = e.new_nf(1)
    other, odns, _ = e.new_nf(1)
    tok = e.token(nf, thumb)
    k = e.new_key()
    refused(403, "foreign_name", lambda: e.post("simpleenroll", e.csr_der(k, nf, odns), token=tok))
    refused(403, "foreign_name", lambda: e.post("simpleenroll", e.csr_der(k, other, dns), token=tok))
    refused(403, "foreign_name", lambda: e.post("simpleenroll", e.csr_der(k, nf, dns, cn="x." + e.ZONE), token=tok))
    refused(403, "name_type", lambda: e.post("simpleenroll", e.csr_der(k, nf, dns, uri="https://x.example/"), token=tok))
    refused(400, "bad_encoding", lambda: e.post("simpleenroll", None, token=tok, body=b"!!not base64!!"))
    refused(400, "bad_csr", lambda: e.post("simpleenroll", None, token=tok, body=b"MIIBAA=="))
    r = e.post("simpleenroll", e.csr_der(k, nf, dns), token=tok, ctype="text/plain")
    assert r.status_code == 415, r.status_code


@test
def csr_key_of_another_nf():
    nf, dns, _, k = NFA  # NF A's key
    other, odns, othumb = e.new_nf(1)
    refused(403, "key_reused", lambda: e.post("simpleenroll", e.csr_der(k, other, odns), token=e.token(other, othumb)))


@test
def token_replayed():
    nf, dns, thumb = e.new_nf(1)
    tok = e.token(nf, thumb)
    k = e.new_key()
    e.enroll("simpleenroll", e.csr_der(k, nf, dns), token=tok)
    # the same token for another key of the same NF
    refused(401, "token_replayed", lambda: e.post("simpleenroll", e.csr_der(e.new_key(), nf, dns), token=tok))


def main():
    only = sys.argv[1:]
    failed = 0
    for t in TESTS:
        if only and t.__name__ not in only:
            continue
        try:
            t()
            print("ok  ", t.__name__, flush=True)
        except Exception as ex:  # report every case, then fail
            import traceback
            traceback.print_exc()
            print("FAIL", t.__name__, ex, flush=True)
            failed += 1
    print("%d passed, %d failed" % (len(TESTS) - failed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
