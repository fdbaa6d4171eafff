"""test_acme_pg_hang.sh's client, one phase per run (before, frozen,
after); the account keys are kept in $T between runs. Every request has a
20 s client timeout: a server that hangs fails the test, never blocks it."""
import functools
import os
import sys
import time

from cryptography.hazmat.primitives import serialization

import acme_lowlevel as L

T = os.environ["T"]


def client(name):
    """A client whose account key is $T/NAME.pem (created on first use)."""
    path = os.path.join(T, name + ".pem")
    key = L.Key()
    if os.path.exists(path):
        with open(path, "rb") as f:
            key.k = serialization.load_pem_private_key(f.read(), None)
    else:
        with open(path, "wb") as f:
            f.write(key.k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()))
    c = L.Client(key)
    c.s.request = functools.partial(c.s.request, timeout=20)
    return c


def new_order(c, name):
    r = c.order([name])
    assert r.status_code == 201, (r.status_code, r.text)


def before():
    c = client("a")
    r = c.register()
    assert r.status_code == 201, r.status_code
    new_order(c, "before.certforge.test")
    with open(os.path.join(T, "a.kid"), "w") as f:
        f.write(c.kid)


def frozen():
    c = client("b")
    # newNonce: no store
    assert c.new_nonce()
    t0 = time.monotonic()
    r = c.post(c.d["newAccount"], {"termsOfServiceAgreed": True}, use_jwk=True)
    L.problem(r, "serverInternal", 500)
    print("newAccount during the outage: %d after %.2f s" % (r.status_code, time.monotonic() - t0))
    a = client("a")
    with open(os.path.join(T, "a.kid")) as f:
        a.kid = f.read()
    t0 = time.monotonic()
    r = a.order(["frozen.certforge.test"])
    L.problem(r, "serverInternal", 500)
    print("newOrder during the outage: %d after %.2f s" % (r.status_code, time.monotonic() - t0))
    # still answering without the store
    assert a.new_nonce()


def after():
    # the account refused during the outage was not kept: created now
    b = client("b")
    r = b.register()
    assert r.status_code == 201, (r.status_code, r.text)
    new_order(b, "after-b.certforge.test")
    a = client("a")
    r = a.register()  # the existing account: 200
    assert r.status_code == 200, (r.status_code, r.text)
    new_order(a, "after-a.certforge.test")


{"before": before, "frozen": frozen, "after": after}[sys.argv[1]]()
print(sys.argv[1], "ok")
