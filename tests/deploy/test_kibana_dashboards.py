"""The Kibana saved objects: valid NDJSON, every reference resolves, and every field a
dashboard uses exists in our index template with a type Elasticsearch can aggregate on."""

from __future__ import annotations

import fnmatch
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from receiver.config import ElasticsearchSettings

REPO = Path(__file__).resolve().parents[2]
NDJSON = REPO / "dashboards" / "kibana" / "haproxy-receiver.ndjson"
TEMPLATE = REPO / "receiver" / "ship" / "index-template.json"
AGGREGATABLE = {"keyword", "constant_keyword", "wildcard", "ip", "long", "integer", "short", "byte",
                "double", "float", "half_float", "scaled_float", "unsigned_long", "date",
                "date_nanos", "boolean", "geo_point"}
# Attributes that hold JSON encoded as a string (Kibana's saved object format).
JSON_ATTRIBUTES = ("visState", "panelsJSON", "layerListJSON", "mapStateJSON", "optionsJSON",
                   "uiStateJSON", "fieldFormatMap", "fields")


def saved_objects() -> list[dict[str, Any]]:
    lines = NDJSON.read_text(encoding="utf-8").splitlines()
    assert lines and all(line.strip() for line in lines), "blank line in the NDJSON"
    return [json.loads(line) for line in lines]


def decoded(obj: dict[str, Any]) -> dict[str, Any]:
    """Attributes with their JSON-in-a-string values parsed."""
    attributes = dict(obj["attributes"])
    for name in JSON_ATTRIBUTES:
        if isinstance(attributes.get(name), str):
            attributes[name] = json.loads(attributes[name])
    meta = attributes.get("kibanaSavedObjectMeta")
    if meta:
        attributes["kibanaSavedObjectMeta"] = {"searchSourceJSON": json.loads(meta["searchSourceJSON"])}
    return attributes


def walk(value: Any) -> Any:
    yield value
    if isinstance(value, dict):
        for item in value.values():
            yield from walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from walk(item)


def ref_names_used(attributes: dict[str, Any]) -> set[str]:
    names = set()
    for node in walk(attributes):
        if isinstance(node, dict):
            for key in ("indexRefName", "panelRefName", "indexPatternRefName"):
                if isinstance(node.get(key), str):
                    names.add(node[key])
    return names


def fields_used(obj: dict[str, Any]) -> dict[str, str]:
    """Field name → what uses it ("agg", "geo", "column", "time")."""
    attributes = decoded(obj)
    used: dict[str, str] = {}
    if obj["type"] == "visualization":
        for agg in attributes["visState"]["aggs"]:
            if "field" in agg["params"]:
                used[agg["params"]["field"]] = "agg"
    elif obj["type"] == "map":
        for node in walk(attributes["layerListJSON"]):
            if isinstance(node, dict) and "geoField" in node:
                used[node["geoField"]] = "geo"
    elif obj["type"] == "search":
        used.update(dict.fromkeys(attributes["columns"], "column"))
        used.update({sort[0]: "agg" for sort in attributes["sort"]})
    elif obj["type"] == "index-pattern":
        used[attributes["timeFieldName"]] = "time"
        used.update(dict.fromkeys(attributes.get("fieldFormatMap", {}), "column"))
    return used


def template_fields() -> dict[str, dict[str, Any]]:
    """Every field of the index template's mappings, dotted name → mapping (multi-fields too)."""
    if not TEMPLATE.exists():
        pytest.fail(f"{TEMPLATE.relative_to(REPO)} is missing: the dashboards cannot be checked "
                    "against the index template")
    template = json.loads(TEMPLATE.read_text())
    mappings = (template.get("template") or template).get("mappings", {})
    fields: dict[str, dict[str, Any]] = {}

    def collect(properties: dict[str, Any], prefix: str) -> None:
        for name, mapping in properties.items():
            path = prefix + name
            if "properties" in mapping:
                collect(mapping["properties"], path + ".")
            if "type" in mapping:
                fields[path] = mapping
            for sub, sub_mapping in mapping.get("fields", {}).items():
                fields[f"{path}.{sub}"] = sub_mapping

    collect(mappings.get("properties", {}), "")
    # Elasticsearch and OpenSearch search and aggregate on an alias as on the field it names.
    for path, mapping in list(fields.items()):
        if mapping.get("type") == "alias":
            fields[path] = fields[mapping["path"]]
    return fields


