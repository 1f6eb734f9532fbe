#!/usr/bin/env python3
"""Turns a CustomResourceDefinition's openAPIV3Schema into a strict JSON Schema (draft 2020-12).

    crd_to_jsonschema.py CRD.yaml VERSION > kind-group-version.json

Used once to write servicemonitor-monitoring-v1.json from the prometheus-operator CRD
(monitoring.coreos.com_servicemonitors.yaml). Strict like kubernetes-validate's "-strict"
schemas: an object with declared properties rejects unknown ones, unless the CRD marks it
x-kubernetes-preserve-unknown-fields. x-kubernetes-int-or-string becomes integer-or-string.
Descriptions are dropped (the CRD is the documentation); formats are kept as annotations.
"""
import json
import sys

import yaml

KEEP = {"type", "enum", "pattern", "minimum", "maximum", "minLength", "maxLength",
        "minItems", "maxItems", "minProperties", "maxProperties", "required", "format",
        "exclusiveMinimum", "exclusiveMaximum", "default"}


def convert(node):
    out = {k: v for k, v in node.items() if k in KEEP}
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["type"] = ["integer", "string"]
    if node.get("nullable") and "type" in out and isinstance(out["type"], str):
        out["type"] = [out["type"], "null"]
    if "properties" in node:
        out["properties"] = {k: convert(v) for k, v in node["properties"].items()}
        if not node.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    elif isinstance(node.get("additionalProperties"), dict):
        out["additionalProperties"] = convert(node["additionalProperties"])
    if "items" in node:
        out["items"] = convert(node["items"])
    for key in ("anyOf", "oneOf", "allOf"):
        if key in node:
            out[key] = [convert(n) for n in node[key]]
    if "not" in node:
        out["not"] = convert(node["not"])
    return out


def main():
    crd_path, version = sys.argv[1], sys.argv[2]
    crd = yaml.safe_load(open(crd_path))
    spec = crd["spec"]
    ver = next(v for v in spec["versions"] if v["name"] == version)
    schema = convert(ver["schema"]["openAPIV3Schema"])
    api_version = f"{spec['group']}/{version}"
    props = schema.setdefault("properties", {})
    props["apiVersion"] = {"const": api_version}
    props["kind"] = {"const": spec["names"]["kind"]}
    # The CRD leaves metadata to the API server (ObjectMeta); check the fields charts set.
    props["metadata"] = {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"},
            "namespace": {"type": "string"},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
        },
        "additionalProperties": False,
    }
    schema["required"] = sorted(set(schema.get("required", [])) | {"apiVersion", "kind", "metadata", "spec"})
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$comment": (f"Derived by scripts/deploy/schemas/crd_to_jsonschema.py from the {spec['names']['kind']} "
                     f"CRD ({crd['metadata']['name']}, operator version "
                     f"{crd['metadata'].get('annotations', {}).get('operator.prometheus.io/version', '?')}), "
                     f"openAPIV3Schema of {api_version}."),
        **schema,
    }
    json.dump(schema, sys.stdout, indent=1, sort_keys=False, ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
