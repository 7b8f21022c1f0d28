#!/usr/bin/env python3
"""Counts APEL records, for scripts/test-images.sh.

    apel_count.py spool DIR        # the elements of the dirq spools under DIR
    apel_count.py ams ADMIN_PORT   # what the AMS double received (its admin port)

Prints one JSON object: messages, records (total and by type) and, for the
AMS double, its duplicate count and whether every signature verified (the
records are counted in the content the signature check recovered, so a
message whose signature failed counts no records). Standard library only.
"""
import json
import os
import re
import sys
import urllib.request

ELEMENT = re.compile(r"^[0-9a-f]{14}$")
DIRECTORY = re.compile(r"^[0-9a-f]{8}$")


def records(text):
    """(type, count) of one APEL message."""
    if text.startswith("APEL-cloud-message:"):
        return "cloud", len(re.findall(r"^VMUUID: ", text, re.M))
    if text.lstrip().startswith("<"):
        return "storage", text.count("<sr:StorageUsageRecord>")
    doc = json.loads(text)
    kind = "ip" if "Public IP" in doc.get("Type", "") else "accelerator"
    return kind, len(doc["UsageRecords"])


def tally(texts):
    out = {"messages": 0, "records": 0, "by_type": {}}
    for t in texts:
        kind, n = records(t)
        out["messages"] += 1
        out["records"] += n
        out["by_type"][kind] = out["by_type"].get(kind, 0) + n
    return out


def spool(path):
    """Every dirq element under PATH, at any depth (cASO's default spool is
    outgoing/openstack)."""
    texts = []
    for top, _, files in os.walk(path):
        if not DIRECTORY.match(os.path.basename(top)):
            continue
        for f in sorted(files):
            if ELEMENT.match(f):
                with open(os.path.join(top, f), encoding="ascii") as fh:
                    texts.append(fh.read())
    return tally(texts)


def ams(port):
    base = f"http://127.0.0.1:{port}"
    get = lambda p: urllib.request.urlopen(base + p, timeout=30).read()
    # /messages first: reading a message's content runs its signature check.
    stored = json.loads(get("/messages"))
    texts = []
    for m in stored:
        try:
            texts.append(get(f"/messages/{m['seq']}/content").decode("ascii"))
        except urllib.error.HTTPError:
            pass  # no content: the signature did not verify
    out = tally(texts)
    stats = json.loads(get("/stats"))
    out["received"] = stats["messages"]
    out["duplicates"] = stats["duplicates"]
    out["all_verified"] = stats["signatures"]["all_verified"]
    out["signer_dns"] = stats["signatures"]["signer_dns"]
    return out


def main():
    kind, arg = sys.argv[1], sys.argv[2]
    print(json.dumps(spool(arg) if kind == "spool" else ams(arg), sort_keys=True))


if __name__ == "__main__":
    main()
