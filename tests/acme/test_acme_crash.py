"""kill -9 of certforge-acme under load (run by test_acme_crash.sh): what a
client was told survives. 8 clients run complete flows until the process is
killed mid-flight; after the restart every order a client saw `valid` is
still valid with the same certificate URL, which downloads the same
certificate; every order a client saw created still exists with a state
at least as far along; orders that were `processing` (finalize accepted)
end `valid` without a new finalize (certforge-acme takes them up again)."""
import os
import signal
import subprocess
import sys
import threading
import time

from acme_lowlevel import Client, csr, start_responder

ORDER_RANK = {"pending": 0, "ready": 1, "processing": 2, "valid": 3, "invalid": 3}


def worker(idx, seen, stop):
    try:
        c = Client()
        c.register()
        n = 0
        while not stop.is_set():
            name = "crash%d-%d.example.test" % (idx, n)
            n += 1
            r = c.order([name])
            if r.status_code != 201:
                return
            o = r.json()
            o["_url"] = r.headers["Location"]
            seen[o["_url"]] = ("pending", None, c)
            o = c.validate_http01(o)
            seen[o["_url"]] = (o["status"], None, c)
            r = c.finalize(o, csr([name])[0])
            if r.status_code != 200:
                return
            st = r.json()["status"]
            seen[o["_url"]] = (st, (r.json().get("certificate"), None), c)
            o = c.wait(o, ("valid", "invalid"))
            pem = None
            if o["status"] == "valid":
                g = c.get(o["certificate"])
                # only a certificate counts as "told": an error answer (a
                # badNonce among 8 clients, the kill mid-request) is not
                pem = g.text if g.status_code == 200 else None
            seen[o["_url"]] = (o["status"], (o.get("certificate"), pem), c)
    except Exception:  # the server went away mid-request: expected
        return


def main():
    start_responder()
    seen, stop = {}, threading.Event()
    ts = [threading.Thread(target=worker, args=(i, seen, stop), daemon=True) for i in range(8)]
    for t in ts:
        t.start()
    # let them get going, then kill -9 in the middle of it
    deadline = time.time() + 60
    while time.time() < deadline and sum(1 for v in seen.values() if v[0] == "valid") < 20:
        time.sleep(0.05)
    pid = int(os.environ["ACME_PID_REAL"])
    os.kill(pid, signal.SIGKILL)
    stop.set()
    for t in ts:
        t.join(20)
    valid = {u: v for u, v in seen.items() if v[0] == "valid"}
    assert len(valid) >= 20, "only %d orders reached valid before the kill" % len(valid)
    print("before the kill: %d orders seen, %d valid, %d processing" %
          (len(seen), len(valid), sum(1 for v in seen.values() if v[0] == "processing")), flush=True)
    # restart (the shell script does it when the marker appears)
    os.environ["ACME_PID_REAL"] = str(restart(1))
    lost = 0
    for url, (st, cert, c) in seen.items():
        c.nonce = None
        after = c.get(url)
        assert after.status_code == 200, (url, after.status_code, after.text)
        o = after.json()
        if ORDER_RANK[o["status"]] < ORDER_RANK[st]:
            lost += 1
            print("went back: %s %s -> %s" % (url, st, o["status"]))
        if st == "valid":
            assert o["status"] == "valid" and o["certificate"] == cert[0], (url, o)
            if cert[1] is not None:
                assert c.get(o["certificate"]).text == cert[1], "certificate changed: " + url
        if st == "processing":
            o["_url"] = url
            o = c.wait(o, ("valid", "invalid"))
            assert o["status"] == "valid", ("a processing order did not complete after the restart", url, o)
    assert lost == 0, "%d orders went back" % lost
    print("after the restart: all %d orders as they were or further" % len(seen), flush=True)
    processing_then_kill()


def restart(n):
    open(os.environ["T"] + "/restart%d" % n, "w").close()
    for _ in range(300):
        if os.path.exists(os.environ["T"] + "/restarted%d" % n):
            pid = int(open(os.environ["T"] + "/restarted%d" % n).read().strip() or 0)
            assert pid > 0, "restart %d: no certforge-acme pid" % n
            return pid
        time.sleep(0.1)
    raise AssertionError("no restart")


def processing_then_kill():
    """certforged stopped (SIGSTOP): finalize answers processing; kill -9;
    certforged continued; after the restart those orders complete without
    another finalize."""
    c = Client()
    c.register()
    ready = []
    for i in range(5):
        name = "proc%d.example.test" % i
        r = c.order([name])
        o = r.json()
        o["_url"] = r.headers["Location"]
        o = c.validate_http01(o)
        assert o["status"] == "ready", o
        ready.append((o, name))
    engine = int(os.environ["ENGINE_PID_REAL"])
    os.kill(engine, signal.SIGSTOP)
    try:
        for o, name in ready:
            r = c.finalize(o, csr([name])[0])
            assert r.status_code == 200 and r.json()["status"] == "processing", (r.status_code, r.text)
            assert int(r.headers["Retry-After"]) >= 1
        os.kill(int(os.environ["ACME_PID_REAL"]), signal.SIGKILL)
    finally:
        os.kill(engine, signal.SIGCONT)
    pid = restart(2)
    os.environ["ACME_PID_REAL"] = str(pid)
    for o, _ in ready:
        c.nonce = None
        o = c.wait(o, ("valid", "invalid"))
        assert o["status"] == "valid", ("not completed after the restart", o)
        assert "BEGIN CERTIFICATE" in c.get(o["certificate"]).text
    print("processing orders completed after kill -9 and restart: %d" % len(ready))


if __name__ == "__main__":
    main()
