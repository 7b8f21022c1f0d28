"""Render record cases with cASO 5.2.2's own code, for tests/records_oracle.rs.

Usage: records_oracle.py IN.json OUT.json

IN holds {"cloud_type": ..., "cases": [{"name", "max_records", "fixes",
"records"}]}, records in the Rust serde form of `cloud_accounting::record::Record`.
For each case this builds caso.record objects the way cASO's extractors do and
pushes them through caso.messenger.ssm.SSMMessenger (its queue replaced by a
recorder, so the bytes are exactly what it hands to dirq), twice:

- "raw": cASO as it is (only CloudType is ours, passed as the record field);
- "expected": cASO with exactly the fixes the case names, each one a
  documented difference of ours (FIXES below); nothing else is changed.

Run it with TZ=UTC: cASO turns zone-less UTC datetimes into epochs with the
host zone (cASO defect 7), which we fix; UTC is where both must agree.
"""

import datetime
import json
import sys
import tempfile
import unicodedata

from oslo_config import cfg

import caso.messenger.ssm as ssm
import caso.record as R


def printable_ascii(s):
    return "".join(c for c in s if " " <= c <= "~")


def no_controls(s, xml):
    """Drop control characters (Cc); for XML also U+FFFE and U+FFFF."""
    return "".join(
        c for c in s
        if unicodedata.category(c) != "Cc" and not (xml and c in "\ufffe\uffff")
    )


def no_double_percent(s):
    while "%%" in s:
        s = s.replace("%%", "%")
    return s


# Every fix a case may name. Input fixes rewrite the record's text inputs,
# output fixes rewrite one record's rendered entry.
FIXES = {
    # Cloud records: printable ASCII only in every text field (cASO strips
    # non-ASCII from 3 cloud fields and nothing else; a cloud line has no
    # escape). Cloud records only.
    "text-rule",
    # StAR and JSON records: no control characters (cASO writes them raw
    # into XML, which then fails to parse, and as \u00XX into JSON), and in
    # StAR no U+FFFE/U+FFFF (no XML 1.0 parser takes them). Everything else,
    # non-ASCII included, is exactly cASO's. Non-cloud records only.
    "no-controls",
    # "%%" inside a cloud value would split the record at the APEL loader.
    "no-double-percent",
    # A server ending before it starts: WallDuration 0 (written 1), not < 0.
    "negative-wall",
    # Accelerator score keyed "Benchmark" (APEL schema), not "benchmark_value".
    "accelerator-benchmark-key",
    # StAR EndTime is the end of the period, not the measurement time.
    "storage-end-time",
}


def naive_utc(text):
    if text is None:
        return None
    dt = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return dt.astimezone(datetime.timezone.utc).replace(tzinfo=None)


TIME_FIELDS = ("start_time", "end_time", "create_time", "measurement_time")


def text_fields(rec, fixes, kind, top=True):
    """Apply the input-side text fixes to every string value of a record."""
    cloud = kind == "cloud"
    if ("text-rule" in fixes and not cloud) or ("no-controls" in fixes and cloud):
        raise ValueError(f"text-rule is for cloud records, no-controls for the rest: {kind}")
    out = {}
    for k, v in rec.items():
        if isinstance(v, str) and not (top and (k == "type" or k in TIME_FIELDS)):
            if "text-rule" in fixes:
                v = printable_ascii(v)
            if "no-controls" in fixes:
                v = no_controls(v, xml=kind == "storage")
            if cloud and "no-double-percent" in fixes:
                v = no_double_percent(v)
        elif isinstance(v, dict) and k == "benchmark":
            v = text_fields(v, fixes, kind, top=False)
        out[k] = v
    return out


