#!/usr/bin/env python3
"""Registers the services of scripts/setup-openstack.sh and populates its cloud
for tests/real_openstack, through the REST APIs only (Python's standard
library: no client package). Re-runnable: everything is looked up by name
first and made only when missing; a service user's password is never reset.

  openstack-populate.py services        service project, users, roles, endpoints
  openstack-populate.py populate ENV    projects, reader user, application
                                        credential, flavors, images, servers;
                                        writes ENV (KEY=VALUE) and ENV's
                                        directory/cloud.json (what was made)

Reads OS_KEYSTONE_URL, OS_ADMIN_PASSWORD, OS_SERVICE_PASSWORD, OS_ENDPOINTS.
"""

import json
import os
import sys
import time
import urllib.error
import urllib.request

KEYSTONE = os.environ["OS_KEYSTONE_URL"]
ADMIN_PASSWORD = os.environ["OS_ADMIN_PASSWORD"]
READER_PASSWORD = "reader-test"
DOMAIN = "default"


def log(*a):
    print("populate:", *a, flush=True)


def call(method, url, token=None, body=None, headers=None, raw=None, ok=(200, 201, 202, 204)):
    h = {"Accept": "application/json", "Connection": "close"}
    if token:
        h["X-Auth-Token"] = token
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        h["Content-Type"] = "application/json"
    if raw is not None:
        data = raw
        h["Content-Type"] = "application/octet-stream"
    h.update(headers or {})
    for attempt in range(5):
        req = urllib.request.Request(url, data=data, method=method, headers=h)
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                text = r.read()
                return r.status, (json.loads(text) if text else None), r.headers
        except urllib.error.HTTPError as e:
            text = e.read()
            if e.code in ok:
                return e.code, None, e.headers
            if e.code in (502, 503) and attempt < 4:
                time.sleep(2)
                continue
            raise SystemExit(f"{method} {url}: {e.code} {text[:500]!r}")
        except (ConnectionError, urllib.error.URLError) as e:
            if attempt < 4:
                time.sleep(2)
                continue
            raise SystemExit(f"{method} {url}: {e}")


def token(user="admin", password=ADMIN_PASSWORD, project="admin", system=False):
    scope = {"system": {"all": True}} if system else {
        "project": {"name": project, "domain": {"id": DOMAIN}}}
    body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": user, "domain": {"id": DOMAIN}, "password": password}}}, "scope": scope}}
    _, _, headers = call("POST", f"{KEYSTONE}/auth/tokens", body=body)
    return headers["X-Subject-Token"]


def find(tok, kind, name, extra=""):
    _, r, _ = call("GET", f"{KEYSTONE}/{kind}?name={urllib.request.quote(name)}{extra}", tok)
    items = r[kind]
    return items[0] if items else None


def ensure(tok, kind, name, body, extra=""):
    got = find(tok, kind, name, extra)
    if got:
        return got
    _, r, _ = call("POST", f"{KEYSTONE}/{kind}", tok, {kind[:-1]: dict(body, name=name)})
    log("made", kind[:-1], name)
    return r[kind[:-1]]


def grant(tok, project, user, role):
    call("PUT", f"{KEYSTONE}/projects/{project}/users/{user}/roles/{role}", tok)


def services():
    tok = token()
    service = ensure(tok, "projects", "service", {"domain_id": DOMAIN})
    admin_role = find(tok, "roles", "admin")
    service_role = ensure(tok, "roles", "service", {})
    for name in ("nova", "neutron", "glance", "placement"):
        if not find(tok, "users", name):
            ensure(tok, "users", name, {"domain_id": DOMAIN,
                                        "password": os.environ["OS_SERVICE_PASSWORD"]})
        user = find(tok, "users", name)
        grant(tok, service["id"], user["id"], admin_role["id"])
        grant(tok, service["id"], user["id"], service_role["id"])
    for pair in os.environ["OS_ENDPOINTS"].split():
        kind, url = pair.split("=", 1)
        name = {"compute": "nova", "image": "glance", "network": "neutron",
                "placement": "placement"}[kind]
        _, r, _ = call("GET", f"{KEYSTONE}/services?type={kind}", tok)
        if r["services"]:
            svc = r["services"][0]
        else:
            _, r, _ = call("POST", f"{KEYSTONE}/services", tok,
                           {"service": {"type": kind, "name": name}})
            svc = r["service"]
        _, r, _ = call("GET", f"{KEYSTONE}/endpoints?service_id={svc['id']}", tok)
        have = {e["interface"] for e in r["endpoints"]}
        for iface in ("public", "internal", "admin"):
            if iface not in have:
                call("POST", f"{KEYSTONE}/endpoints", tok, {"endpoint": {
                    "service_id": svc["id"], "interface": iface, "url": url,
                    "region_id": "RegionOne"}})
    log("services registered")


