"""Parse every element of a dirq spool (as cASO or caso-extract wrote it) into
normalized records, for tests/extract_differential.rs and
tests/extract_faults.rs.

    python spool_records.py QUEUE_DIR

Prints one JSON document on stdout:
  {"messages": N, "elements": [names...],
   "cloud": [{Key: value, ...}], "ip": [{...}], "accelerator": [{...}],
   "storage": [{"RecordIdentity@createTime": ..., "SubjectIdentity/LocalUser": ...}]}
Every value is kept as written (strings for the cloud format, JSON values
for the JSON formats, element text for StAR). Exits 1 naming the element
when one does not parse as a whole message of a known type: a partial or
unknown element is an error, never skipped.
"""

import json
import os
import re
import sys
import xml.etree.ElementTree as ET

ELEMENT = re.compile(r"^[0-9a-f]{14}$")
DIR = re.compile(r"^[0-9a-f]{8}$")
SR = "{http://eu-emi.eu/namespaces/2011/02/storagerecord}"


def elements(root):
    for d in sorted(os.listdir(root)):
        if not DIR.match(d):
            continue
        for name in sorted(os.listdir(os.path.join(root, d))):
            if ELEMENT.match(name):
                yield f"{d}/{name}", os.path.join(root, d, name)


def cloud_records(body, where):
    if not body.endswith("\n"):
        raise ValueError(f"{where}: cloud message does not end with a newline")
    out = []
    for rec in body[:-1].split("\n%%\n"):
        fields = {}
        for line in rec.split("\n"):
            key, sep, value = line.partition(": ")
            if not sep or not key:
                raise ValueError(f"{where}: bad cloud record line {line!r}")
            if key in fields:
                raise ValueError(f"{where}: key {key} twice in one record")
            fields[key] = value
        keys = list(fields)
        if keys != sorted(keys):
            raise ValueError(f"{where}: keys not sorted: {keys}")
        out.append(fields)
    return out


def star_records(text, where):
    tree = ET.fromstring(text)
    if tree.tag != f"{SR}StorageUsageRecords":
        raise ValueError(f"{where}: root is {tree.tag}")
    out = []
    for r in tree:
        if r.tag != f"{SR}StorageUsageRecord":
            raise ValueError(f"{where}: unexpected element {r.tag}")
        flat = {}

        def walk(node, prefix):
            for k, v in node.attrib.items():
                flat[f"{prefix}@{k.replace(SR, '')}"] = v
            children = list(node)
            if not children:
                flat[prefix] = node.text or ""
            for c in children:
                tag = c.tag.replace(SR, "")
                walk(c, f"{prefix}/{tag}" if prefix else tag)

        for c in r:
            walk(c, c.tag.replace(SR, ""))
        out.append(flat)
    return out


def parse(root):
    doc = {"messages": 0, "elements": [], "cloud": [], "ip": [], "accelerator": [], "storage": []}
    for name, path in elements(root):
        with open(path, "rb") as f:
            raw = f.read()
        try:
            text = raw.decode("ascii")
            if text.startswith("APEL-cloud-message: v0.4\n"):
                doc["cloud"].extend(cloud_records(text.split("\n", 1)[1], name))
            elif text.startswith("{"):
                msg = json.loads(text)
                kind = msg.get("Type")
                if kind == "APEL Public IP message":
                    doc["ip"].extend(msg["UsageRecords"])
                elif kind == "APEL-accelerator-message":
                    doc["accelerator"].extend(msg["UsageRecords"])
                else:
                    raise ValueError(f"unknown JSON message type {kind!r}")
            elif text.startswith("<sr:StorageUsageRecords"):
                doc["storage"].extend(star_records(text, name))
            else:
                raise ValueError(f"unknown message {text[:60]!r}")
        except Exception as e:  # noqa: BLE001 - any failure names the element
            print(f"spool element {name}: {e}", file=sys.stderr)
            sys.exit(1)
        doc["messages"] += 1
        doc["elements"].append(name)
    return doc


if __name__ == "__main__":
    print(json.dumps(parse(sys.argv[1])))
