"""Checks the deployment files (run by tests/ops/deploy_manifests.rs from .venv).

    deploy_check.py ROOT validate     schema + policy checks; prints "ok: ..." lines
    deploy_check.py ROOT configmap    prints the ConfigMap's data as JSON

validate:
- every Kubernetes object in deploy/kubernetes is valid for the API version
  below, with unknown fields refused (kubernetes-validate, whose schemas ship
  in the package: no network);
- the policy the issue asks for: CronJobs in batch/v1 with the appliance's
  schedules, concurrencyPolicy Forbid, non-root, read-only root file system,
  both on one PersistentVolumeClaim, credentials from Secrets, configuration
  from the ConfigMap, every reference resolving to an object that exists;
- docker-compose.yml and the cron file say what the appliance said.
Exits 1 with every failure listed.
"""
import copy
import json
import pathlib
import sys

import kubernetes_validate
import yaml

KUBERNETES_VERSION = "1.30.0"
UID = 65532
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
    return cond


def load_all(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def objects(root):
    out = {}
    for path in sorted((root / "deploy/kubernetes").glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in load_all(path):
            out[(doc["kind"], doc["metadata"]["name"])] = (path.name, doc)
    return out


def validate_schemas(objs):
    for (kind, name), (file, doc) in objs.items():
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            failures.append(f"{file}: {kind}/{name}: {e.message} at {list(e.path)}")
    print(f"ok: {len(objs)} objects checked against the Kubernetes {KUBERNETES_VERSION} schemas (strict)")


def pod_of(cronjob):
    return cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def check_cronjob(objs, name, schedule, args, config_items, config_dir):
    file, cj = objs.get(("CronJob", name), (None, None))
    if not check(cj is not None, f"no CronJob {name}"):
        return None
    w = f"{file}: CronJob {name}"
    check(cj["apiVersion"] == "batch/v1", f"{w}: apiVersion {cj['apiVersion']}")
    spec = cj["spec"]
    check(spec.get("schedule") == schedule, f"{w}: schedule {spec.get('schedule')!r}, not {schedule!r}")
    check(spec.get("concurrencyPolicy") == "Forbid", f"{w}: concurrencyPolicy is not Forbid")
    pod = pod_of(cj)
    psc = pod.get("securityContext", {})
    check(psc.get("runAsNonRoot") is True, f"{w}: pod runAsNonRoot is not true")
    check(psc.get("runAsUser") == UID and psc.get("runAsGroup") == UID, f"{w}: pod does not run as {UID}:{UID}")
    check(psc.get("fsGroup") == UID, f"{w}: fsGroup is not {UID} (the volume would not be writable)")
    check(pod.get("automountServiceAccountToken") is False, f"{w}: the API token is mounted")
    check(pod.get("restartPolicy") in ("Never", "OnFailure"), f"{w}: restartPolicy")
    containers = pod["containers"]
    check(len(containers) == 1 and "initContainers" not in pod, f"{w}: expected one container")
    c = containers[0]
    csc = c.get("securityContext", {})
    check(csc.get("readOnlyRootFilesystem") is True, f"{w}: root file system is not read-only")
    check(csc.get("allowPrivilegeEscalation") is False, f"{w}: privilege escalation allowed")
    check(csc.get("capabilities", {}).get("drop") == ["ALL"], f"{w}: capabilities not all dropped")
    check(csc.get("runAsUser", UID) != 0 and csc.get("runAsNonRoot", True) is True, f"{w}: container overrides the user to root")
    check(c.get("image", "").startswith(f"cloud-accounting/{name}:"), f"{w}: image {c.get('image')}")
    check(c.get("args") == args, f"{w}: args {c.get('args')}, not {args}")

    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    mounts = c.get("volumeMounts", [])
    for m in mounts:
        check(m["name"] in volumes, f"{w}: mount {m['mountPath']} names no volume {m['name']}")
    for v in volumes:
        check(any(m["name"] == v for m in mounts), f"{w}: volume {v} is not mounted")
    by_path = {m["mountPath"]: m for m in mounts}

    # The shared claim, at /var/spool (caso-extract makes apel/ and caso/ in it).
    spool = by_path.get("/var/spool")
    if check(spool is not None, f"{w}: nothing mounted at /var/spool"):
        vol = volumes.get(spool["name"], {})
        claim = vol.get("persistentVolumeClaim", {}).get("claimName")
        check(("PersistentVolumeClaim", claim) in objs, f"{w}: /var/spool is not a PVC defined here ({claim})")
        check(not spool.get("readOnly", False), f"{w}: the spool is read-only")

    # Configuration from the ConfigMap, read-only.
    cfg = by_path.get(config_dir)
    if check(cfg is not None, f"{w}: nothing mounted at {config_dir}"):
        check(cfg.get("readOnly") is True, f"{w}: {config_dir} is not read-only")
        cm = volumes.get(cfg["name"], {}).get("configMap", {})
        check(("ConfigMap", cm.get("name")) in objs, f"{w}: {config_dir} is not the ConfigMap defined here")
        data = objs.get(("ConfigMap", cm.get("name")), (None, {"data": {}}))[1]["data"]
        items = {i["key"]: i["path"] for i in cm.get("items", [])}
        check(items == {k: k for k in config_items}, f"{w}: {config_dir} items {items}")
        for k in config_items:
            check(k in data, f"{w}: the ConfigMap has no {k}")
    print(f"ok: CronJob {name}: batch/v1, {schedule!r}, Forbid, uid {UID}, read-only root, "
          f"PVC at /var/spool, ConfigMap at {config_dir}")
    return pod, c, volumes, by_path


def secret_names(root):
    docs = load_all(root / "deploy/kubernetes/secrets.example.yaml")
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == "Secret"}, \
        {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}


def env_secret(c, var):
    for e in c.get("env", []):
        if e["name"] == var:
            return e.get("valueFrom", {}).get("secretKeyRef")
    return None


def check_kubernetes(root):
    objs = objects(root)
    validate_schemas(objs)
    secrets, example_cms = secret_names(root)

    pvcs = [k for k in objs if k[0] == "PersistentVolumeClaim"]
    check(len(pvcs) == 1, f"expected one PersistentVolumeClaim, got {pvcs}")

    r = check_cronjob(objs, "caso-extract", "14 * * * *", ["--config-file", "/etc/caso/caso.conf"],
                      ["caso.conf", "voms.json"], "/etc/caso")
    if r:
        _, c, _, _ = r
        ref = env_secret(c, "CASO_KEYSTONE_AUTH__PASSWORD")
        if check(ref is not None, "caso-extract: the Keystone password is not from a Secret"):
            check(ref["name"] in secrets and ref["key"] in secrets[ref["name"]]["stringData"],
                  f"caso-extract: Secret {ref} is not in secrets.example.yaml")
        print("ok: caso-extract: Keystone password from a Secret")

    r = check_cronjob(objs, "ssmsend", "30 */6 * * *", ["--config", "/etc/apel/sender.cfg"],
                      ["sender.cfg"], "/etc/apel")
    if r:
        _, c, volumes, by_path = r
        ref = env_secret(c, "SSM_MESSAGING__TOKEN")
        if check(ref is not None, "ssmsend: the AMS token is not from a Secret"):
            check(ref["name"] in secrets, f"ssmsend: Secret {ref['name']} is not in secrets.example.yaml")
        for path, key in (("/etc/grid-security/hostcert.pem", "tls.crt"), ("/etc/grid-security/hostkey.pem", "tls.key")):
            m = by_path.get(path)
            if not check(m is not None, f"ssmsend: nothing at {path}"):
                continue
            check(m.get("readOnly") is True, f"ssmsend: {path} is not read-only")
            sec = volumes[m["name"]].get("secret", {})
            check(sec.get("secretName") in secrets, f"ssmsend: {path} is not from a Secret in secrets.example.yaml")
            items = {i["path"]: i["key"] for i in sec.get("items", [])}
            check(items.get(m.get("subPath")) == key, f"ssmsend: {path} is not the Secret's {key}")
            check(sec.get("defaultMode", 0o644) & 0o007 == 0, f"ssmsend: the host key is readable by others")
        cas = by_path.get("/etc/grid-security/certificates")
        if check(cas is not None, "ssmsend: no CA directory at /etc/grid-security/certificates"):
            name = volumes[cas["name"]].get("configMap", {}).get("name")
            check(name in example_cms, f"ssmsend: CA ConfigMap {name} is not in secrets.example.yaml")
        print("ok: ssmsend: AMS token, host certificate and key from Secrets, CAs from a ConfigMap")

    kust = yaml.safe_load(open(root / "deploy/kubernetes/kustomization.yaml"))
    listed = set(kust["resources"])
    files = {p.name for p in (root / "deploy/kubernetes").glob("*.yaml")} - {"kustomization.yaml", "secrets.example.yaml"}
    check(listed == files, f"kustomization.yaml lists {sorted(listed)}, the directory has {sorted(files)}")
    print("ok: kustomization.yaml lists every manifest but the examples")


def check_compose(root):
    doc = yaml.safe_load(open(root / "docker-compose.yml"))
    services = doc.get("services", {})
    check(set(services) == {"caso-extract", "ssmsend"}, f"compose services {sorted(services)}")
    # Every mount is a host path (${VAR:-default}, the default the appliance's
    # own path): a migrated site's lastrun files and spool are used as they are.
    want = {
        "caso-extract": (["--interval", "1h"], {
            "/etc/caso/caso.conf": ("CASO_CONF", "ro"), "/etc/caso/voms.json": ("VOMS_JSON", "ro"),
            "/var/spool/caso": ("CASO_SPOOL", "rw"), "/var/spool/apel": ("APEL_SPOOL", "rw")}),
        "ssmsend": (["--interval", "6h", "--initial-delay", "15m"], {
            "/etc/apel/sender.cfg": ("SENDER_CFG", "ro"), "/etc/grid-security": ("GRID_SECURITY", "ro"),
            "/var/spool/apel": ("APEL_SPOOL", "rw")}),
    }
    images = {"caso-extract": "CASO_EXTRACT_IMAGE", "ssmsend": "SSMSEND_IMAGE"}
    for name, (interval, mounts) in want.items():
        s = services.get(name, {})
        w = f"docker-compose.yml: {name}"
        # Metrics on the compose network, never published by this file (a
        # site publishes it on the host's loopback in an override).
        port = METRICS_PORTS[name]
        cmd = s.get("command", [])
        check(metrics_flags(cmd) == f"0.0.0.0:{port}" and "--metrics-allow-remote" in cmd,
              f"{w}: command {cmd} does not serve metrics on 0.0.0.0:{port} with --metrics-allow-remote")
        check([str(p) for p in s.get("expose", [])] == [str(port)], f"{w}: expose {s.get('expose')}, expected [{port}]")
        check("ports" not in s, f"{w}: ports {s.get('ports')}: the metrics port is published by the site's override, on loopback")
        check(s.get("read_only") is True, f"{w}: read_only is not true")
        check(str(s.get("user")) == f"{UID}:{UID}", f"{w}: user {s.get('user')}")
        check(s.get("pull_policy") == "never", f"{w}: pull_policy {s.get('pull_policy')}, expected never")
        check("build" in s, f"{w}: no build section (docker-compose 1.x would pull a missing image)")
        image = f"${{{images[name]}:-cloud-accounting/{name}}}:${{TAG:-latest}}"
        check(s.get("image") == image, f"{w}: image {s.get('image')}, expected {image}")
        check(s.get("command", [])[-len(interval):] == interval,
              f"{w}: command {s.get('command')} does not end in {interval}")
        got = {}
        for v in s.get("volumes", []):
            check(v.startswith("${"), f"{w}: volume {v} is not a host path from a variable")
            src, rest = v.split("}:", 1)
            var, default = src[2:].split(":-", 1)
            parts = rest.split(":")
            target, mode = parts[0], parts[1] if len(parts) > 1 else "rw"
            check(default == target, f"{w}: host path {default} for {target} (the appliance's is the same path)")
            got[target] = (var, mode)
        check(got == mounts, f"{w}: mounts {got}, expected {mounts}")
    check(not doc.get("volumes"), f"compose named volumes {doc.get('volumes')}: the spools are the host's")
    print("ok: docker-compose.yml: both services read-only as 65532, never pulled, the host's spools "
          "and configuration (read-only), --interval 1h/6h, the sender 15 min after the extractor")


METRICS_PORTS = {"caso-extract": 9101, "ssmsend": 9102}
DAEMON_ARGS = {
    "caso-extract": ["--config-file", "/etc/caso/caso.conf"],
    "ssmsend": ["--config", "/etc/apel/sender.cfg"],
}
INTERVALS = {"caso-extract": ["--interval", "1h"], "ssmsend": ["--interval", "6h", "--initial-delay", "15m"]}


def metrics_flags(args):
    """The address after --metrics-listen, or None."""
    if "--metrics-listen" not in args:
        return None
    i = args.index("--metrics-listen")
    return args[i + 1] if i + 1 < len(args) else None


def check_daemons(root, objs):
    """deploy/kubernetes/daemons: each program as a one-replica Deployment with
    the CronJob's own pod (so the two never drift apart), serving /metrics on
    its port, annotated for Prometheus' pod discovery."""
    d = root / "deploy/kubernetes/daemons"
    deps = {}
    for path in sorted(d.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in load_all(path):
            deps[(doc["kind"], doc["metadata"]["name"])] = (f"daemons/{path.name}", doc)
    validate_schemas(deps)
    kust = yaml.safe_load(open(d / "kustomization.yaml"))
    files = {p.name for p in d.glob("*.yaml")} - {"kustomization.yaml"}
    check(set(kust.get("resources", [])) == files, f"daemons/kustomization.yaml lists {kust.get('resources')}, the directory has {sorted(files)}")
    for name, port in METRICS_PORTS.items():
        file, dep = deps.get(("Deployment", name), (None, None))
        if not check(dep is not None, f"daemons: no Deployment {name}"):
            continue
        w = f"{file}: Deployment {name}"
        spec = dep["spec"]
        check(spec.get("replicas") == 1, f"{w}: replicas {spec.get('replicas')}, expected 1")
        check(spec.get("strategy", {}).get("type") == "Recreate", f"{w}: strategy is not Recreate (a rolling update runs two at once)")
        tmpl = spec["template"]
        ann = tmpl["metadata"].get("annotations", {})
        check(ann == {"prometheus.io/scrape": "true", "prometheus.io/port": str(port), "prometheus.io/path": "/metrics"},
              f"{w}: annotations {ann}")
        pod = copy.deepcopy(tmpl["spec"])
        c = pod["containers"][0]
        args = c.pop("args", [])
        want_args = DAEMON_ARGS[name] + ["--metrics-listen", f"0.0.0.0:{port}", "--metrics-allow-remote"] + INTERVALS[name]
        check(args == want_args, f"{w}: args {args}, expected {want_args}")
        check(c.pop("ports", None) == [{"name": "metrics", "containerPort": port, "protocol": "TCP"}], f"{w}: no metrics port {port}")
        c.pop("readinessProbe", None)
        check(pod.pop("restartPolicy", None) == "Always", f"{w}: restartPolicy is not Always")
        _, cj = objs.get(("CronJob", name), (None, None))
        if cj is not None:
            cj_pod = copy.deepcopy(pod_of(cj))
            cj_pod.pop("restartPolicy", None)
            cj_pod["containers"][0].pop("args", None)
            check(pod == cj_pod, f"{w}: its pod differs from CronJob {name}'s (beyond args, port, probe, restart policy)")
    print("ok: daemons/: one-replica Recreate Deployments with the CronJobs' pods, /metrics on 9101/9102, annotated")


def check_cron(root):
    lines = [l for l in (root / "deploy/cron/cloud-accounting").read_text().splitlines()
             if l.strip() and not l.startswith("#") and "=" not in l.split()[0]]
    want = [
        "14 * * * * root /usr/local/bin/caso-extract.sh >> /var/log/caso.log 2>&1",
        "30 */6 * * * root /usr/local/bin/ssm-send.sh >> /var/log/ssm.log 2>&1",
    ]
    check(lines == want, f"deploy/cron/cloud-accounting entries {lines}, expected {want}")
    check((root / "deploy/cron/cloud-accounting").read_text().endswith("\n"), "the cron file must end in a newline")
    print("ok: deploy/cron/cloud-accounting keeps the appliance's schedule")


def main():
    root = pathlib.Path(sys.argv[1])
    mode = sys.argv[2]
    if mode == "configmap":
        _, cm = objects(root)[("ConfigMap", "cloud-accounting-config")]
        json.dump(cm["data"], sys.stdout)
        return
    check_kubernetes(root)
    check_daemons(root, objects(root))
    check_compose(root)
    check_cron(root)
    if failures:
        for f in failures:
            print(f"FAIL: {f}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
