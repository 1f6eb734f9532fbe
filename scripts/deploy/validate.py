#!/usr/bin/env python3
"""Validates the Helm chart with the real tools, then proves the validation can fail.

    validate.py chart     --helm H --chart DIR --binary BIN [--rendered-out DIR]
    validate.py mutations --helm H --chart DIR --binary BIN --mutations DIR

`chart`: for every ci/*-values.yaml: `helm lint --strict` (values.schema.json and the template's
refusals included), `helm template`, every object against the Kubernetes schemas of each
K8S_VERSIONS (strict) or, for the ServiceMonitor, the schema derived from its CRD
(schemas/), the structural checks of chart_checks.py, the rendered config compared with the
values (strings byte for byte, integers as integers), `tanma-connector check-config --offline`
on it (the real loader and the real librdkafka client configuration), and every PromQL
expression of the rendered dashboard through a PromQL parser.

`mutations`: each mutations/*.yaml is a broken copy of the chart (literal or regex edits of
its files, and/or extra values); the same validation must reject it, for the reason its
`expect` pattern names. A mutation that passes, or fails for another reason, fails the run.
"""
import argparse
import functools
import glob
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

import jsonschema
import kubernetes_validate.utils as kv
import promql_parser
import referencing
import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chart_checks as cc  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
NAMESPACE = "tanma"
CRD_SCHEMAS = {("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor-monitoring-v1.json"}
SECRET_FILE_ENV = {"api.app_key_file": "TANMA_API__APP_KEY_FILE",
                   "kafka.sasl_password_file": "TANMA_KAFKA__SASL_PASSWORD_FILE",
                   "schema_registry.password_file": "TANMA_SCHEMA_REGISTRY__PASSWORD_FILE"}
# Rendered configs kept as test fixtures (tests/ops_deploy_config.rs); they must stay the chart's output.
FIXTURES = {"large-numbers-tricky-strings": os.path.join(ROOT, "tests", "data", "helm-rendered-large-numbers.json")}
# Grafana's interval variables, outside string literals, stand for a duration.
GRAFANA_INTERVAL = re.compile(r"\$\{?__(rate_interval|interval|range)\}?")


class Timer:
    def __init__(self):
        self.totals = {}

    def add(self, stage, secs):
        self.totals[stage] = self.totals.get(stage, 0.0) + secs

    def report(self, prefix):
        parts = ", ".join(f"{k} {v:.1f}s" for k, v in self.totals.items())
        print(f"   {prefix} time by stage: {parts}", file=sys.stderr)


TIMER = Timer()


def timed(stage):
    def wrap(f):
        @functools.wraps(f)
        def inner(*a, **kw):
            t = time.monotonic()
            try:
                return f(*a, **kw)
            finally:
                TIMER.add(stage, time.monotonic() - t)
        return inner
    return wrap


# ------------------------------------------------------------------ Kubernetes schemas
@functools.lru_cache(maxsize=None)
def k8s_validator(version, kind, api_version):
    """A strict validator for one kind, from kubernetes-validate's bundled schemas (cached:
    loading them is most of the cost)."""
    versions = [v for v in kv.all_versions() if kv.major_minor(v) <= kv.major_minor(version)]
    if not versions:
        raise SystemExit(f"kubernetes-validate has no schemas for {version}")
    schema_dir = f"v{versions[-1]}-local-strict"
    group = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    try:
        schema = kv.schema_contents(f"kubernetes-json-schema/{schema_dir}/{kind.lower()}-{group}.json", version)
    except FileNotFoundError:
        return None
    # Both documents carry an $id; the schema's $refs point into the definitions'.
    registry = _k8s_definitions(schema_dir, version) @ (referencing.Resource.from_contents(schema) @ referencing.Registry())
    return jsonschema.Draft202012Validator(schema, registry=registry)


@functools.lru_cache(maxsize=None)
def _k8s_definitions(schema_dir, version):
    return referencing.Resource.from_contents(kv.schema_contents(f"kubernetes-json-schema/{schema_dir}/_definitions.json", version))


@functools.lru_cache(maxsize=None)
def crd_validator(api_version, kind):
    name = CRD_SCHEMAS.get((api_version, kind))
    if name is None:
        return None
    with open(os.path.join(HERE, "schemas", name)) as f:
        return jsonschema.Draft202012Validator(json.load(f))


@timed("k8s-schemas")
def validate_objects(docs, versions):
    problems = []
    for d in docs:
        what = f"{d.get('kind')} {d.get('metadata', {}).get('name')}"
        crd = crd_validator(d.get("apiVersion"), d.get("kind"))
        targets = [("CRD schema", crd)] if crd else [(f"Kubernetes {v}", k8s_validator(v, d["kind"], d["apiVersion"])) for v in versions]
        for label, validator in targets:
            if validator is None:
                problems.append(f"{what}: no schema for {d['apiVersion']} {d['kind']} ({label}); ship one under scripts/deploy/schemas")
                continue
            for e in sorted(validator.iter_errors(d), key=lambda e: list(e.path)):
                path = ".".join(str(x) for x in e.path)
                problems.append(f"{what} is not valid ({label}): {path}: {e.message}")
    return problems


# ------------------------------------------------------------------ helm
def run(cmd, env=None):
    return subprocess.run(cmd, capture_output=True, text=True, env=env)


def values_args(values):
    """helm arguments for a list of values files and ("--set", "key=value") pairs, in order."""
    args = []
    for v in values:
        args += list(v) if isinstance(v, tuple) else ["-f", v]
    return args


def set_value(key_value):
    """A `--set a.b=v` as a nested dict, typed as helm's strvals types it (int, bool, null, string)."""
    key, _, raw = key_value.partition("=")
    value = {"true": True, "false": False, "null": None}.get(raw, raw)
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]+", raw) and not re.fullmatch(r"-?0[0-9]+", raw):
        value = int(raw)
    for part in reversed(key.split(".")):
        value = {part: value}
    return value


