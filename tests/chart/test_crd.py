"""The LeaderboardCluster CRD: structural, valid, consistent with the operator and its examples."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from leaderboard_operator import rendering, resources
from leaderboard_operator import status as status_mod
from leaderboard_operator.members import MemberReport, PodInfo, PodProblem

from ..operator.apiserver import apply_defaults, undeclared
from .conftest import CHART, CRD_FILE, EXAMPLES, KUBERNETES_VERSION

# Keys a branch of anyOf/allOf/oneOf/not must not set in a structural schema.
FORBIDDEN_IN_BRANCHES = {"type", "default", "description", "nullable", "additionalProperties", "title"}
INT_OR_STRING = [{"type": "integer"}, {"type": "string"}]


def structural_problems(schema: dict[str, Any], path: str = "") -> list[str]:
    """Violations of Kubernetes' structural schema rules (the ones that apply to this CRD)."""
    problems: list[str] = []
    preserve = schema.get("x-kubernetes-preserve-unknown-fields") is True
    int_or_string = schema.get("x-kubernetes-int-or-string") is True
    if "type" not in schema and not (preserve or int_or_string):
        problems.append(f"{path or '/'}: no type")
    if int_or_string and schema.get("anyOf", INT_OR_STRING) != INT_OR_STRING:
        problems.append(f"{path}: x-kubernetes-int-or-string with an anyOf other than integer|string")
    for key in ("anyOf", "allOf", "oneOf"):
        for branch in schema.get(key, []):
            if int_or_string and key == "anyOf":
                continue
            if FORBIDDEN_IN_BRANCHES & set(branch) or any(k.startswith("x-kubernetes-") for k in branch):
                problems.append(f"{path}: {key} branch sets {sorted(set(branch))}")
    if "properties" in schema and isinstance(schema.get("additionalProperties"), dict):
        problems.append(f"{path}: both properties and additionalProperties")
    if schema.get("type") == "array" and not isinstance(schema.get("items"), dict):
        problems.append(f"{path}: an array needs one items schema")
    for name, sub in schema.get("properties", {}).items():
        problems += structural_problems(sub, f"{path}/{name}")
    if isinstance(schema.get("items"), dict):
        problems += structural_problems(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        problems += structural_problems(schema["additionalProperties"], f"{path}/*")
    return problems


def defaults(schema: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    """Every (path, schema) that declares a default."""
    found = [(path, schema)] if "default" in schema else []
    for name, sub in schema.get("properties", {}).items():
        found += defaults(sub, f"{path}/{name}")
    if isinstance(schema.get("items"), dict):
        found += defaults(schema["items"], f"{path}[]")
    return found


def validator(crd_schema: dict[str, Any]) -> jsonschema.Draft4Validator:
    # Kubernetes' openAPIV3Schema is OpenAPI 3.0, i.e. JSON Schema draft 4 (boolean exclusiveMinimum).
    return jsonschema.Draft4Validator(crd_schema)


def test_the_chart_ships_the_same_crd() -> None:
    assert (CHART / "crds" / "leaderboardclusters.yaml").read_bytes() == CRD_FILE.read_bytes()


def test_the_crd_is_a_valid_kubernetes_object(crd: dict[str, Any]) -> None:
    kubernetes_validate.validate(crd, KUBERNETES_VERSION, strict=True)


def test_the_crd_names_the_resource_the_operator_serves(crd: dict[str, Any]) -> None:
    assert crd["metadata"]["name"] == f"{resources.PLURAL}.{resources.GROUP}"
    assert crd["spec"]["group"] == resources.GROUP
    assert crd["spec"]["scope"] == "Namespaced"
    assert crd["spec"]["names"]["kind"] == resources.KIND
    assert crd["spec"]["names"]["shortNames"] == ["lbc"]
    assert [v["name"] for v in crd["spec"]["versions"]] == [resources.VERSION]


def test_the_crd_schema_is_structural(crd_schema: dict[str, Any]) -> None:
    assert structural_problems(crd_schema) == []


def test_the_structural_check_catches_untyped_fields() -> None:
    assert structural_problems({"type": "object", "properties": {"x": {"description": "no type"}}}) == ["/x: no type"]


def test_every_default_is_valid_under_its_own_schema(crd_schema: dict[str, Any]) -> None:
    found = defaults(crd_schema)
    assert found, "the CRD declares defaults"
    for path, schema in found:
        errors = list(jsonschema.Draft4Validator({k: v for k, v in schema.items() if k != "default"})
                      .iter_errors(schema["default"]))
        assert not errors, f"the default of {path} is invalid: {errors[0].message}"


def test_the_crd_defaults_are_the_operators_defaults(crd_schema: dict[str, Any]) -> None:
    defaulted = apply_defaults(crd_schema, {"spec": {}})["spec"]
    assert defaulted["replicas"] == 3
    parse = rendering.ClusterSpec.parse
    assert parse(defaulted, default_image="img") == parse({}, default_image="img")


def test_the_crd_has_status_and_scale_subresources(crd: dict[str, Any]) -> None:
    version = crd["spec"]["versions"][0]
    assert version["subresources"] == {
        "status": {},
        "scale": {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas",
                  "labelSelectorPath": ".status.selector"},
    }


def test_kubectl_get_shows_replicas_ready_synced_phase_and_age(crd: dict[str, Any]) -> None:
    columns = crd["spec"]["versions"][0]["additionalPrinterColumns"]
    assert [(c["name"], c["jsonPath"]) for c in columns] == [
        ("Replicas", ".spec.replicas"), ("Ready", ".status.readyReplicas"), ("Synced", ".status.syncedReplicas"),
        ("Phase", ".status.phase"), ("Age", ".metadata.creationTimestamp"),
    ]


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_the_examples_are_valid_clusters(path: Path, crd_schema: dict[str, Any]) -> None:
    example = yaml.safe_load(path.read_text())
    assert example["apiVersion"] == f"{resources.GROUP}/{resources.VERSION}"
    assert example["kind"] == resources.KIND
    validator(crd_schema).validate(example)
    assert undeclared(crd_schema["properties"]["spec"], example["spec"]) == []


def test_there_are_minimal_and_full_examples() -> None:
    assert {p.name for p in EXAMPLES} >= {"minimal.yaml", "full.yaml"}


@pytest.mark.parametrize("spec", [
    {"replicas": 0},
    {"replicas": "3"},
    {"imagePullPolicy": "Sometimes"},
    {"sync": {"batchTimeout": 0}},
    {"sync": {"batchSize": 0}},
    {"sync": {"blacklistCache": [""]}},
    {"service": {"type": "ExternalName"}},
    {"service": {"port": 70000}},
    {"storage": {"size": "lots"}},
    {"podDisruptionBudget": {"maxUnavailable": True}},
], ids=lambda spec: yaml.safe_dump(spec, default_flow_style=True).strip())
def test_the_schema_rejects_an_invalid_spec(spec: dict[str, Any], crd_schema: dict[str, Any]) -> None:
    cluster = {"apiVersion": f"{resources.GROUP}/{resources.VERSION}", "kind": resources.KIND,
               "metadata": {"name": "lb"}, "spec": spec}
    with pytest.raises(jsonschema.ValidationError):
        validator(crd_schema).validate(cluster)


def test_nothing_the_operator_writes_into_the_status_is_pruned(crd_schema: dict[str, Any]) -> None:
    pods = [PodInfo(name="lb-0", ip="10.0.0.1", ready=True, restarts=1, terminating=False),
            PodInfo(name="lb-1", ip="10.0.0.2", ready=False, restarts=0, terminating=False,
                    problem=PodProblem(reason="CrashLoopBackOff", message="back-off 5m0s"))]
    reports = {"lb-0": MemberReport(pod="lb-0", data={
        "node": {"state": "ready", "ready": True, "synced": True, "version_vector": {"lb-0": {"epoch": 1, "seq": 2}},
                 "clock": {"max_offset_ms": 500, "offset_ms": 700.5, "skewed": True, "since": 1700000000}},
        "members": [{"name": "lb-1", "lag_entries": 3, "state": "unreachable", "unreachable_since": 1700000000}]}),
        "lb-1": MemberReport(pod="lb-1", data={"node": {"state": "ready"},
                                               "members": [{"name": "lb-0", "reachable": False}]})}
    observed = status_mod.compute_status(desired=2, pods=pods, reports=reports, selector="a=b", previous=None,
                                         now=datetime.datetime.now(datetime.UTC))
    assert {"clockOffsetMs", "clockSkewed", "unreachableFrom"} <= set(observed["members"][0])
    assert {"lagEntries", "problem", "unreachableFrom"} <= set(observed["members"][1])
    assert "ClockSkew" in {c["type"] for c in observed["conditions"]}
    status = {**observed, "observedGeneration": 4,
              "lastError": {"time": "2025-01-01T00:00:00Z", "reason": "ReconcileFailed", "message": "x"},
              "kopf": {"progress": {"children": {"retries": 1}}}}
    schema = crd_schema["properties"]["status"]
    assert undeclared(schema, status) == []
    validator(schema).validate(status)
