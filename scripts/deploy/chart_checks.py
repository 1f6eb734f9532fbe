"""Structural checks over one rendering of the chart (a list of Kubernetes objects) and the
comparison of the rendered connector config with the values it came from.

Every check returns problem strings naming the object and field; an empty list means the
rendering is consistent: selectors select the pod, probes and the Service reach the port the
connector listens on, the config file is mounted where `--config` points, every secret file the
config names exists in the Secret and is readable by the pod's user, the grace period outlasts
the connector's shutdown grace, checksums track the rendered files, the Helm test runs
`check-config` on the same files.
"""
import hashlib
import json
import os
import re
import tomllib

SECRET_DIR = "/etc/tanma/secrets"
STATE_DIR = "/var/lib/tanma"
GRACE_MARGIN_SECS = 10
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
# The connector's default when the config leaves ops.shutdown_grace_secs out (src/config/mod.rs).
DEFAULT_SHUTDOWN_GRACE_SECS = 30


def deep_merge(base, override):
    """Helm's coalescing of a values file over the defaults: maps merge, null deletes a key,
    everything else (lists included) replaces."""
    if not isinstance(base, dict) or not isinstance(override, dict):
        return override
    out = dict(base)
    for k, v in override.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def parse_config(name, text):
    """Parses a rendered config file the way the connector picks its format: by extension."""
    if name.endswith(".json"):
        return json.loads(text)
    return tomllib.loads(text)


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


class Rendering:
    """One `helm template` output, indexed by kind."""

    def __init__(self, docs, values, namespace):
        self.docs = docs
        self.values = values
        self.namespace = namespace
        self.by_kind = {}
        for d in docs:
            self.by_kind.setdefault(d["kind"], []).append(d)

    def one(self, kind, problems):
        found = self.by_kind.get(kind, [])
        if len(found) != 1:
            problems.append(f"expected one {kind}, got {len(found)}")
            return None
        return found[0]

    def configmap(self, name):
        return next((c for c in self.by_kind.get("ConfigMap", []) if c["metadata"]["name"] == name), None)

    def secret(self, name):
        return next((s for s in self.by_kind.get("Secret", []) if s["metadata"]["name"] == name), None)


def check_rendering(r):
    """All structural checks of one rendering. Returns problems."""
    p = []
    dep = r.one("Deployment", p)
    if dep is None:
        return p
    spec = dep["spec"]
    pod = spec["template"]["spec"]
    pod_labels = spec["template"]["metadata"].get("labels", {})
    containers = pod.get("containers", [])
    if len(containers) != 1:
        return p + [f"Deployment: expected one container, got {len(containers)}"]
    c = containers[0]
    p += check_labels(r)
    p += check_deployment_basics(spec, pod, c)
    p += check_selectors(r, spec, pod_labels)
    config_name, config = mounted_config(r, pod, c, "Deployment", p)
    if config is not None:
        p += check_ports_and_probes(r, c, config)
        p += check_secret_files(r, pod, c, config, "Deployment")
        p += check_grace(pod, c, config)
        p += check_checksums(r, dep, config_name)
    p += check_helm_test(r, pod, c)
    p += check_dashboard(r)
    p += check_no_secret_values(r)
    return p


def check_labels(r):
    p = []
    for d in r.docs:
        meta = d.get("metadata", {})
        labels = dict(meta.get("labels") or {})
        if d["kind"] == "Deployment":
            labels.update(d["spec"]["template"]["metadata"].get("labels") or {})
        for k, v in labels.items():
            if not isinstance(v, str) or not LABEL_VALUE.match(v) or len(v) > 63:
                p.append(f"{d['kind']} {meta.get('name')}: label {k}={v!r} is not a valid label value")
    return p


