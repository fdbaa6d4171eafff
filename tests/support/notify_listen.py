"""A stand-in for systemd's notification socket (sd_notify, Type=notify):

  notify_listen.py SOCKET-PATH SECONDS

binds a datagram Unix socket at SOCKET-PATH and prints every message it
receives, one line per assignment ("READY=1", "STATUS=..."), flushed, until
SECONDS have passed or a message with STOPPING=1 arrived. Exit 0."""
import os
import socket
import sys
import time

path, seconds = sys.argv[1], float(sys.argv[2])
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
os.chmod(path, 0o666)
deadline = time.monotonic() + seconds
while time.monotonic() < deadline:
    s.settimeout(max(0.05, deadline - time.monotonic()))
    try:
        msg = s.recv(4096).decode("utf-8", "replace")
    except socket.timeout:
        break
    for line in msg.splitlines():
        print(line, flush=True)
    if "STOPPING=1" in msg.splitlines():
        break
s.close()
os.unlink(path)
