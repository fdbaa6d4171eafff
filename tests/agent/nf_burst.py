"""N NFs enrol at once (threads), each retrying on 202/503 and on a
refused connection (the agent being restarted), bounded in tries; used by
test_agent_outage.sh. Prints one line per NF: uuid serial-hex."""
import concurrent.futures
import sys
import time

import est_client as e


def prepare(i):
    # one at a time: the OAM's SoftHSM token takes one login at a time
    # (ARCHITECTURE.md, "Known hazards of the test HSM")
    nf, dns, thumb = e.new_nf(1)
    k = e.new_key()
    return nf, dns, k, e.csr_der(k, nf, dns), e.token(nf, thumb)


def one(p):
    nf, dns, k, der, tok = p
    for _ in range(600):
        try:
            r = e.post("simpleenroll", der, token=tok)
        except e.requests.exceptions.ConnectionError:
            time.sleep(0.2)
            continue
        if r.status_code in (202, 503):
            time.sleep(min(int(r.headers["Retry-After"]), 1))
            continue
        assert r.status_code == 200, (r.status_code, r.text)
        c = e.p7_certs(r)[0]
        assert e.same_key(c, k) and e.sans(c) == sorted(["URI:urn:uuid:" + nf, "DNS:" + dns[0]]), e.sans(c)
        return "%s %x" % (nf, c.serial_number)
    raise AssertionError("NF %s: no certificate after 600 tries" % nf)


n = int(sys.argv[1])
nfs = [prepare(i) for i in range(n)]
with concurrent.futures.ThreadPoolExecutor(max_workers=n) as ex:
    for line in ex.map(one, nfs):
        print(line, flush=True)