def check_deployment_basics(spec, pod, c):
    p = []
    if spec.get("replicas") != 1:
        p.append(f"Deployment: replicas must be 1, got {spec.get('replicas')}")
    if spec.get("strategy", {}).get("type") != "Recreate":
        p.append("Deployment: strategy must be Recreate (one writer per transactional.id)")
    if not pod.get("securityContext", {}).get("runAsNonRoot"):
        p.append("Deployment: pod must set runAsNonRoot")
    sc = c.get("securityContext", {})
    if not sc.get("readOnlyRootFilesystem"):
        p.append("Deployment: container must have a read-only root filesystem")
    if "ALL" not in (sc.get("capabilities", {}).get("drop") or []):
        p.append("Deployment: container must drop ALL capabilities")
    if sc.get("allowPrivilegeEscalation") is not False:
        p.append("Deployment: container must set allowPrivilegeEscalation: false")
    image = c.get("image", "")
    name, _, tag = image.rpartition(":")
    if not name or "/" in tag or not tag:
        p.append(f"Deployment: image {image!r} has no tag")
    elif tag == "latest":
        p.append(f"Deployment: image {image!r} uses the tag latest")
    mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
    vols = {v["name"]: v for v in pod.get("volumes", [])}
    if "emptyDir" not in vols.get(mounts.get(STATE_DIR, ""), {}):
        p.append(f"Deployment: the state dir {STATE_DIR} must be an emptyDir")
    for m in c.get("volumeMounts", []):
        if m["name"] not in vols:
            p.append(f"Deployment: volumeMount {m['mountPath']} names volume {m['name']!r}, which the pod does not have")
    return p


def check_selectors(r, spec, pod_labels):
    p = []
    match = spec.get("selector", {}).get("matchLabels", {})
    if not selects(match, pod_labels):
        p.append(f"Deployment: selector {match} does not select its own pod template labels {pod_labels}")
    services = r.by_kind.get("Service", [])
    if not services:
        p.append("no Service rendered")
    for svc in services:
        sel = svc["spec"].get("selector", {})
        if not selects(sel, pod_labels):
            p.append(f"Service {svc['metadata']['name']}: selector {sel} selects no pod (pod labels {pod_labels})")
    for pdb in r.by_kind.get("PodDisruptionBudget", []):
        sel = pdb["spec"].get("selector", {}).get("matchLabels", {})
        if not selects(sel, pod_labels):
            p.append(f"PodDisruptionBudget {pdb['metadata']['name']}: selector {sel} selects no pod")
    for sm in r.by_kind.get("ServiceMonitor", []):
        sel = sm["spec"].get("selector", {}).get("matchLabels", {})
        matched = [s for s in services if selects(sel, s["metadata"].get("labels", {}))]
        if not matched:
            p.append(f"ServiceMonitor {sm['metadata']['name']}: selector {sel} matches no Service")
            continue
        ports = {pt.get("name") for s in matched for pt in s["spec"]["ports"]}
        for ep in sm["spec"].get("endpoints", []):
            if ep.get("port") not in ports:
                p.append(f"ServiceMonitor {sm['metadata']['name']}: endpoint port {ep.get('port')!r} is not a port of the Service ({sorted(ports)})")
            if ep.get("path") != "/metrics":
                p.append(f"ServiceMonitor {sm['metadata']['name']}: endpoint path {ep.get('path')!r} is not /metrics")
        ns_sel = sm["spec"].get("namespaceSelector")
        if ns_sel and not ns_sel.get("any") and r.namespace not in (ns_sel.get("matchNames") or []):
            p.append(f"ServiceMonitor {sm['metadata']['name']}: namespaceSelector {ns_sel} excludes the release namespace")
    return p


