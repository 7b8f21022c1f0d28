#!/usr/bin/env python3
"""A TLS terminator on loopback for scripts/test-images.sh.

    tls_proxy.py CERT KEY LOGFILE BACKEND_PORT

Listens on 127.0.0.1 (a free port, printed as "port N" once bound), completes
the TLS handshake with CERT/KEY, and forwards the plain bytes to
127.0.0.1:BACKEND_PORT (the OpenStack simulator). Appends one line per
completed handshake to LOGFILE ("handshake SNI VERSION"), so the test can tell
that a client really came through TLS, and with which server name.
Standard library only; loopback only.
"""
import asyncio
import ssl
import sys


async def pump(reader, writer):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        try:
            writer.close()
        except Exception:
            pass


async def main():
    cert, key, logfile, backend = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    sni = {}

    def on_sni(sslobj, name, _ctx):
        sni[id(sslobj)] = name

    ctx.sni_callback = on_sni

    async def handle(client_r, client_w):
        sslobj = client_w.get_extra_info("ssl_object")
        with open(logfile, "a") as log:
            log.write(f"handshake {sni.get(id(sslobj))} {sslobj.version()}\n")
        try:
            back_r, back_w = await asyncio.open_connection("127.0.0.1", backend)
        except OSError:
            client_w.close()
            return
        await asyncio.gather(pump(client_r, back_w), pump(back_r, client_w))

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx)
    print(f"port {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
