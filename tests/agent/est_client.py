"""A small EST (RFC 7030) client for certforge-agent's tests: what an NF
speaks. requests for HTTPS with client certificates, cryptography for CSRs
and the PKCS#7 answers."""
import base64
import os
import subprocess
import time
import uuid as uuidlib

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs7

T = os.environ["T"]
EST = os.environ["EST"]
CF = os.environ.get("CF", "")
CF_AGENT = os.environ.get("CF_AGENT", "")
AGENT_CONF = os.environ.get("AGENT_CONF", "")
ZONE = os.environ.get("ZONE", "5gc.certforge.test")
VERIFY = T + "/est-root.pem"


def new_key():
    return ec.generate_private_key(ec.SECP256R1())


def csr_der(key, nf=None, dns=(), cn=None, uri=None):
    sans = []
    if nf:
        sans.append(x509.UniformResourceIdentifier("urn:uuid:" + nf))
    if uri:
        sans.append(x509.UniformResourceIdentifier(uri))
    sans += [x509.DNSName(d) for d in dns]
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, cn)] if cn else [])
    b = x509.CertificateSigningRequestBuilder().subject_name(name)
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def write_key(key, path):
    with open(path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))


def write_cert(cert, path):
    with open(path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))


def post(op, der, cert=None, token=None, body=None, ctype="application/pkcs10"):
    h = {"Content-Type": ctype}
    if token:
        h["Authorization"] = "Bearer " + token
    data = body if body is not None else base64.encodebytes(der)
    return requests.post(EST + "/" + op, data=data, headers=h, cert=cert, verify=VERIFY, timeout=30)


def p7_certs(r):
    assert r.headers["Content-Type"].startswith("application/pkcs7-mime"), r.headers
    return pkcs7.load_der_pkcs7_certificates(base64.b64decode(r.content))


def enroll(op, der, cert=None, token=None, max_tries=120, expect=200):
    """Send the request, again on 202/503 after Retry-After (bounded), as
    RFC 7030 §4.2.3 says; returns the final answer and the statuses seen."""
    seen = []
    for _ in range(max_tries):
        r = post(op, der, cert=cert, token=token)
        seen.append(r.status_code)
        if r.status_code not in (202, 503):
            break
        assert "Retry-After" in r.headers, (r.status_code, r.headers)
        time.sleep(min(int(r.headers["Retry-After"]), 2))
    assert r.status_code == expect, (r.status_code, r.text, seen)
    return r, seen


def nf_add(nf, dns=()):
    args = [CF_AGENT, "--config", AGENT_CONF, "nf", "add", "--nf-instance-id", nf]
    for d in dns:
        args += ["--dns", d]
    import json
    return json.loads(subprocess.run(args, capture_output=True, text=True, check=True).stdout)


def token(nf, thumb, ttl="10m", nf_types=("AMF",)):
    args = [CF, "acme", "token", "issue", "--token", os.environ["OAM_TOKEN"], "--key", "pkcs11:token=oam;object=oam-ta",
            "--cert", T + "/oam-ta.pem", "--nf-instance-id", nf, "--account-key-thumbprint", thumb, "--ttl", ttl]
    for t in nf_types:
        args += ["--nf-type", t]
    return subprocess.run(args, capture_output=True, text=True, check=True).stdout.strip()


def new_nf(n_dns=1):
    nf = str(uuidlib.uuid4())
    dns = ["nf-%s-%d.%s" % (nf[:8], i, ZONE) for i in range(n_dns)]
    info = nf_add(nf, dns)
    return nf, dns, info["account_key_thumbprint"]


def sans(cert):
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return sorted(["URI:" + u for u in ext.get_values_for_type(x509.UniformResourceIdentifier)] +
                  ["DNS:" + d for d in ext.get_values_for_type(x509.DNSName)])


def verify_chain(cert_path):
    r = subprocess.run(["openssl", "verify", "-x509_strict", "-CAfile", T + "/root.pem", "-untrusted", T + "/nf-ca.pem",
                        cert_path], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def same_key(cert, key):
    pub = lambda k: k.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return pub(cert.public_key()) == pub(key.public_key())
