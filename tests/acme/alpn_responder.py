#!/usr/bin/env python3
"""A tls-alpn-01 responder (RFC 8737) for tests: serves, on 127.0.0.1:PORT,
the certificate DIR/<SNI name>.crt.pem with key DIR/<SNI name>.key.pem to a
client that offers ALPN "acme-tls/1" (what dehydrated's --alpn folder
holds). Runs until killed."""
import os
import socket
import ssl
import sys
import threading

port, folder = int(sys.argv[1]), sys.argv[2]


def context_for(name):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.set_alpn_protocols(["acme-tls/1"])
    ctx.load_cert_chain(os.path.join(folder, name + ".crt.pem"), os.path.join(folder, name + ".key.pem"))
    return ctx


def sni(sock, name, _ctx):
    try:
        sock.context = context_for(name or "")
    except OSError:
        return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
    return None


base = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
base.set_alpn_protocols(["acme-tls/1"])
base.sni_callback = sni
srv = socket.create_server(("127.0.0.1", port))


def serve(conn):
    try:
        with base.wrap_socket(conn, server_side=True) as s:
            s.recv(1)
    except (OSError, ssl.SSLError):
        pass


while True:
    c, _ = srv.accept()
    c.settimeout(10)
    threading.Thread(target=serve, args=(c,), daemon=True).start()