def catalog(tok):
    _, r, _ = call("GET", f"{KEYSTONE}/auth/catalog", tok)
    out = {}
    for svc in r["catalog"]:
        for e in svc["endpoints"]:
            if e["interface"] == "public":
                out[svc["type"]] = e["url"]
    return out


# What the cloud holds. Projects: (name, given to caso by name, tag, VO property).
PROJECTS = [
    ("caso-byname", True, None, None),
    ("caso-tagged", False, "caso", None),
    ("caso-vo", False, "caso", "vo.property.example.org"),
    ("caso-ignored", False, None, None),
]
FLAVORS = [
    # name, vcpus, ram, disk, extra specs
    ("t.small", 1, 64, 1, {}),
    ("t.medium", 2, 128, 2, {}),
    ("t.accel", 2, 128, 1, {"Accelerator:Type": "GPU", "Accelerator:Vendor": "NVIDIA",
                            "Accelerator:Model": "Tesla V100", "Accelerator:Number": "2"}),
    ("t.huge", 1, 64, 700000, {}),  # the fake hypervisor has 600000 GB: NoValidHost
    ("t.gone", 1, 64, 1, {}),  # deleted once its server is ACTIVE
]
IMAGES = [
    ("img-plain", {}),
    ("img-appdb", {"vmcatcher_event_ad_mpuri": "https://appdb.example.org/store/vo/image/caso-test:1/"}),
]
# Floating IPs (IPv4) by project.
FLOATING_IPS = {"caso-byname": 2, "caso-vo": 1, "caso-ignored": 1}
# label: (project, server name, flavor, image, final state)
SERVERS = [
    ("active", "caso-byname", "active-1", "t.small", "img-appdb", "ACTIVE"),
    ("shutoff", "caso-byname", "shutoff-1", "t.medium", "img-plain", "SHUTOFF"),
    ("nonascii", "caso-byname", "sérvér-ü-雲", "t.small", "img-plain", "ACTIVE"),
    ("accel", "caso-tagged", "accel-1", "t.accel", "img-plain", "ACTIVE"),
    ("error", "caso-tagged", "error-1", "t.huge", "img-plain", "ERROR"),
    ("deleted", "caso-tagged", "deleted-1", "t.small", "img-plain", "DELETED"),
    ("gone-flavor", "caso-vo", "gone-flavor-1", "t.gone", "img-appdb", "ACTIVE"),
    ("vo-active", "caso-vo", "vo-active-1", "t.small", "img-plain", "ACTIVE"),
    ("ignored", "caso-ignored", "ignored-1", "t.small", "img-plain", "ACTIVE"),
]