@timed("helm-lint")
def helm_lint(helm, chart, values_files):
    args = [helm, "lint", "--strict", "--quiet", chart] + values_args(values_files)
    r = run(args)
    if r.returncode != 0:
        lines = [ln.strip() for ln in (r.stdout + r.stderr).splitlines() if ln.strip() and "linted" not in ln and not ln.startswith("==>")]
        return ["helm lint --strict: " + " | ".join(lines)]
    return []


@timed("helm-template")
def helm_template(helm, chart, release, values_files, kube_version):
    args = [helm, "template", release, chart, "--namespace", NAMESPACE, "--kube-version", kube_version]
    args += values_args(values_files)
    r = run(args)
    if r.returncode != 0:
        return None, r.stdout, ["helm template: " + " | ".join(ln for ln in r.stderr.splitlines() if ln.strip())]
    return [d for d in yaml.safe_load_all(r.stdout) if d], r.stdout, []


def merged_values(chart, values_files):
    with open(os.path.join(chart, "values.yaml")) as f:
        values = yaml.safe_load(f)
    for v in values_files:
        if isinstance(v, tuple):
            values = cc.deep_merge(values, set_value(v[1]))
            continue
        with open(v) as f:
            values = cc.deep_merge(values, yaml.safe_load(f) or {})
    return values


def documented_install(path):
    """The `--set` flags of the `helm install` example in docs/OPERATIONS.md, as values."""
    with open(path) as f:
        text = f.read().replace("\\\n", " ")
    line = next((ln for ln in text.splitlines() if ln.startswith("helm install ")), None)
    if line is None:
        raise SystemExit(f"{path}: no `helm install` example")
    words = shlex.split(line, comments=True)
    return [("--set", words[i + 1]) for i, w in enumerate(words) if w == "--set"]


# ------------------------------------------------------------------ the connector
@timed("check-config")
def check_config_offline(binary, name, text, container_env):
    """`tanma-connector check-config --offline` on a rendered config, with the container's literal
    env and the secret files redirected to dummies."""
    rendered = cc.parse_config(name, text)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, name)
        with open(path, "w") as f:
            f.write(text)
        env = {k: v for k, v in os.environ.items() if not k.startswith("TANMA_")}
        for e in container_env or []:
            if "value" in e:
                env[e["name"]] = e["value"]
        for key, file in cc.secret_file_keys(rendered).items():
            dummy = os.path.join(tmp, os.path.basename(file))
            with open(dummy, "w") as f:
                f.write("dummy-secret\n")
            env[SECRET_FILE_ENV[key]] = dummy
        r = run([binary, "check-config", "--offline", "--config", path], env=env)
    if r.returncode != 0:
        out = " | ".join(ln.strip() for ln in (r.stdout + r.stderr).splitlines() if ln.strip())
        return [f"check-config --offline exited {r.returncode}: {out}"]
    return []


