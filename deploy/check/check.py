#!/usr/bin/env python3
"""Offline checks of the Helm chart and the plain manifests (no cluster runs here).

1. `helm lint --strict` of the chart, with Helm's own Go code (helm-python-sdk binds the Helm SDK).
2. Renders the chart with its defaults, with every values file in cases/, and with
   plain-values.yaml, exactly as `helm template` would.
3. Validates every rendered object, and every file in deploy/kubernetes/, against the Kubernetes
   OpenAPI schemas of the oldest and the newest supported version in strict mode (unknown fields
   are errors), offline, with kubernetes-validate.
4. Checks what a schema cannot: references between objects (Secrets, ServiceAccount, Role,
   selectors), the settings the control plane relies on (replicas, downward API, probes,
   non-root), and that invalid values are refused with a message.
5. Checks that deploy/kubernetes/ is what the chart renders from plain-values.yaml (less the two
   Helm bookkeeping labels); `--write` regenerates it.
6. Checks the Grafana dashboard: valid JSON in a ConfigMap with the sidecar's label, and every
   metric its queries read is one the control plane documents in crates/server/src/metrics.rs.

Exits non-zero with every problem listed.
"""

import argparse
import json
import pathlib
import re
import sys

import helm_python as helm
import kubernetes_validate
import yaml

DEPLOY = pathlib.Path(__file__).resolve().parent.parent
CHART = DEPLOY / "helm" / "streamspace"
PLAIN_DIR = DEPLOY / "kubernetes"
CHECK_DIR = DEPLOY / "check"
RELEASE = "streamspace"
NAMESPACE = "streamspace"
# The chart's kubeVersion floor, and the newest schemas kubernetes-validate ships.
KUBE_VERSIONS = ["1.30.0", kubernetes_validate.utils.latest_version()]
HAND_WRITTEN = {"00-namespace.yaml"}
HELM_LABEL = re.compile(r"^\s*(helm\.sh/chart|app\.kubernetes\.io/managed-by): .*\n", re.M)
GENERATED_HEADER = (
    "# Generated from deploy/helm/streamspace with deploy/check/plain-values.yaml by\n"
    "# `deploy/check/run --write`: edit the chart, then regenerate.\n"
)

# Values that must be refused, and a part of the message that says why.
REFUSED = [
    ({"postgresql": {"bundled": False}}, "postgresql.external.url is required"),
    ({"redis": {"bundled": False}}, "redis.url is required"),
    ({"agent": {"enabled": True}}, "agent.key"),
    ({"agent": {"enabled": True, "key": "k", "runtime": "process"}}, "agent.replicas above 1"),
    ({"postgresql": {"password": "p@ss/word"}}, "only letters and digits"),
    ({"controlPlane": {"replicas": 4, "databasePoolSize": 30}}, "lower databasePoolSize"),
    ({"controlPlane": {"databasePoolSize": 0}}, "/controlPlane/databasePoolSize"),
    ({"ingress": {"enabled": True, "tls": {"enabled": True}}}, "ingress.tls.secretName"),
    # values.schema.json: misspelled keys and impossible values.
    ({"controlPlane": {"replica": 3}}, "additional properties 'replica' not allowed"),
    ({"agent": {"runtime": "podman"}}, "value must be one of"),
    ({"redis": {"bundled": False, "url": "localhost:6379"}}, "/redis/url"),
]


class Problems:
    def __init__(self):
        self.items = []

    def add(self, where, message):
        self.items.append(f"{where}: {message}")

    def check(self, ok, where, message):
        if not ok:
            self.add(where, message)


def render(values, release=RELEASE):
    """Renders the chart; returns {template path: text} without NOTES.txt and empty outputs."""
    with helm.Chart.load(str(CHART)) as chart:
        out = chart.render(values, name=release, namespace=NAMESPACE, is_install=True)
    return {k: v for k, v in out.items() if not k.endswith("NOTES.txt") and v.strip()}


def parse(text, where, problems):
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as e:
        problems.add(where, f"not valid YAML: {e}")
        return []
    for d in docs:
        if not isinstance(d, dict) or "kind" not in d or "apiVersion" not in d:
            problems.add(where, "a document without kind/apiVersion")
    return [d for d in docs if isinstance(d, dict) and "kind" in d]