def populate(envpath):
    tok = token()
    cat = catalog(tok)
    nova, glance, neutron = cat["compute"], cat["image"], cat["network"]
    admin = find(tok, "users", "admin")
    admin_role = find(tok, "roles", "admin")
    reader_role = find(tok, "roles", "reader")
    member_role = find(tok, "roles", "member")
    reader = find(tok, "users", "caso-reader")
    if not reader:
        reader = ensure(tok, "users", "caso-reader", {"domain_id": DOMAIN,
                                                     "password": READER_PASSWORD})
    projects = {}
    for name, _, tag, vo in PROJECTS:
        body = {"domain_id": DOMAIN, "description": f"tests/real_openstack: {name}"}
        if tag:
            body["tags"] = [tag]
        if vo:
            body["VO"] = vo
        p = ensure(tok, "projects", name, body)
        projects[name] = p
        grant(tok, p["id"], admin["id"], admin_role["id"])
        grant(tok, p["id"], reader["id"], reader_role["id"])
        grant(tok, p["id"], reader["id"], member_role["id"])
    call("PUT", f"{KEYSTONE}/system/users/{reader['id']}/roles/{reader_role['id']}", tok)

    # Neutron: one GET /v2.0/networks before the first GET /v2.0/ports (Debian's
    # port_forwarding plugin otherwise fails on its first ports query).
    call("GET", f"{neutron}/v2.0/networks", tok)
    call("GET", f"{neutron}/v2.0/ports", tok)

    # Floating IPs (no agents needed to allocate them): an external flat
    # network with an IPv4 subnet, 2 IPs for caso-byname, 1 for caso-vo,
    # 1 for caso-ignored.
    _, r, _ = call("GET", f"{neutron}/v2.0/networks?name=caso-public", tok)
    if r["networks"]:
        net = r["networks"][0]
    else:
        _, r, _ = call("POST", f"{neutron}/v2.0/networks", tok, {"network": {
            "name": "caso-public", "router:external": True, "shared": False,
            "provider:network_type": "flat", "provider:physical_network": "public"}})
        net = r["network"]
        log("made network caso-public")
    _, r, _ = call("GET", f"{neutron}/v2.0/subnets?network_id={net['id']}", tok)
    if not r["subnets"]:
        call("POST", f"{neutron}/v2.0/subnets", tok, {"subnet": {
            "name": "caso-public-v4", "network_id": net["id"], "ip_version": 4,
            "cidr": "198.51.100.0/24", "enable_dhcp": False}})
        log("made subnet caso-public-v4")
    for pname, want in FLOATING_IPS.items():
        pid = projects[pname]["id"]
        _, r, _ = call("GET", f"{neutron}/v2.0/floatingips?project_id={pid}", tok)
        for _ in range(want - len(r["floatingips"])):
            call("POST", f"{neutron}/v2.0/floatingips", tok, {"floatingip": {
                "floating_network_id": net["id"], "project_id": pid}})
            log("made a floating IP for", pname)

    # Flavors (admin), looked up among all of them, deleted included.
    # Made once when the flavor to delete was deleted (it is then not listed).
    gone_marker = os.path.join(os.path.dirname(envpath), "flavor-deleted")
    mv = {"OpenStack-API-Version": "compute 2.79", "X-OpenStack-Nova-API-Version": "2.79"}
    _, r, _ = call("GET", f"{nova}/flavors/detail?is_public=None", tok, headers=mv)
    flavors = {f["name"]: f for f in r["flavors"]}
    for name, vcpus, ram, disk, specs in FLAVORS:
        if name in flavors or (name == "t.gone" and os.path.exists(gone_marker)):
            continue
        _, r, _ = call("POST", f"{nova}/flavors", tok, {"flavor": {
            "name": name, "vcpus": vcpus, "ram": ram, "disk": disk}}, headers=mv)
        flavors[name] = r["flavor"]
        if specs:
            call("POST", f"{nova}/flavors/{r['flavor']['id']}/os-extra_specs", tok,
                 {"extra_specs": specs}, headers=mv)
        log("made flavor", name)

    # Images: public, active (a few bytes uploaded), properties as given.
    _, r, _ = call("GET", f"{glance}/v2/images?limit=100", tok)
    images = {i["name"]: i for i in r["images"]}
    for name, props in IMAGES:
        if name not in images:
            _, img, _ = call("POST", f"{glance}/v2/images", tok, dict(
                props, name=name, disk_format="raw", container_format="bare",
                visibility="public"))
            images[name] = img
            log("made image", name)
        if images[name]["status"] != "active":
            call("PUT", f"{glance}/v2/images/{images[name]['id']}/file", tok,
                 raw=b"caso test image\n" * 64)

    # Servers, booted as admin in their projects, with no network.
    made = {}
    by_project = {}
    for label, pname, sname, fname, iname, final in SERVERS:
        if pname not in by_project:
            ptok = token(project=pname)
            _, r, _ = call("GET", f"{nova}/servers/detail?deleted=true&all_tenants=1"
                           f"&project_id={projects[pname]['id']}", tok, headers=mv)
            deleted = {s["name"]: s for s in r["servers"]}
            _, r, _ = call("GET", f"{nova}/servers/detail", ptok, headers=mv)
            by_project[pname] = (ptok, {s["name"]: s for s in r["servers"]}, deleted)
        ptok, live, deleted = by_project[pname]
        if sname in live:
            made[label] = live[sname]
            continue
        if final == "DELETED" and sname in deleted:
            made[label] = deleted[sname]
            continue
        if fname not in flavors:
            raise SystemExit(f"flavor {fname} is gone but server {sname} does not exist: "
                             "remove target/openstack to start afresh")
        _, r, _ = call("POST", f"{nova}/servers", ptok, {"server": {
            "name": sname, "flavorRef": flavors[fname]["id"],
            "imageRef": images[iname]["id"], "networks": "none"}}, headers=mv)
        made[label] = r["server"]
        log("booting", sname)
    for label, pname, sname, fname, iname, final in SERVERS:
        ptok = by_project[pname][0]
        sid = made[label]["id"]
        want = "ERROR" if final == "ERROR" else "ACTIVE"
        for _ in range(90):
            status, r, _ = call("GET", f"{nova}/servers/{sid}", tok, headers=mv, ok=(404,))
            if status == 404 or r is None:
                break
            s = r["server"]
            if s["status"] in (want, "SHUTOFF") or (final == "DELETED" and s["status"] == "DELETED"):
                break
            if s["status"] == "ERROR" and want != "ERROR":
                raise SystemExit(f"server {sname} went to ERROR: {s.get('fault')}")
            time.sleep(1)
        else:
            raise SystemExit(f"server {sname} never reached {want}")
        if status != 404 and r is not None:
            made[label] = r["server"]
        if final == "SHUTOFF" and made[label]["status"] == "ACTIVE":
            call("POST", f"{nova}/servers/{sid}/action", ptok, {"os-stop": None}, headers=mv)
            for _ in range(60):
                _, r, _ = call("GET", f"{nova}/servers/{sid}", tok, headers=mv)
                if r["server"]["status"] == "SHUTOFF":
                    break
                time.sleep(1)
            made[label] = r["server"]
        if final == "DELETED" and made[label].get("status") != "DELETED" and status != 404:
            call("DELETE", f"{nova}/servers/{sid}", ptok, headers=mv)
            for _ in range(60):
                st, r, _ = call("GET", f"{nova}/servers/{sid}", tok, headers=mv, ok=(404,))
                if st == 404:
                    break
                time.sleep(1)
            log("deleted", sname)
    if "t.gone" in flavors:
        call("DELETE", f"{nova}/flavors/{flavors['t.gone']['id']}", tok, headers=mv)
        open(gone_marker, "w").close()
        log("deleted flavor t.gone")

    # The reader's application credential (scoped to caso-byname), made once.
    rtok = token("caso-reader", READER_PASSWORD, "caso-byname")
    appcred_file = os.path.join(os.path.dirname(envpath), "appcred.json")
    if os.path.exists(appcred_file):
        with open(appcred_file) as f:
            appcred = json.load(f)
    else:
        _, r, _ = call("GET", f"{KEYSTONE}/users/{reader['id']}/application_credentials"
                       "?name=caso-test", rtok)
        for old in r["application_credentials"]:
            call("DELETE", f"{KEYSTONE}/users/{reader['id']}/application_credentials/{old['id']}", rtok)
        _, r, _ = call("POST", f"{KEYSTONE}/users/{reader['id']}/application_credentials", rtok,
                       {"application_credential": {"name": "caso-test"}})
        appcred = {"id": r["application_credential"]["id"],
                   "secret": r["application_credential"]["secret"]}
        with open(appcred_file + ".tmp", "w") as f:
            json.dump(appcred, f)
        os.rename(appcred_file + ".tmp", appcred_file)

    # When the servers were first made (kept across re-runs): tests extract
    # from shortly before it, so that the deleted server stays in the window.
    cloud_path = os.path.join(os.path.dirname(envpath), "cloud.json")
    populated_at = int(time.time()) - 600
    if os.path.exists(cloud_path):
        with open(cloud_path) as f:
            populated_at = json.load(f).get("populated_at", populated_at)
    cloud = {
        "populated_at": populated_at,
        "projects": {n: {"id": projects[n]["id"], "by_name": b, "tag": t, "vo": v}
                     for n, b, t, v in PROJECTS},
        "servers": {label: {"id": made[label]["id"], "project": p, "name": n, "flavor": f,
                            "flavor_id": flavors[f]["id"] if f in flavors else None,
                            "image": i, "image_id": images[i]["id"], "state": st}
                    for label, p, n, f, i, st in SERVERS},
        "flavors": {n: {"vcpus": v, "ram": r_, "disk": d, "extra_specs": s}
                    for n, v, r_, d, s in FLAVORS},
        "images": {n: {"id": images[n]["id"], "properties": p} for n, p in IMAGES},
        "floating_ips": FLOATING_IPS,
        "reader": {"name": "caso-reader", "password": READER_PASSWORD, "id": reader["id"]},
        "appcred": appcred,
    }
    with open(cloud_path, "w") as f:
        json.dump(cloud, f, indent=1, ensure_ascii=False)
    with open(envpath, "w") as f:
        f.write(f"OS_CLOUD_JSON={cloud_path}\n")
    log("populated:", ", ".join(f"{k}={v['id']}" for k, v in cloud["servers"].items()))


if __name__ == "__main__":
    if sys.argv[1] == "services":
        services()
    elif sys.argv[1] == "populate":
        populate(sys.argv[2])
    else:
        raise SystemExit("usage: openstack-populate.py services | populate ENV")
