"""Check what the real cASO 5.2.2 wrote into its spool against the simulator's
manifest (the ground truth). Used by tests/openstack_sim_caso.rs after
scripts/run-caso-against-sim.sh.

    python caso_check.py WORKDIR --storage expect|none

Prints a JSON summary on stdout; exits 1 with the reasons on any mismatch.
Only cASO's known defects (FORMATS.md section 3) are tolerated, each named.
"""

import argparse
import json
import os
import re
import sys
import xml.etree.ElementTree as ET

ELEMENT = re.compile(r"^[0-9a-f]{14}$")


def spool_messages(root):
    for d in sorted(os.listdir(root)):
        if not re.match(r"^[0-9a-f]{8}$", d):
            continue
        for name in sorted(os.listdir(os.path.join(root, d))):
            if ELEMENT.match(name):
                with open(os.path.join(root, d, name), "rb") as f:
                    yield f.read().decode("ascii")


def parse(root):
    cloud, ips, accs, storage = {}, [], [], []
    for msg in spool_messages(root):
        if msg.startswith("APEL-cloud-message: v0.4\n"):
            body = msg.split("\n", 1)[1]
            for rec in body.split("\n%%\n"):
                fields = dict(
                    line.split(": ", 1) for line in rec.strip().split("\n") if line
                )
                cloud[fields["VMUUID"]] = fields
        elif msg.startswith("{"):
            doc = json.loads(msg)
            if doc["Type"] == "APEL Public IP message":
                ips.extend(doc["UsageRecords"])
            elif doc["Type"] == "APEL-accelerator-message":
                accs.extend(doc["UsageRecords"])
            else:
                raise ValueError(f"unknown JSON message type {doc['Type']}")
        elif "StorageUsageRecords" in msg:
            tree = ET.fromstring(msg)
            ns = "{http://eu-emi.eu/namespaces/2011/02/storagerecord}"
            for r in tree.iter(f"{ns}StorageUsageRecord"):
                ident = r.find(f"{ns}RecordIdentity")
                storage.append(ident.get(f"{ns}recordId"))
        else:
            raise ValueError(f"unknown message: {msg[:60]!r}")
    return cloud, ips, accs, storage


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("workdir")
    ap.add_argument("--storage", choices=["expect", "none"], required=True)
    args = ap.parse_args()
    with open(os.path.join(args.workdir, "manifest.json")) as f:
        manifest = json.load(f)
    cloud, ips, accs, storage = parse(os.path.join(args.workdir, "outgoing"))
    errors = []
    projects = [p for p in manifest["projects"] if p["accounted"] and p["vo"]]

    want = {}
    for p in projects:
        for s in p["servers"]:
            if s["expected"]["reported"]:
                want[s["id"]] = (p, s)
    got = set(cloud)
    if got != set(want):
        errors.append(
            f"cloud records: missing {sorted(set(want) - got)}, unexpected {sorted(got - set(want))}"
        )
    checked = 0
    for vm, (p, s) in want.items():
        rec = cloud.get(vm)
        if rec is None:
            continue
        e = s["expected"]
        checks = {
            "StartTime": str(e["start"]),
            "EndTime": str(e["end"]),
            "WallDuration": str(max(e["wall"], 1)),
            "Status": e["status"],
            "LocalGroupId": p["id"],
            "FQAN": p["vo"],
            "PublicIPCount": str(e["public_ip_count"]),
        }
        if e["image"] is not None:
            checks["ImageId"] = e["image"]
        # A flavor cASO cannot list (private) is only corrected by the usage report.
        if s["flavor_public"] or s["in_usage_report"]:
            checks["CpuCount"] = str(s["vcpus"])
            checks["Memory"] = str(s["memory_mb"])
            checks["Disk"] = str(s["disk_gb"])
        if s["flavor_public"] and e["benchmark"] is not None:
            checks["Benchmark"] = e["benchmark"]
            checks["BenchmarkType"] = e["benchmark_type"]
        for k, v in checks.items():
            if rec.get(k) != v:
                errors.append(f"{vm} ({s['case']}): {k} = {rec.get(k)!r}, want {v!r}")
        checked += 1

    want_acc = {
        vm for vm, (_, s) in want.items() if s["expected"]["accelerator"] and s["flavor_public"]
    }
    got_acc = {a["AssociatedRecord"] for a in accs}
    if got_acc != want_acc:
        errors.append(f"accelerator records: got {sorted(got_acc)}, want {sorted(want_acc)}")

    # Defects 1 and 2: one IP record per project survives, counting the whole
    # cloud's IPs of the last version seen (admin lists every project's IPs).
    cloud_ips = {"4": 0, "6": 0}
    for p in manifest["projects"]:
        for v in ("4", "6"):
            cloud_ips[v] += p["expected_ip_counts"][v]
    ip_projects = {r["LocalGroup"] for r in ips}
    if any(cloud_ips.values()) and ip_projects != {p["id"] for p in projects}:
        errors.append(f"IP records for projects {sorted(ip_projects)}")
    for r in ips:
        if r["IPCount"] != cloud_ips[str(r["IPVersion"])]:
            errors.append(f"IP record {r}: want the whole cloud's count {cloud_ips}")

    # Defect 6: one volume with a null name loses the project's storage records.
    vols = {
        v["id"]
        for p in projects
        if all(v["name"] is not None for v in p["volumes"])
        for v in p["volumes"]
    }
    if args.storage == "none":
        # Defect 9: an admin's changes-since filter makes Cinder return nothing.
        if storage:
            errors.append(f"storage records despite Cinder's admin filter: {len(storage)}")
    else:
        # Defect 8: volumes created after extract_to are reported too.
        if set(storage) != vols:
            errors.append(
                f"storage records: missing {sorted(vols - set(storage))}, unexpected {sorted(set(storage) - vols)}"
            )

    summary = {
        "cloud_records": len(cloud),
        "checked_fields_of": checked,
        "accelerator_records": len(accs),
        "ip_records": len(ips),
        "storage_records": len(storage),
        "errors": len(errors),
    }
    print(json.dumps(summary))
    if errors:
        for e in errors[:50]:
            print(e, file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