def build(rec, cloud_type, fixes):
    kind = rec["type"]
    rec = text_fields(rec, fixes, kind)
    bench = rec.get("benchmark") or {}
    if kind == "cloud":
        user_dn = rec["global_user_name"]
        # As caso/extract/openstack/nova.py:_build_record does.
        r = R.CloudRecord(
            uuid=rec["vm_uuid"],
            site_name=rec["site_name"],
            name=rec["machine_name"].encode("ascii", errors="ignore"),
            user_id=rec["local_user_id"].encode("ascii", errors="ignore"),
            group_id=rec["local_group_id"],
            fqan=rec["fqan"],
            start_time=naive_utc(rec["start_time"]),
            end_time=naive_utc(rec["end_time"]),
            compute_service=rec["compute_service"],
            status=rec["status"],
            image_id=rec["image_id"],
            user_dn=user_dn.encode("ascii", errors="ignore") if user_dn is not None else None,
            benchmark_type=bench.get("type"),
            benchmark_value=bench.get("value"),
            memory=rec["memory"],
            cpu_count=rec["cpu_count"],
            disk=rec["disk"],
            public_ip_count=rec["public_ip_count"],
            suspend_duration=rec["suspend_duration"],
            cloud_type=cloud_type,
        )
        if rec["wall_duration"] is not None:
            r.wall_duration = rec["wall_duration"]
        if rec["cpu_duration"] is not None:
            r.cpu_duration = rec["cpu_duration"]
        if ("negative-wall" in fixes and r.end_time is not None
                and rec["wall_duration"] is None and r.end_time < r.start_time):
            r.wall_duration = 0
        return r
    if kind == "ip":
        return R.IPRecord(
            uuid=rec["uuid"],
            measure_time=naive_utc(rec["measurement_time"]),
            site_name=rec["site_name"],
            user_id=rec["local_user"],
            group_id=rec["local_group"],
            user_dn=rec["global_user_name"],
            fqan=rec["fqan"],
            ip_version=rec["ip_version"],
            public_ip_count=rec["ip_count"],
            compute_service=rec["compute_service"],
            cloud_type=cloud_type,
        )
    if kind == "accelerator":
        r = R.AcceleratorRecord(
            measurement_month=rec["measurement"]["month"],
            measurement_year=rec["measurement"]["year"],
            uuid=rec["associated_record"],
            fqan=rec["fqan"],
            compute_service=rec["compute_service"],
            site_name=rec["site_name"],
            count=rec["count"],
            available_duration=rec["available_duration"],
            accelerator_type=rec["accelerator_type"],
            user_dn=rec["global_user_name"],
            model=rec["model"],
            cores=rec["cores"],
            benchmark_type=bench.get("type"),
            benchmark_value=bench.get("value"),
            cloud_type=cloud_type,
        )
        if rec["active_duration"] is not None:
            r.active_duration = rec["active_duration"]
        return r
    if kind == "storage":
        # As caso/extract/openstack/cinder.py:_build_record does; cASO has
        # one measure_time for both createTime and EndTime.
        return R.StorageRecord(
            uuid=rec["volume_id"],
            site_name=rec["site_name"],
            name="volume",
            user_id=rec["local_user"],
            group_id=rec["local_group"],
            fqan=rec["group"],
            compute_service=rec["compute_service"],
            status="available",
            active_duration=0,
            measure_time=naive_utc(rec["create_time"]),
            start_time=naive_utc(rec["start_time"]),
            volume_creation=naive_utc(rec["start_time"]),
            capacity=rec["capacity_gib"],
            user_dn=rec["user_identity"],
        )
    raise ValueError(f"unknown record type {kind}")


def fix_entry(rec, entry, fixes):
    """Apply the output-side fixes to one record's rendered entry."""
    if rec["type"] == "accelerator" and "accelerator-benchmark-key" in fixes:
        assert entry.count('"benchmark_value":') == (1 if rec["benchmark"] else 0)
        entry = entry.replace('"benchmark_value":', '"Benchmark":')
    if rec["type"] == "storage" and "storage-end-time" in fixes:
        cut = lambda t: f"<sr:EndTime>{naive_utc(t).isoformat()}</sr:EndTime>".encode()
        old, new = cut(rec["create_time"]), cut(rec["end_time"])
        assert entry.count(old) == 1, entry
        entry = entry.replace(old, new)
    return entry


class Recorder:
    def __init__(self):
        self.items = []

    def add(self, data):
        self.items.append(data if isinstance(data, bytes) else data.encode("utf-8"))


def messenger(max_records):
    cfg.CONF.set_override("max_size", max_records, group="ssm")
    m = ssm.SSMMessenger()
    m.queue = Recorder()
    return m


def as_text(items):
    return [b.decode("utf-8", errors="backslashreplace") for b in items]


def run_case(case, cloud_type):
    fixes = set(case["fixes"])
    unknown = fixes - FIXES
    if unknown:
        raise ValueError(f"case {case['name']}: unknown fixes {sorted(unknown)}")
    out = {"name": case["name"]}
    try:
        m = messenger(case["max_records"])
        m.push([build(r, cloud_type, set()) for r in case["records"]])
        out["raw"] = as_text(m.queue.items)
    except Exception as e:  # cASO failing on an input is a difference too
        out["raw_error"] = f"{type(e).__name__}: {e}"
    # Same path as SSMMessenger.push, with the named fixes applied.
    buckets = {"cloud": [], "ip": [], "accelerator": [], "storage": []}
    for rec in case["records"]:
        entry = build(rec, cloud_type, fixes).ssm_message()
        buckets[rec["type"]].append(fix_entry(rec, entry, fixes))
    m = messenger(case["max_records"])
    m._push(buckets["cloud"], buckets["ip"], buckets["accelerator"], buckets["storage"])
    out["expected"] = as_text(m.queue.items)
    out["expected_is_ascii"] = all(b.isascii() for b in m.queue.items)
    return out


def main():
    src, dst = sys.argv[1], sys.argv[2]
    with open(src) as f:
        corpus = json.load(f)
    cfg.CONF([], project="caso")
    spool = tempfile.mkdtemp(prefix="caso-oracle-")
    cfg.CONF.set_override("output_path", spool, group="ssm")
    results = [run_case(c, corpus["cloud_type"]) for c in corpus["cases"]]
    with open(dst, "w") as f:
        json.dump({"cases": results}, f, indent=1)


if __name__ == "__main__":
    main()