def mounted_config(r, pod, c, who, p):
    """Follows `--config PATH` to the ConfigMap key mounted there. Returns (file name, parsed)."""
    args = c.get("args", [])
    if "--config" not in args or args.index("--config") + 1 >= len(args):
        p.append(f"{who}: container args {args} do not pass --config")
        return None, None
    path = args[args.index("--config") + 1]
    vols = {v["name"]: v for v in pod.get("volumes", [])}
    for m in c.get("volumeMounts", []):
        vol = vols.get(m["name"], {})
        cm_name = vol.get("configMap", {}).get("name")
        if not cm_name:
            continue
        if m["mountPath"] == path and m.get("subPath"):
            key = m["subPath"]
        elif path.startswith(m["mountPath"].rstrip("/") + "/") and not m.get("subPath"):
            key = path[len(m["mountPath"].rstrip("/")) + 1:]
        else:
            continue
        items = vol["configMap"].get("items")
        if items:
            key = next((i["key"] for i in items if i["path"] == key), None)
        cm = r.configmap(cm_name)
        if cm is None:
            p.append(f"{who}: --config {path} comes from ConfigMap {cm_name!r}, which is not rendered")
            return None, None
        if key not in cm.get("data", {}):
            p.append(f"{who}: --config {path} is key {key!r} of ConfigMap {cm_name}, which has keys {sorted(cm.get('data', {}))}")
            return None, None
        if os.path.splitext(path)[1] != os.path.splitext(key)[1]:
            p.append(f"{who}: --config {path} and the ConfigMap key {key} differ in extension (format)")
        try:
            return key, parse_config(path, cm["data"][key])
        except ValueError as e:
            p.append(f"{who}: {path} does not parse as {os.path.splitext(path)[1]}: {e}")
            return None, None
    p.append(f"{who}: --config {path}: no ConfigMap is mounted at that path")
    return None, None


def resolve_port(c, port):
    for cp in c.get("ports", []):
        if port == cp.get("name") or port == cp.get("containerPort"):
            return cp.get("containerPort")
    return None


def check_ports_and_probes(r, c, config):
    p = []
    listen = config.get("ops", {}).get("listen", "")
    listen_port = int(listen.rsplit(":", 1)[1]) if ":" in listen else None
    ops_port = resolve_port(c, "ops")
    if ops_port is None:
        p.append("Deployment: the container has no port named ops")
    elif ops_port != listen_port:
        p.append(f"Deployment: containerPort {ops_port} (ops) differs from the connector's ops.listen {listen!r}")
    want = {"startupProbe": "/health", "livenessProbe": "/health", "readinessProbe": "/ready"}
    for probe, path in want.items():
        spec = c.get(probe)
        if not spec:
            p.append(f"Deployment: {probe} missing (without a startupProbe, liveness kills a pod still restoring state)")
            continue
        get = spec.get("httpGet", {})
        if get.get("path") != path:
            p.append(f"Deployment: {probe} path {get.get('path')!r}, want {path}")
        port = resolve_port(c, get.get("port"))
        if port is None or port != listen_port:
            p.append(f"Deployment: {probe} port {get.get('port')!r} is not the port the connector listens on ({listen!r})")
    for svc in r.by_kind.get("Service", []):
        for sp in svc["spec"]["ports"]:
            target = resolve_port(c, sp.get("targetPort", sp.get("port")))
            if target is None or target != listen_port:
                p.append(f"Service {svc['metadata']['name']}: targetPort {sp.get('targetPort')!r} does not reach ops.listen {listen!r}")
    return p


def secret_file_keys(config):
    files = [("api", "app_key_file"), ("kafka", "sasl_password_file"), ("schema_registry", "password_file")]
    return {f"{s}.{k}": config.get(s, {}).get(k) for s, k in files if config.get(s, {}).get(k)}


def readable(mode, uid, fs_group):
    if uid == 0:
        return bool(mode & 0o444)
    return bool(mode & 0o004) or (fs_group is not None and bool(mode & 0o040))