@functools.lru_cache(maxsize=None)
def known_metrics():
    with open(os.path.join(ROOT, "src", "ops", "metric_names.rs")) as f:
        return frozenset(re.findall(r'"(tanma_[a-z0-9_]+)"', f.read()))


def dashboard_exprs(panels):
    for p in panels:
        for t in p.get("targets", []):
            if t.get("expr"):
                yield p.get("title", "?"), t["expr"]
        yield from dashboard_exprs(p.get("panels", []))


@timed("promql")
def check_dashboard_promql(docs):
    problems = []
    for cm in (d for d in docs if d["kind"] == "ConfigMap" and "dashboard" in d["metadata"]["name"]):
        for key, text in cm.get("data", {}).items():
            dash = json.loads(text)
            for title, expr in dashboard_exprs(dash.get("panels", [])):
                try:
                    promql_parser.parse(GRAFANA_INTERVAL.sub("5m", expr))
                except ValueError as e:
                    problems.append(f"dashboard {key}, panel {title!r}: PromQL does not parse ({e}): {expr}")
                used = {re.sub(r"_(bucket|sum|count)$", "", m) for m in re.findall(r"tanma_[a-z0-9_]+", expr)}
                for m in sorted(used - known_metrics()):
                    problems.append(f"dashboard {key}, panel {title!r}: metric {m} is not one src/ops/metric_names.rs declares")
    return problems


# ------------------------------------------------------------------ one variant
def validate_variant(ctx, chart, variant, values_files, fail_fast):
    """Every check of one values combination; returns problems (stops at the first failing
    stage when fail_fast)."""
    problems = []

    def stage(found):
        problems.extend(found)
        return fail_fast and problems

    if stage(helm_lint(ctx.helm, chart, values_files)):
        return problems
    docs, text, errs = helm_template(ctx.helm, chart, f"ci-{variant}", values_files, ctx.k8s_versions[-1])
    if stage(errs):
        return problems
    if stage(validate_objects(docs, ctx.k8s_versions)):
        return problems
    values = merged_values(chart, values_files)
    r = cc.Rendering(docs, values, NAMESPACE)
    t = time.monotonic()
    found = cc.check_rendering(r)
    TIMER.add("structure", time.monotonic() - t)
    if stage(found):
        return problems
    dep = r.by_kind["Deployment"][0]
    c = dep["spec"]["template"]["spec"]["containers"][0]
    cfg_name, config = cc.mounted_config(r, dep["spec"]["template"]["spec"], c, "Deployment", [])
    text_cfg = r.configmap(dep["metadata"]["name"])["data"][cfg_name]
    if stage(cc.compare_config(values.get("config", {}), config) + cc.check_chart_owned_keys(values, config)):
        return problems
    if ctx.binary and stage(check_config_offline(ctx.binary, cfg_name, text_cfg, c.get("env"))):
        return problems
    if stage(check_dashboard_promql(docs)):
        return problems
    if values.get("dashboards", {}).get("enabled"):
        other, _, errs = helm_template(ctx.helm, chart, "other-release", values_files, ctx.k8s_versions[-1])
        uids = [json.loads(v).get("uid") for rr in (docs, other or []) for d in rr
                if d["kind"] == "ConfigMap" and "dashboard" in d["metadata"]["name"] for v in d["data"].values()]
        if errs or len(set(uids)) != 2:
            stage([f"dashboard uid is the same for two releases ({uids}): it must be derived from the release"])
    ctx.rendered[variant] = text_cfg
    if ctx.rendered_out and not problems:
        with open(os.path.join(ctx.rendered_out, f"{variant}.{os.path.splitext(cfg_name)[1][1:]}"), "w") as f:
            f.write(text_cfg)
    return problems


def variants_of(chart):
    found = sorted(glob.glob(os.path.join(chart, "ci", "*-values.yaml")))
    if not found:
        raise SystemExit(f"no {chart}/ci/*-values.yaml")
    return {os.path.basename(f)[: -len("-values.yaml")]: f for f in found}


