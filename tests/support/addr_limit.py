"""Connections per client address (limits.max_connections_per_address) on
an HTTPS daemon (certforge-acme, certforge-agent), over real TLS on
loopback:

  addr_limit.py HOST PORT CAFILE PATH LIMIT REFUSED_STATUS

LIMIT connections from 127.0.0.1 are each served (and served again: a
connection counts once, not per request); the next one's first request is
refused with REFUSED_STATUS, Retry-After and the connection closed; a
client from 127.0.0.2 is served meanwhile; once one of the first
connections closes, 127.0.0.1 is served again. Exit 0 or 1 with a reason.
Bounded: every socket has a 10 s timeout."""
import socket
import ssl
import sys
import time

HOST, PORT, CAFILE, PATH = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
LIMIT, REFUSED = int(sys.argv[5]), int(sys.argv[6])
CTX = ssl.create_default_context(cafile=CAFILE)


class Conn:
    def __init__(self, src):
        raw = socket.create_connection(("127.0.0.1", PORT), timeout=10, source_address=(src, 0))
        self.s = CTX.wrap_socket(raw, server_hostname=HOST)
        self.f = self.s.makefile("rb")

    def get(self):
        self.s.sendall(("GET %s HTTP/1.1\r\nHost: %s:%d\r\n\r\n" % (PATH, HOST, PORT)).encode())
        line = self.f.readline()
        if not line:
            return None, {}, b""
        status = int(line.split()[1])
        headers = {}
        while True:
            h = self.f.readline()
            if h in (b"\r\n", b"\n", b""):
                break
            k, v = h.decode("latin-1").split(":", 1)
            headers[k.strip().lower()] = v.strip()
        body = self.f.read(int(headers.get("content-length", "0")))
        return status, headers, body

    def closed_by_server(self):
        try:
            return self.f.read(1) == b""
        except (ssl.SSLError, OSError):
            return True

    def close(self):
        self.f.close()
        self.s.close()


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


held = []
for i in range(LIMIT):
    c = Conn("127.0.0.1")
    st, _, _ = c.get()
    if st != 200:
        fail("connection %d of %d from 127.0.0.1: status %s" % (i + 1, LIMIT, st))
    held.append(c)
st, _, _ = held[0].get()
if st != 200:
    fail("a second request on a counted connection: status %s" % st)

over = Conn("127.0.0.1")
st, h, body = over.get()
if st != REFUSED:
    fail("connection %d from 127.0.0.1: status %s, want %d" % (LIMIT + 1, st, REFUSED))
if h.get("retry-after") != "1":
    fail("no Retry-After: 1 on the refusal: %r" % h)
if b"max_connections_per_address" not in body:
    fail("the refusal does not name the setting: %r" % body)
if REFUSED == 429 and b"urn:ietf:params:acme:error:rateLimited" not in body:
    fail("not an ACME rateLimited problem: %r" % body)
if not over.closed_by_server():
    fail("the refused connection was left open")
over.close()

other = Conn("127.0.0.2")
st, _, _ = other.get()
if st != 200:
    fail("a client from 127.0.0.2 while 127.0.0.1 is at its limit: status %s" % st)
other.close()

held.pop().close()
deadline = time.monotonic() + 10
while True:
    again = Conn("127.0.0.1")
    st, _, _ = again.get()
    again.close()
    if st == 200:
        break
    if time.monotonic() > deadline:
        fail("127.0.0.1 not served again within 10 s of closing a connection (last status %s)" % st)
    time.sleep(0.1)
for c in held:
    c.close()
print("address limit: %d served, the next refused %d and closed, another address served, "
      "served again after a close" % (LIMIT, REFUSED))