def test_every_line_is_a_saved_object_with_a_unique_id() -> None:
    objects = saved_objects()
    keys = [(o["type"], o["id"]) for o in objects]
    assert len(keys) == len(set(keys))
    for obj in objects:
        assert set(obj) >= {"id", "type", "attributes", "references"}, obj.get("id")
        decoded(obj)  # every JSON-in-a-string attribute parses
    kinds = {o["type"] for o in objects}
    assert {"index-pattern", "visualization", "map", "dashboard"} <= kinds


def test_every_reference_resolves_and_every_ref_name_is_declared() -> None:
    objects = saved_objects()
    present = {(o["type"], o["id"]) for o in objects}
    for obj in objects:
        declared = {r["name"] for r in obj["references"]}
        for reference in obj["references"]:
            assert (reference["type"], reference["id"]) in present, (obj["id"], reference)
        used = ref_names_used(decoded(obj))
        assert used == declared, (obj["id"], used ^ declared)


def test_dashboard_shows_every_view_once() -> None:
    objects = saved_objects()
    (dashboard,) = [o for o in objects if o["type"] == "dashboard"]
    panels = decoded(dashboard)["panelsJSON"]
    shown = {(r["type"], r["id"]) for r in dashboard["references"]}
    views = {(o["type"], o["id"]) for o in objects if o["type"] in {"visualization", "map", "search"}}
    assert shown == views and len(panels) == len(views)
    for panel in panels:
        grid = panel["gridData"]
        assert grid["x"] + grid["w"] <= 48, panel  # Kibana's dashboard grid is 48 columns wide
    grids = [p["gridData"] for p in panels]
    cells = {(x, y) for g in grids for x in range(g["x"], g["x"] + g["w"])
             for y in range(g["y"], g["y"] + g["h"])}
    assert len(cells) == sum(g["w"] * g["h"] for g in grids), "panels overlap"


def test_the_views_the_issue_asks_for_exist() -> None:
    used: dict[str, set[str]] = {}
    for obj in saved_objects():
        for name, use in fields_used(obj).items():
            used.setdefault(name, set()).add(use)
    assert "geo" in used["source.geo.location"]  # where traffic comes from: the map
    for name in ("source.ip", "haproxy.frontend_name", "haproxy.backend_name", "haproxy.server_name",
                 "http.response.status_code", "haproxy.total_time_ms", "haproxy.bytes_read",
                 "haproxy.termination_state", "source.as.organization.name"):
        assert "agg" in used.get(name, set()), name


def test_every_field_exists_in_the_index_template_with_an_aggregatable_type() -> None:
    fields = template_fields()
    problems = []
    for obj in saved_objects():
        for name, use in fields_used(obj).items():
            mapping = fields.get(name)
            if mapping is None:
                problems.append(f"{obj['id']}: {name} is not in the index template")
                continue
            kind = mapping.get("type")
            if use != "column" and mapping.get("doc_values") is False:
                problems.append(f"{obj['id']}: {name} has doc_values off, which cannot be aggregated")
            if kind is None:
                problems.append(f"{obj['id']}: {name} has no type in the index template")
            elif use == "geo" and kind != "geo_point":
                problems.append(f"{obj['id']}: {name} is {kind}, the map needs geo_point")
            elif use == "time" and kind not in {"date", "date_nanos"}:
                problems.append(f"{obj['id']}: {name} is {kind}, the time field needs date")
            elif use in {"agg", "geo", "time"} and kind not in AGGREGATABLE:
                problems.append(f"{obj['id']}: {name} is {kind}, which cannot be aggregated")
    assert not problems, "\n".join(problems)


def test_data_view_matches_the_default_index_names() -> None:
    (view,) = [o for o in saved_objects() if o["type"] == "index-pattern"]
    pattern = view["attributes"]["title"]
    index = datetime(2026, 2, 26, tzinfo=UTC).strftime(ElasticsearchSettings().index)
    assert fnmatch.fnmatchcase(index, pattern), (index, pattern)