def check_secret_files(r, pod, c, config, who):
    p = []
    vols = {v["name"]: v for v in pod.get("volumes", [])}
    secret_mounts = [(m, vols.get(m["name"], {}).get("secret")) for m in c.get("volumeMounts", [])]
    secret_mounts = [(m, s) for m, s in secret_mounts if s]
    psc = pod.get("securityContext", {})
    uid = c.get("securityContext", {}).get("runAsUser", psc.get("runAsUser"))
    fs_group = psc.get("fsGroup")
    keys = secret_file_keys(config)
    if "api.app_key_file" not in keys:
        p.append(f"{who}: the config names no api.app_key_file")
    for cfg_key, path in keys.items():
        mount = next(((m, s) for m, s in secret_mounts if path.startswith(m["mountPath"].rstrip("/") + "/")), None)
        if mount is None:
            p.append(f"{who}: {cfg_key} = {path} is not under a mounted Secret")
            continue
        m, sec = mount
        key = path[len(m["mountPath"].rstrip("/")) + 1:]
        mode = sec.get("defaultMode", 0o644)
        if sec.get("items"):
            item = next((i for i in sec["items"] if i["path"] == key), None)
            if item is None:
                p.append(f"{who}: {cfg_key} names {key!r}, which the Secret volume's items do not project")
                continue
            key, mode = item["key"], item.get("mode", mode)
        if not readable(mode, uid, fs_group):
            p.append(f"{who}: secret file {path} (mode {mode:04o}) is not readable by the pod's user {uid} (fsGroup {fs_group})")
        name = sec.get("secretName")
        existing = r.values.get("secrets", {}).get("existingSecret")
        if existing:
            if name != existing:
                p.append(f"{who}: mounts Secret {name!r}, but secrets.existingSecret is {existing!r}")
            continue
        secret = r.secret(name)
        if secret is None:
            p.append(f"{who}: mounts Secret {name!r}, which is not rendered")
        elif key not in (secret.get("data") or {}) and key not in (secret.get("stringData") or {}):
            have = sorted((secret.get("data") or {}).keys())
            p.append(f"{who}: {cfg_key} reads secret key {key!r}, which Secret {name} does not hold (keys {have})")
    return p


def check_grace(pod, c, config):
    shutdown = config.get("ops", {}).get("shutdown_grace_secs", DEFAULT_SHUTDOWN_GRACE_SECS)
    for e in c.get("env", []) or []:
        if e.get("name") == "TANMA_OPS__SHUTDOWN_GRACE_SECS" and "value" in e:
            shutdown = int(e["value"])
    grace = pod.get("terminationGracePeriodSeconds", 30)
    if grace < shutdown + GRACE_MARGIN_SECS:
        return [f"Deployment: terminationGracePeriodSeconds {grace} < ops.shutdown_grace_secs {shutdown} + {GRACE_MARGIN_SECS}: "
                "Kubernetes would SIGKILL the connector while it finishes its transaction"]
    return []


def check_checksums(r, dep, config_name):
    p = []
    ann = dep["spec"]["template"]["metadata"].get("annotations", {}) or {}
    cm = r.configmap(dep["metadata"]["name"])
    # The annotation hashes the rendered file; YAML block chomping may drop its final newline.
    data = cm["data"][config_name] if cm else ""
    want = {hashlib.sha256(t.encode()).hexdigest() for t in (data, data + "\n")}
    got = ann.get("checksum/config")
    if got is None:
        p.append("Deployment: pod annotation checksum/config missing (a config change would not roll the pod)")
    elif got not in want:
        p.append(f"Deployment: checksum/config {got} is not the sha256 of the rendered {config_name}")
    if r.by_kind.get("Secret") and not ann.get("checksum/secret"):
        p.append("Deployment: pod annotation checksum/secret missing (a changed Secret would not roll the pod)")
    return p


