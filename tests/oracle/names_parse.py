"""Parse our spooled messages the way the APEL server does, for tests/records_names.rs.

Usage: names_parse.py IN.json OUT.json

IN holds {"star": [message, ...], "json": [message, ...]}. Each StAR message
is parsed with xml.dom.minidom (the APEL server's StAR parser) and each JSON
message with json.loads. OUT holds {"star": [[{tag: text}, ...], ...],
"json": [[record, ...], ...]}: per message, per record, the text of every
element of the record (without the "sr:" prefix; absent elements absent).
"""

import json
import sys
import xml.dom.minidom


def text(node):
    return "".join(c.data for c in node.childNodes if c.nodeType == c.TEXT_NODE)


def star_records(message):
    doc = xml.dom.minidom.parseString(message.encode("ascii"))
    out = []
    for rec in doc.getElementsByTagName("sr:StorageUsageRecord"):
        fields = {}
        for el in rec.getElementsByTagName("*"):
            if not any(c.nodeType == c.ELEMENT_NODE for c in el.childNodes):
                fields[el.tagName.removeprefix("sr:")] = text(el)
        out.append(fields)
    return out


def main():
    with open(sys.argv[1]) as f:
        src = json.load(f)
    out = {
        "star": [star_records(m) for m in src["star"]],
        "json": [json.loads(m)["UsageRecords"] for m in src["json"]],
    }
    with open(sys.argv[2], "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