def schema_check(objects, where, problems):
    for obj in objects:
        name = f"{obj['kind']}/{obj.get('metadata', {}).get('name')}"
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                path = ".".join(str(p) for p in e.path)
                problems.add(f"{where} {name} (k8s {version})", f"{path}: {e.message}")
            except Exception as e:  # unknown kind, unsupported version, broken schema
                message = getattr(e, "message", None) or repr(e)
                problems.add(f"{where} {name} (k8s {version})", f"cannot validate: {message}")


def pod_specs(objects):
    for obj in objects:
        if obj["kind"] in ("Deployment", "StatefulSet"):
            yield obj, obj["spec"]["template"]


def env_of(container):
    return {e["name"]: e for e in container.get("env", [])}


def references(objects, external_secrets, session_ns, where, problems):
    """Every name an object points at exists in the render (or is an operator's Secret)."""
    by_kind = {}
    namespaces = {NAMESPACE, session_ns}
    for obj in objects:
        by_kind.setdefault(obj["kind"], set()).add(obj["metadata"]["name"])
        problems.check(
            obj["kind"] == "Namespace" or obj["metadata"].get("namespace") in namespaces,
            where, f"{obj['kind']}/{obj['metadata']['name']} is in neither namespace "
                   f"{NAMESPACE} nor the sessions' {session_ns}")
    secrets = by_kind.get("Secret", set()) | set(external_secrets)
    pod_labels = []
    for owner, template in pod_specs(objects):
        oname = f"{owner['kind']}/{owner['metadata']['name']}"
        labels = template["metadata"].get("labels", {})
        pod_labels.append(labels)
        selector = owner["spec"]["selector"]["matchLabels"]
        problems.check(selector.items() <= labels.items(), where,
                       f"{oname}: selector does not match its pod labels")
        spec = template["spec"]
        sa = spec.get("serviceAccountName")
        problems.check(sa is None or sa in by_kind.get("ServiceAccount", set()), where,
                       f"{oname}: ServiceAccount {sa} is not rendered")
        security(oname, spec, where, problems)
        for c in spec["containers"]:
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref and not ref.get("optional"):
                    problems.check(ref["name"] in secrets, where,
                                   f"{oname}: env {e['name']} needs Secret {ref['name']}")
    for obj in objects:
        oname = f"{obj['kind']}/{obj['metadata']['name']}"
        if obj["kind"] == "Service":
            sel = obj["spec"].get("selector", {})
            problems.check(any(sel.items() <= l.items() for l in pod_labels), where,
                           f"{oname}: selects no pod")
        if obj["kind"] == "PodDisruptionBudget":
            sel = obj["spec"]["selector"]["matchLabels"]
            problems.check(any(sel.items() <= l.items() for l in pod_labels), where,
                           f"{oname}: selects no pod")
        if obj["kind"] == "NetworkPolicy":
            sels = [obj["spec"]["podSelector"]["matchLabels"]] + [
                peer["podSelector"]["matchLabels"]
                for rule in obj["spec"]["ingress"] for peer in rule["from"]]
            for sel in sels:
                # Session pods are the agent's to create, not the chart's.
                if sel.get("app.kubernetes.io/component") == "session":
                    continue
                problems.check(any(sel.items() <= l.items() for l in pod_labels), where,
                               f"{oname}: a selector matches no pod")
        if obj["kind"] == "RoleBinding":
            problems.check(obj["roleRef"]["name"] in by_kind.get("Role", set()), where,
                           f"{oname}: Role {obj['roleRef']['name']} is not rendered")
            for s in obj["subjects"]:
                problems.check(s["name"] in by_kind.get("ServiceAccount", set()), where,
                               f"{oname}: ServiceAccount {s['name']} is not rendered")
        if obj["kind"] == "Ingress":
            for rule in obj["spec"]["rules"]:
                for p in rule["http"]["paths"]:
                    svc = p["backend"]["service"]["name"]
                    problems.check(svc in by_kind.get("Service", set()), where,
                                   f"{oname}: backend Service {svc} is not rendered")


