"""cASO 5.2.2's own energy code, for tests/energy.

Usage: caso_energy.py IN.json OUT.json (run with TZ=UTC, like cASO's
deployments that agree with us; see prometheus::query::chunks).

IN: {"mode": "extract", "endpoint", "metric", "uuid_label", "labels": ["k:v"],
     "step", "factor", "site_name", "service_name",
     "projects": [{"id", "vo", "from", "to", "servers": [{"id", "name",
     "status", "created", "flavor_id"}], "flavors": {"<id>": vcpus}}],
     "cim": {"base_url", "email", "password"} (optional: push the records
     with cASO's greendigit_cim messenger)}
  or {"mode": "chunks", "cases": [[from_micros, to_micros, step], ...]}
  or {"mode": "render", "records": [<EnergyRecord fields by name>]}.

"extract" runs cASO's EnergyConsumptionExtractor.extract (its Nova part
replaced by the given servers and flavors, which is all it reads of Nova)
against the given Prometheus, through prometheus-api-client, and counts the
HTTP requests it sends. OUT: {"projects": [{"records": [<model_dump_json>],
"energy": {"<vm>": repr(float)}}], "requests": N}.
"""

import datetime
import json
import sys

import requests
from oslo_config import cfg

import caso.extract.prometheus as P
import caso.record  # noqa: F401

CONF = cfg.CONF


class Server:
    def __init__(self, d):
        self.id = d["id"]
        self.name = d["name"]
        self.status = d["status"]
        self.created = d["created"]
        self.flavor = {"id": d["flavor_id"]}


def utc(micros):
    return datetime.datetime(1970, 1, 1) + datetime.timedelta(microseconds=micros)


def main():
    inp = json.load(open(sys.argv[1]))
    CONF([], project="caso", default_config_files=[])
    if inp["mode"] == "chunks":
        ext = object.__new__(P.EnergyConsumptionExtractor)
        out = []
        for f, t, step in inp["cases"]:
            out.append([
                [round(a.timestamp()), round(b.timestamp())]
                for a, b in ext._split_time_chunks(utc(f), utc(t), step)
            ])
        json.dump({"chunks": out}, open(sys.argv[2], "w"))
        return
    if inp["mode"] == "render":
        out = [
            caso.record.EnergyRecord(**r).model_dump_json(by_alias=True, exclude_none=True)
            for r in inp["records"]
        ]
        json.dump({"rendered": out}, open(sys.argv[2], "w"))
        return

    CONF.set_override("site_name", inp["site_name"])
    CONF.set_override("service_name", inp["service_name"])
    g = "prometheus"
    CONF.set_override("prometheus_endpoint", inp["endpoint"], group=g)
    CONF.set_override("prometheus_metric_name", inp["metric"], group=g)
    CONF.set_override("vm_uuid_label_name", inp["uuid_label"], group=g)
    CONF.set_override("labels", inp["labels"], group=g)
    CONF.set_override("prometheus_step_seconds", inp["step"], group=g)
    CONF.set_override("cpu_normalization_factor", inp["factor"], group=g)

    count = {"n": 0}
    real = requests.Session.request

    def counting(self, method, url, *a, **kw):
        if "/api/v1/query_range" in url:
            count["n"] += 1
        return real(self, method, url, *a, **kw)

    requests.Session.request = counting

    all_records = []
    out = {"projects": []}
    for p in inp["projects"]:
        ext = object.__new__(P.EnergyConsumptionExtractor)
        ext.project = p["id"]
        ext.vo = p["vo"]
        ext.flavors = {k: {"vcpus": v} for k, v in p["flavors"].items()}
        servers = [Server(s) for s in p["servers"]]
        ext._get_servers = lambda servers=servers: sorted(servers, key=lambda s: s.created)
        energy = {}
        orig = ext._energy_consumed_wh

        def spy(vm, f, t, orig=orig, energy=energy):
            e = orig(vm, f, t)
            energy[vm] = repr(e)
            return e

        ext._energy_consumed_wh = spy
        records = ext.extract(utc(p["from"]), utc(p["to"]))
        all_records.extend(records)
        out["projects"].append({
            "records": [r.model_dump_json(by_alias=True, exclude_none=True) for r in records],
            "energy": energy,
        })
    out["requests"] = count["n"]
    requests.Session.request = real

    if inp.get("cim"):
        import caso.messenger.greendigit_cim as G
        c = inp["cim"]
        CONF.set_override("base_url", c["base_url"], group="greendigit_cim")
        CONF.set_override("email", c["email"], group="greendigit_cim")
        CONF.set_override("password", c["password"], group="greendigit_cim")
        CONF.set_override("verify_ssl", False, group="greendigit_cim")
        G.GreenDIGITEnergyMessenger().push(all_records)
    json.dump(out, open(sys.argv[2], "w"))


main()