def check_helm_test(r, dep_pod, dep_c):
    tests = [d for d in r.by_kind.get("Pod", []) if d["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"]
    if not r.values.get("helmTest", {}).get("enabled", True):
        return []
    if len(tests) != 1:
        return [f"helm test: expected one Pod with helm.sh/hook: test, got {len(tests)}"]
    t = tests[0]
    p = []
    pod = t["spec"]
    c = pod["containers"][0]
    args = c.get("args", [])
    if not args or args[0] != "check-config":
        p.append(f"helm test: runs {args}, not check-config")
    if pod.get("restartPolicy") != "Never":
        p.append("helm test: restartPolicy must be Never")
    if c.get("image") != dep_c.get("image"):
        p.append(f"helm test: image {c.get('image')} differs from the connector's {dep_c.get('image')}")
    dep_args = dep_c.get("args", [])
    if "--config" in args and "--config" in dep_args:
        if args[args.index("--config") + 1] != dep_args[dep_args.index("--config") + 1]:
            p.append("helm test: checks another --config path than the Deployment runs with")
    problems = []
    name, config = mounted_config(r, pod, c, "helm test", problems)
    p += problems
    if config is not None:
        p += check_secret_files(r, pod, c, config, "helm test")
        dep_vols = {v["name"]: v for v in dep_pod.get("volumes", [])}
        for v in pod.get("volumes", []):
            if ("configMap" in v or "secret" in v) and v["name"] in dep_vols and v != dep_vols[v["name"]]:
                p.append(f"helm test: volume {v['name']} differs from the Deployment's")
    return p


def check_dashboard(r):
    p = []
    if not r.values.get("dashboards", {}).get("enabled"):
        return p
    cms = [c for c in r.by_kind.get("ConfigMap", []) if any(k.endswith(".json") and "dashboard" in c["metadata"]["name"] for k in c.get("data", {}))]
    if len(cms) != 1:
        return [f"dashboards.enabled but {len(cms)} dashboard ConfigMaps rendered"]
    cm = cms[0]
    for k, v in (r.values.get("dashboards", {}).get("labels") or {}).items():
        if cm["metadata"].get("labels", {}).get(k) != v:
            p.append(f"dashboard ConfigMap lacks the label {k}: {v!r} the Grafana sidecar selects on")
    for key, text in cm["data"].items():
        try:
            dash = json.loads(text)
        except ValueError as e:
            p.append(f"dashboard {key} is not JSON: {e}")
            continue
        uid = dash.get("uid", "")
        if not uid or len(uid) > 40 or uid == "tanma-connector":
            p.append(f"dashboard uid {uid!r} is not derived from the release (or longer than 40 characters)")
    return p


def check_no_secret_values(r):
    p = []
    secrets = [v for k, v in (r.values.get("secrets") or {}).items() if k != "keys" and k != "existingSecret" and v]
    for cm in r.by_kind.get("ConfigMap", []):
        blob = json.dumps(cm.get("data", {}), ensure_ascii=False)
        if any(s in blob for s in secrets):
            p.append(f"a secret value leaked into ConfigMap {cm['metadata']['name']}")
    return p


def compare_config(values_config, rendered, path="config"):
    """Every value under .Values.config reaches the rendered config unchanged: strings byte for
    byte, integers as integers (not 2.592e+06, not 3600.0), floats equal, lists element-wise."""
    p = []
    if isinstance(values_config, dict):
        if not isinstance(rendered, dict):
            return [f"{path}: rendered as {rendered!r}, values have a map"]
        for k, v in values_config.items():
            if v is None:
                if rendered.get(k) is not None:
                    p.append(f"{path}.{k}: null in the values, rendered {rendered[k]!r}")
            elif k not in rendered:
                p.append(f"{path}.{k}: missing from the rendered config")
            else:
                p += compare_config(v, rendered[k], f"{path}.{k}")
        return p
    if isinstance(values_config, list):
        if not isinstance(rendered, list) or len(rendered) != len(values_config):
            return [f"{path}: rendered {rendered!r}, values {values_config!r}"]
        for i, (v, got) in enumerate(zip(values_config, rendered)):
            p += compare_config(v, got, f"{path}[{i}]")
        return p
    same_type = (type(values_config) is type(rendered)) or (isinstance(values_config, float) and isinstance(rendered, int) and not isinstance(rendered, bool))
    if not same_type or values_config != rendered:
        p.append(f"{path}: rendered {rendered!r} ({type(rendered).__name__}), values {values_config!r} ({type(values_config).__name__})")
    return p


def check_chart_owned_keys(values, rendered):
    p = []
    port = values.get("service", {}).get("port", 9464)
    if rendered.get("state", {}).get("dir") != STATE_DIR:
        p.append(f"config.state.dir: rendered {rendered.get('state', {}).get('dir')!r}, the chart mounts the state at {STATE_DIR}")
    if rendered.get("ops", {}).get("listen") != f"0.0.0.0:{port}":
        p.append(f"config.ops.listen: rendered {rendered.get('ops', {}).get('listen')!r}, want 0.0.0.0:{port}")
    for key, path in secret_file_keys(rendered).items():
        if not path.startswith(SECRET_DIR + "/"):
            p.append(f"config.{key}: {path} is not under {SECRET_DIR}")
    return p
