#!/usr/bin/env python3
"""A tiny authoritative DNS server on a loopback address, for scripts/test-images.sh.

    dns_server.py ADDR LOGFILE NAME=IPV4...

Answers A queries for the given names (case-insensitive), an empty NOERROR
for other types of a known name, NXDOMAIN for everything else; appends
"QNAME QTYPE" per query to LOGFILE so the test can tell that a lookup went
through DNS. Prints "ready" once bound. Standard library only; UDP port 53
(resolv.conf cannot name another port), so ADDR must be a loopback address.
"""
import socket
import struct
import sys


def parse_qname(msg, off):
    labels = []
    while True:
        n = msg[off]
        off += 1
        if n == 0:
            return ".".join(labels), off
        labels.append(msg[off:off + n].decode("ascii", "replace"))
        off += n


def main():
    addr, logfile = sys.argv[1], sys.argv[2]
    if not addr.startswith("127."):
        sys.exit("dns_server: only loopback addresses")
    names = {}
    for spec in sys.argv[3:]:
        name, ip = spec.split("=", 1)
        names[name.lower().rstrip(".")] = socket.inet_aton(ip)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((addr, 53))
    print("ready", flush=True)
    while True:
        msg, peer = sock.recvfrom(512)
        if len(msg) < 12:
            continue
        qid, _flags, qdcount = struct.unpack("!HHH", msg[:6])
        if qdcount != 1:
            continue
        qname, off = parse_qname(msg, 12)
        qtype, _qclass = struct.unpack("!HH", msg[off:off + 4])
        question = msg[12:off + 4]
        with open(logfile, "a") as log:
            log.write(f"{qname} {qtype}\n")
        ip = names.get(qname.lower().rstrip("."))
        answers = b""
        rcode = 0
        if ip is None:
            rcode = 3  # NXDOMAIN
        elif qtype == 1:
            # Name pointer to the question (offset 12), A, IN, TTL 60, 4 bytes.
            answers = struct.pack("!HHHIH", 0xC00C, 1, 1, 60, 4) + ip
        ancount = 1 if answers else 0
        # QR, AA, RD copied, RA; rcode.
        flags = 0x8000 | 0x0400 | (_flags & 0x0100) | 0x0080 | rcode
        header = struct.pack("!HHHHHH", qid, flags, 1, ancount, 0, 0)
        sock.sendto(header + question + answers, peer)


if __name__ == "__main__":
    main()