def security(oname, spec, where, problems):
    """What the 'restricted' Pod Security Standard asks of every pod in the chart."""
    psc = spec.get("securityContext", {})
    problems.check(psc.get("runAsNonRoot") is True, where, f"{oname}: runAsNonRoot is not set")
    problems.check(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", where,
                   f"{oname}: no RuntimeDefault seccomp profile")
    for c in spec["containers"]:
        csc = c.get("securityContext", {})
        problems.check(csc.get("allowPrivilegeEscalation") is False, where,
                       f"{oname}/{c['name']}: allowPrivilegeEscalation is not false")
        problems.check(csc.get("capabilities", {}).get("drop") == ["ALL"], where,
                       f"{oname}/{c['name']}: capabilities are not dropped")
        problems.check("requests" in c.get("resources", {}), where,
                       f"{oname}/{c['name']}: no resource requests")


def find(objects, kind, component):
    """The object of a kind for one component (server, agent, ...), whatever the release name."""
    for obj in objects:
        labels = obj["metadata"].get("labels", {})
        if obj["kind"] == kind and labels.get("app.kubernetes.io/component") == component:
            return obj
    return None


def control_plane(objects, min_replicas, where, problems):
    """What the server needs from its Deployment to run as several replicas."""
    dep = find(objects, "Deployment", "server")
    if dep is None:
        problems.add(where, "no server Deployment")
        return
    problems.check(dep["spec"]["replicas"] >= min_replicas, where,
                   f"server replicas {dep['spec']['replicas']} < {min_replicas}")
    c = dep["spec"]["template"]["spec"]["containers"][0]
    env = env_of(c)
    field = lambda n: env.get(n, {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
    problems.check(field("POD_NAME") == "metadata.name", where, "POD_NAME not from metadata.name")
    problems.check(field("POD_IP") == "status.podIP", where, "POD_IP not from status.podIP")
    problems.check("$(POD_IP)" in env.get("STREAMSPACE_INTERNAL_ADDRESS", {}).get("value", ""),
                   where, "the advertised address is not the pod IP")
    for name in ("DATABASE_URL", "REDIS_URL", "STREAMSPACE_ADMIN_TOKEN",
                 "STREAMSPACE_DATABASE_POOL_SIZE"):
        problems.check(name in env, where, f"server env has no {name}")
    for name in ("STREAMSPACE_ADMIN_TOKEN",):
        problems.check("value" not in env.get(name, {}), where, f"{name} is not from a Secret")
    problems.check(c["readinessProbe"]["httpGet"]["path"] == "/readyz", where,
                   "readiness probe is not /readyz")
    problems.check(c["livenessProbe"]["httpGet"]["path"] == "/healthz", where,
                   "liveness probe is not /healthz")
    problems.check(c["args"] == ["server"], where, "the server container does not run `server`")


def secret_files(objects, where, problems):
    """Every file the server is told to read (a *_FILE or STREAMSPACE_CA_CERT variable) is
    mounted read-only from a Secret volume that has it."""
    dep = find(objects, "Deployment", "server")
    if dep is None:
        return
    spec = dep["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    c = spec["containers"][0]
    for name, e in env_of(c).items():
        if not (name.endswith("_FILE") or name == "STREAMSPACE_CA_CERT") or "value" not in e:
            continue
        path = pathlib.PurePosixPath(e["value"])
        mounts = [m for m in c.get("volumeMounts", [])
                  if pathlib.PurePosixPath(m["mountPath"]) == path.parent]
        secret = (volumes.get(mounts[0]["name"], {}).get("secret") if mounts else None) or {}
        items = {i["path"] for i in secret.get("items", [])}
        # A Secret volume without items projects every key of the Secret.
        problems.check(bool(mounts) and mounts[0].get("readOnly") and bool(secret)
                       and (not items or path.name in items),
                       where, f"server env {name}={path} is not a file of a read-only Secret mount")


def agent(objects, session_ns, where, problems):
    """The agent's Deployment, and the RBAC the kubernetes runtime needs: session objects in
    the sessions' namespace only, its Lease in its own."""
    dep = find(objects, "Deployment", "agent")
    if dep is None:
        problems.add(where, "no agent Deployment")
        return
    c = dep["spec"]["template"]["spec"]["containers"][0]
    env = env_of(c)
    problems.check(c["args"] == ["agent"], where, "the agent container does not run `agent`")
    for name in ("STREAMSPACE_AGENT_SERVERS", "STREAMSPACE_AGENT_ID", "STREAMSPACE_AGENT_KEY",
                 "STREAMSPACE_RUNTIME", "POD_NAME", "POD_NAMESPACE"):
        problems.check(name in env, where, f"agent env has no {name}")
    problems.check("value" not in env.get("STREAMSPACE_AGENT_KEY", {}), where,
                   "the agent key is not from a Secret")
    roles = [o for o in objects if o["kind"] == "Role"
             and o["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "agent"]
    if not roles:
        problems.add(where, "no agent Role")
        return
    granted = {(o["metadata"]["namespace"], g, r, v) for o in roles for rule in o["rules"]
               for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
    needed = [(session_ns, "", "pods"), (session_ns, "", "services"),
              (session_ns, "", "persistentvolumeclaims"), (session_ns, "apps", "deployments"),
              (NAMESPACE, "coordination.k8s.io", "leases")]
    for ns, group, resource in needed:
        for verb in ("get", "list", "watch", "create", "update", "patch", "delete"):
            problems.check((ns, group, resource, verb) in granted, where,
                           f"no Role grants {verb} on {group or 'core'}/{resource} in {ns}")
    if session_ns != NAMESPACE:
        extra = {(g, r) for ns, g, r, _ in granted if ns == NAMESPACE} & {
            (g, r) for _, g, r in needed[:4]}
        problems.check(not extra, where,
                       f"the agent may still touch session objects in {NAMESPACE}: {extra}")
        problems.check(env.get("STREAMSPACE_SESSION_NAMESPACE", {}).get("value") == session_ns,
                       where, "the agent is not told the sessions' namespace")


def transport(objects, tls, where, problems):
    """With a certificate the replicas serve TLS (probes over HTTPS) and the agent dials https
    trusting the CA; without one the agent is told plain HTTP to the Service is intended."""
    dep = find(objects, "Deployment", "server")
    if dep is None:
        return
    c = dep["spec"]["template"]["spec"]["containers"][0]
    env = env_of(c)
    for name in ("STREAMSPACE_TLS_CERT", "STREAMSPACE_TLS_KEY", "STREAMSPACE_INTERNAL_TLS_NAME"):
        problems.check((name in env) == tls, where, f"server env {name}: expected TLS={tls}")
    scheme = "HTTPS" if tls else "HTTP"
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        problems.check(c[probe]["httpGet"].get("scheme") == scheme, where,
                       f"{probe} is not {scheme}")
    agent_dep = find(objects, "Deployment", "agent")
    if agent_dep is None:
        return
    a_env = env_of(agent_dep["spec"]["template"]["spec"]["containers"][0])
    url = a_env.get("STREAMSPACE_AGENT_SERVERS", {}).get("value", "")
    if tls:
        problems.check(url.startswith("https://") or "STREAMSPACE_AGENT_SERVERS" not in a_env,
                       where, f"the agent dials {url} without TLS")
        problems.check("STREAMSPACE_ALLOW_INSECURE" not in a_env, where,
                       "the agent allows plain HTTP although the replicas serve TLS")
        for v in agent_dep["spec"]["template"]["spec"]["volumes"]:
            if "secret" in v:
                items = v["secret"].get("items")
                problems.check(items is not None and all(i["key"] != "tls.key" for i in items),
                               where, "the agent mounts the replicas' private key")
    elif url.startswith("http://"):
        problems.check(a_env.get("STREAMSPACE_ALLOW_INSECURE", {}).get("value") == "true", where,
                       "the agent's plain in-cluster URL is not allowed explicitly")


METRICS_RS = DEPLOY.parent / "crates" / "server" / "src" / "metrics.rs"


def dashboard(objects, where, problems):
    """The dashboard ConfigMap: sidecar label, JSON, and only metrics the server documents."""
    maps = [o for o in objects if o["kind"] == "ConfigMap"
            and o["metadata"].get("labels", {}).get("grafana_dashboard") == "1"]
    if len(maps) != 1:
        problems.add(where, "no ConfigMap with the label grafana_dashboard=1")
        return
    data = maps[0].get("data", {})
    try:
        board = json.loads(data.get("streamspace.json", ""))
    except json.JSONDecodeError as e:
        problems.add(where, f"the dashboard is not JSON: {e}")
        return
    documented = set(re.findall(r"`(streamspace_[a-z_]+)", METRICS_RS.read_text()))
    exprs = [t.get("expr", "") for p in board.get("panels", []) for t in p.get("targets", [])]
    problems.check(bool(exprs), where, "the dashboard has no queries")
    for expr in exprs:
        for name in re.findall(r"streamspace_[a-z_]+", expr):
            base = re.sub(r"_(bucket|count|sum)$", "", name)
            problems.check(name in documented or base in documented, where,
                           f"the dashboard reads {name}, which metrics.rs does not document")


def check_render(name, values, expect, problems):
    where = f"render {name}"
    try:
        rendered = render(values, expect.get("release", RELEASE))
    except helm.HelmError as e:
        problems.add(where, f"does not render: {e}")
        return []
    objects = [o for path, text in rendered.items() for o in parse(text, f"{where} {path}", problems)]
    schema_check(objects, where, problems)
    external = [values.get(k, {}).get("existingSecret") for k in ("controlPlane", "agent")]
    session_ns = values.get("agent", {}).get("sessionNamespace") or NAMESPACE
    references(objects, [s for s in external if s], session_ns, where, problems)
    control_plane(objects, expect.get("replicas", 2), where, problems)
    secret_files(objects, where, problems)
    for name in expect.get("env", []):
        server = find(objects, "Deployment", "server")
        problems.check(server is not None and
                       name in env_of(server["spec"]["template"]["spec"]["containers"][0]),
                       where, f"server env has no {name}")
    if expect.get("agent"):
        agent(objects, session_ns, where, problems)
    tls = bool(values.get("controlPlane", {}).get("tls", {}).get("secretName"))
    transport(objects, tls, where, problems)
    if expect.get("dashboard"):
        dashboard(objects, where, problems)
    kinds = {(o["kind"], o["metadata"]["name"]) for o in objects}
    for kind_name in expect.get("has", []):
        problems.check(kind_name in kinds, where, f"{kind_name[0]}/{kind_name[1]} is missing")
    for kind_name in expect.get("lacks", []):
        problems.check(kind_name not in kinds, where, f"{kind_name[0]}/{kind_name[1]} is rendered")
    return rendered


def check_refused(problems):
    for values, message in REFUSED:
        try:
            render(values)
            problems.add(f"values {values}", "rendered, but must be refused")
        except helm.HelmError as e:
            problems.check(message in str(e), f"values {values}",
                           f"refused without saying {message!r}: {e}")


def plain_files(rendered, optional):
    """deploy/kubernetes/ as the chart renders it: one file per template, Helm labels removed;
    optional/ holds objects `kubectl apply -f deploy/kubernetes/` leaves out (it does not
    recurse), rendered with the plain values plus their own."""
    files = {}
    for path, text in sorted(rendered.items()):
        files[pathlib.PurePosixPath(path).name] = text
    for name, text in optional.items():
        files[f"optional/{name}"] = text
    return {name: GENERATED_HEADER + HELM_LABEL.sub("", text.lstrip("\n"))
            for name, text in files.items()}


def plain_paths():
    return sorted(PLAIN_DIR.glob("*.yaml")) + sorted(PLAIN_DIR.glob("optional/*.yaml"))


def check_plain(rendered, optional, write, problems):
    want = plain_files(rendered, optional)
    have = {str(p.relative_to(PLAIN_DIR)) for p in plain_paths()} - HAND_WRITTEN
    for stale in sorted(have - set(want)):
        if write:
            (PLAIN_DIR / stale).unlink()
        else:
            problems.add(f"deploy/kubernetes/{stale}", "is not rendered by the chart any more")
    for name, text in want.items():
        path = PLAIN_DIR / name
        current = path.read_text() if path.exists() else None
        if write and current != text:
            path.parent.mkdir(exist_ok=True)
            path.write_text(text)
        elif current != text:
            problems.add(f"deploy/kubernetes/{name}",
                         "differs from the chart's rendering: run deploy/check/run --write")
    objects = []
    for path in plain_paths():
        objects += parse(path.read_text(), str(path.relative_to(DEPLOY)), problems)
    schema_check(objects, "deploy/kubernetes", problems)
    references(objects, [], NAMESPACE, "deploy/kubernetes", problems)
    control_plane(objects, 2, "deploy/kubernetes", problems)
    agent(objects, NAMESPACE, "deploy/kubernetes", problems)
    return len(objects)


def self_test(problems):
    """The validator must reject an unknown field, or every check above proves nothing."""
    bad = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"},
           "spec": {"selectr": {"a": "b"}, "ports": [{"port": 80}]}}
    caught = Problems()
    schema_check([bad], "self-test", caught)
    problems.check(len(caught.items) == len(KUBE_VERSIONS), "self-test",
                   "a misspelled field was not rejected by the schema check")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="regenerate deploy/kubernetes/")
    args = parser.parse_args()
    problems = Problems()
    self_test(problems)
    lint = helm.lint(str(CHART), strict=True)
    for m in lint.get("messages", []):
        problems.check(m["severity"] < 2, f"helm lint {m['path']}", m["error"])
    for e in lint.get("errors", []):
        problems.add("helm lint", str(e))

    cases = {
        "defaults": ({}, {"lacks": [("Deployment", "streamspace-agent"),
                                    ("ConfigMap", "streamspace-dashboard")],
                          "has": [("StatefulSet", "streamspace-postgresql"),
                                  ("Deployment", "streamspace-redis"),
                                  ("NetworkPolicy", "streamspace-redis"),
                                  ("NetworkPolicy", "streamspace-postgresql")]}),
        "release prod": ({"networkPolicy": {"enabled": False}},
                         {"release": "prod",
                          "has": [("Deployment", "prod-streamspace-server"),
                                  ("StatefulSet", "prod-streamspace-postgresql")],
                          "lacks": [("NetworkPolicy", "prod-streamspace-redis")]}),
        "fullnameOverride": ({"fullnameOverride": "ss"},
                             {"has": [("Deployment", "ss-server"), ("Service", "ss-redis")]}),
    }
    expectations = {
        "external": {"replicas": 3, "agent": True,
                     "env": ["STREAMSPACE_REDIS_PASSWORD_FILE", "STREAMSPACE_CA_CERT",
                             "STREAMSPACE_REDIS_SENTINEL_PASSWORD_FILE",
                             "STREAMSPACE_REDIS_SENTINEL_USERNAME"],
                     "has": [("Ingress", "streamspace-server")],
                     "lacks": [("StatefulSet", "streamspace-postgresql"),
                               ("Deployment", "streamspace-redis"),
                               ("Secret", "streamspace-agent")]},
        "session-namespace": {"agent": True,
                              "has": [("Namespace", "desktops"),
                                      ("Role", "streamspace-agent-sessions"),
                                      ("RoleBinding", "streamspace-agent-sessions"),
                                      ("NetworkPolicy", "streamspace-sessions")]},
        "tls": {"agent": True},
        "grafana-dashboard": {"dashboard": True,
                              "has": [("ConfigMap", "streamspace-dashboard")]},
        "existing-secrets": {"lacks": [("Secret", "streamspace-server"),
                                       ("StatefulSet", "streamspace-postgresql"),
                                       ("NetworkPolicy", "streamspace-postgresql")]},
    }
    for path in sorted((CHECK_DIR / "cases").glob("*.yaml")):
        values = yaml.safe_load(path.read_text()) or {}
        expect = expectations.get(path.stem)
        if expect is None:
            problems.add(str(path), "has no expectations in check.py")
            continue
        cases[path.stem] = (values, expect)
    for name, (values, expect) in cases.items():
        check_render(name, values, expect, problems)
    check_refused(problems)

    plain_values = yaml.safe_load((CHECK_DIR / "plain-values.yaml").read_text())
    rendered = check_render("plain", plain_values, {"agent": True}, problems)
    ingress = {"enabled": True, "className": "nginx", "host": "streamspace.example.com",
               "annotations": {"nginx.ingress.kubernetes.io/proxy-read-timeout": "3600",
                               "nginx.ingress.kubernetes.io/proxy-send-timeout": "3600"}}
    with_ingress = render(dict(plain_values, ingress=ingress))
    optional = {"ingress.yaml": with_ingress.get("streamspace/templates/ingress.yaml", "")}
    count = check_plain(rendered, optional, args.write, problems) if rendered else 0

    if problems.items:
        print(f"deploy check FAILED ({len(problems.items)} problems):", file=sys.stderr)
        for p in problems.items:
            print(f"  {p}", file=sys.stderr)
        return 1
    print(f"deploy check: helm lint clean; {len(cases) + 1} renders and {count} plain objects "
          f"valid against Kubernetes {' and '.join(KUBE_VERSIONS)}; "
          f"{len(REFUSED)} invalid value sets refused")
    return 0


if __name__ == "__main__":
    sys.exit(main())