def cmd_chart(ctx):
    failed = False
    variants = {v: [f] for v, f in variants_of(ctx.chart).items()}
    variants["docs-install-example"] = documented_install(os.path.join(ROOT, "docs", "OPERATIONS.md"))
    for variant, values in variants.items():
        problems = validate_variant(ctx, ctx.chart, variant, values, fail_fast=False)
        fixture = FIXTURES.get(variant)
        if fixture and ctx.rendered.get(variant) is not None:
            with open(fixture) as fh:
                if fh.read().rstrip("\n") != ctx.rendered[variant]:
                    problems.append(f"{os.path.relpath(fixture, ROOT)} is not the chart's rendering of ci/{variant}-values.yaml any more: "
                                    "copy the rendered config.json there (the loader test reads it)")
        if problems:
            failed = True
            print(f"   {variant}: FAIL", file=sys.stderr)
            for p in problems:
                print(f"     - {p}", file=sys.stderr)
        else:
            offline = "check-config --offline, " if ctx.binary else "(check-config skipped), "
            print(f"   {variant}: ok (lint, schemas for Kubernetes {', '.join(ctx.k8s_versions)}, structure, {offline}config byte for byte, PromQL)", file=sys.stderr)
    TIMER.report("chart")
    return 1 if failed else 0


# ------------------------------------------------------------------ mutations
def apply_edit(root, edit):
    path = os.path.join(root, edit["file"])
    with open(path) as f:
        text = f.read()
    if edit.get("regex"):
        new, n = re.subn(edit["old"], edit["new"], text, count=1, flags=re.S)
    else:
        n = text.count(edit["old"])
        new = text.replace(edit["old"], edit["new"])
    if n != 1:
        raise ValueError(f"{edit['file']}: the text to replace occurs {n} times (want 1): {edit['old'][:80]!r}")
    with open(path, "w") as f:
        f.write(new)


def run_mutation(ctx, spec_path, tmp):
    name = os.path.basename(spec_path)[: -len(".yaml")]
    try:
        with open(spec_path) as f:
            spec = yaml.safe_load(f)
        re.compile(spec["expect"])
    except (yaml.YAMLError, KeyError, TypeError, re.error) as e:
        return name, "broken-spec", f"{spec_path}: {e}"
    chart = os.path.join(tmp, name, os.path.basename(ctx.chart.rstrip("/")))
    shutil.copytree(ctx.chart, chart)
    try:
        for edit in spec.get("edits", []):
            apply_edit(chart, edit)
    except ValueError as e:
        return name, "stale", str(e)
    available = variants_of(chart)
    problems = []
    for variant in spec.get("variants", ["default"]):
        files = [available[variant]]
        if spec.get("values"):
            extra = os.path.join(tmp, name, "mutation-values.yaml")
            with open(extra, "w") as f:
                yaml.safe_dump(spec["values"], f, allow_unicode=True)
            files.append(extra)
        problems += [f"{variant}: {p}" for p in validate_variant(ctx, chart, variant, files, fail_fast=True)]
    if not problems:
        return name, "passed", spec.get("what", "")
    expect = re.compile(spec["expect"], re.S)
    hit = next((p for p in problems if expect.search(p)), None)
    if hit is None:
        return name, "other-reason", f"expected /{spec['expect']}/, got: {problems[0]}"
    return name, "rejected", hit


def cmd_mutations(ctx):
    specs = sorted(glob.glob(os.path.join(ctx.mutations, "*.yaml")))
    if not specs:
        raise SystemExit(f"no mutations in {ctx.mutations}")
    bad = 0
    with tempfile.TemporaryDirectory() as tmp:
        for spec in specs:
            name, outcome, detail = run_mutation(ctx, spec, tmp)
            if outcome == "rejected":
                print(f"   mutation {name}: rejected as it must be: {detail[:300]}", file=sys.stderr)
            else:
                bad += 1
                print(f"   mutation {name}: {outcome.upper()}: {detail[:500]}", file=sys.stderr)
    TIMER.report("mutations")
    print(f"   mutation check: {len(specs) - bad} of {len(specs)} broken charts rejected for the expected reason", file=sys.stderr)
    return 1 if bad else 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("command", choices=["chart", "mutations"])
    ap.add_argument("--helm", required=True)
    ap.add_argument("--chart", required=True)
    ap.add_argument("--binary", help="tanma-connector binary for check-config --offline (omit to skip)")
    ap.add_argument("--k8s-versions", default="1.25.0,1.30.0,1.33.0")
    ap.add_argument("--mutations", default=os.path.join(HERE, "mutations"))
    ap.add_argument("--rendered-out", help="write each variant's rendered config here")
    ctx = ap.parse_args()
    ctx.k8s_versions = ctx.k8s_versions.split(",")
    ctx.rendered = {}
    sys.exit(cmd_chart(ctx) if ctx.command == "chart" else cmd_mutations(ctx))


if __name__ == "__main__":
    main()
