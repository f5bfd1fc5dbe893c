"""`haproxy-receiver setup`: the index template (and ILM policy) for our documents.

The mappings live in the package data file `index-template.json`; this module fills in what
depends on the settings and the server (index pattern, data stream, ILM policy name) and
installs it idempotently: it reads what the server has and PUTs only when that differs, so a
second run changes nothing. ILM exists only on Elasticsearch; on OpenSearch it says so and goes
on (OpenSearch's ISM is configured separately).
"""

from __future__ import annotations

import copy
import json
import logging
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

from receiver.config import ElasticsearchSettings
from receiver.ship.elasticsearch import ElasticsearchOutput, ServerInfo

log = logging.getLogger(__name__)

TEMPLATE_FILE = "index-template.json"
POLICY_NAME = "haproxy-receiver"
TEMPLATE_PRIORITY = 200  # above Elasticsearch's built-in `logs-*-*` template (100)


def load_template_file() -> dict[str, Any]:
    text = resources.files("receiver.ship").joinpath(TEMPLATE_FILE).read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    data.pop("_comment", None)
    return data


def index_pattern(settings: ElasticsearchSettings) -> str:
    """The pattern our indices match: data stream name, or the index up to its first variable."""
    if settings.data_stream:
        return settings.data_stream
    index = settings.index
    cut = min((i for i in (index.find("%"), index.find("{")) if i >= 0), default=-1)
    return index if cut < 0 else index[:cut] + "*"


def template_name(settings: ElasticsearchSettings) -> str:
    stem = index_pattern(settings).rstrip("*-_.").lower()
    stem = re.sub(r"[^a-z0-9_.-]", "_", stem)
    return "haproxy-receiver" if stem in ("", "haproxy") else f"haproxy-receiver-{stem}"


def build_template(settings: ElasticsearchSettings, server: ServerInfo | None) -> dict[str, Any]:
    """The composable index template for these settings on this server."""
    template = load_template_file()
    if server is None or not has_constant_keyword(server):
        _constant_keywords_as_keywords(template["template"]["mappings"])
    template["index_patterns"] = [index_pattern(settings)]
    template["priority"] = TEMPLATE_PRIORITY
    if settings.data_stream:
        template["data_stream"] = {}
    if server is not None and server.has_ilm:
        index_settings = template["template"].setdefault("settings", {}).setdefault("index", {})
        index_settings["lifecycle"] = {"name": POLICY_NAME}
    return template


def has_constant_keyword(server: ServerInfo) -> bool:
    """`constant_keyword` exists since Elasticsearch 7.7 and OpenSearch 2.14."""
    version = (server.major, server.minor)
    if server.flavor == "elasticsearch":
        return version >= (7, 7)
    return server.flavor == "opensearch" and version >= (2, 14)


def _constant_keywords_as_keywords(mapping: dict[str, Any]) -> None:
    """Where `constant_keyword` is unknown: plain `keyword`, without its value (`ecs.version`
    is then absent from those indices; every other field is the same)."""
    for field in mapping.get("properties", {}).values():
        if field.get("type") == "constant_keyword":
            field.clear()
            field["type"] = "keyword"
        else:
            _constant_keywords_as_keywords(field)


def build_policy(settings: ElasticsearchSettings, server: ServerInfo) -> dict[str, Any]:
    """ILM policy: rollover (data streams only: dated indices roll by name) and delete."""
    phases: dict[str, Any] = {
        "delete": {
            "min_age": f"{settings.ilm_delete_after_days}d",
            "actions": {"delete": {}},
        }
    }
    if settings.data_stream:
        size_key = "max_primary_shard_size" if (server.major, server.minor) >= (7, 13) else "max_size"
        phases["hot"] = {
            "min_age": "0ms",
            "actions": {"rollover": {size_key: "50gb", "max_age": "1d"}},
        }
    return {"policy": {"phases": phases, "_meta": {"managed_by": "haproxy-receiver"}}}


def contains(have: Any, want: Any) -> bool:
    """True when `have` holds everything in `want` (servers add defaults and stringify)."""
    if isinstance(want, dict):
        return isinstance(have, dict) and all(
            key in have and contains(have[key], value) for key, value in want.items()
        )
    if isinstance(want, list):
        return (isinstance(have, list) and len(have) == len(want)
                and all(contains(h, w) for h, w in zip(have, want, strict=True)))
    if isinstance(want, bool) or isinstance(have, bool):
        return str(want).lower() == str(have).lower()
    return want == have or str(want) == str(have)


@dataclass(frozen=True, slots=True)
class SetupStep:
    what: str
    changed: bool
    note: str = ""

    def __str__(self) -> str:
        return f"{self.what}: {self.note}"


class SetupError(Exception):
    """The server refused a setup request; the message says which and why."""


def install(output: ElasticsearchOutput, settings: ElasticsearchSettings,
            overwrite: bool = True) -> list[SetupStep]:
    """Install the ILM policy (where supported) and the index template for `settings`, with
    where documents go already decided for this server (`setup.setup` decides, then calls
    this); idempotent. Without `overwrite`, one that differs is left as it is (a warning says
    so)."""
    server = output.probe()
    steps: list[SetupStep] = []
    if server.has_ilm:
        steps.append(_ensure(
            output, f"/_ilm/policy/{POLICY_NAME}", build_policy(settings, server),
            f"ILM policy {POLICY_NAME}",
            lambda body: (body or {}).get(POLICY_NAME, {}) if isinstance(body, dict) else None,
            overwrite,
        ))
    else:
        steps.append(SetupStep(
            "ILM policy", False,
            f"skipped: {server.describe()} has no ILM (delete old indices with an OpenSearch "
            "ISM policy)",
        ))
    steps.append(_ensure(output, *_template_target(settings, server), overwrite))
    return steps


def ensure_template(output: ElasticsearchOutput, settings: ElasticsearchSettings,
                    overwrite: bool) -> SetupStep:
    """The index template alone, for `settings` as they are (not resolved)."""
    return _ensure(output, *_template_target(settings, output.probe()), overwrite)


def remove_template(output: ElasticsearchOutput, settings: ElasticsearchSettings) -> None:
    """Delete the index template `settings` name (one `ensure_template` just made in vain)."""
    path, _desired, what, _extract = _template_target(settings, output.probe())
    status, body = output.request("DELETE", path)
    if status not in (200, 404):
        log.warning("removing %s failed: HTTP %d: %s", what, status, _text(body))


def template_state(output: ElasticsearchOutput, settings: ElasticsearchSettings) -> tuple[str, str]:
    """(what, state) of our index template on the server for `settings` as decided for it
    (`destination.expected`): state is "up to date", "missing" or "outdated" (`setup` would
    change it). Raises SetupError when it cannot be read."""
    path, desired, what, extract = _template_target(settings, output.probe())
    matches = _matches(output, path, desired, what, extract)
    return what, "missing" if matches is None else "up to date" if matches else "outdated"


def _template_target(
    settings: ElasticsearchSettings, server: ServerInfo,
) -> tuple[str, dict[str, Any], str, Any]:
    """(path, desired body, name for messages, how to find it in a GET answer)."""
    name = template_name(settings)
    template = build_template(settings, server)
    if server.has_composable_templates:
        return (f"/_index_template/{name}", template, f"index template {name}",
                _composable_from_get)
    legacy = {
        "index_patterns": template["index_patterns"],
        "order": TEMPLATE_PRIORITY,
        **copy.deepcopy(template["template"]),
    }
    return (f"/_template/{name}", legacy, f"legacy index template {name}",
            lambda body: (body or {}).get(name) if isinstance(body, dict) else None)


def _composable_from_get(body: Any) -> Any:
    if not isinstance(body, dict):
        return None
    for entry in body.get("index_templates") or []:
        if isinstance(entry, dict) and "index_template" in entry:
            return entry["index_template"]
    return None


def _ensure(
    output: ElasticsearchOutput, path: str, desired: dict[str, Any], what: str,
    extract: Any, overwrite: bool = True,
) -> SetupStep:
    matches = _matches(output, path, desired, what, extract)
    if matches:
        return SetupStep(what, False, "already up to date")
    if matches is False and not overwrite:
        note = ("differs from this version's and was left as it is (set "
                "elasticsearch.template_overwrite, or run `haproxy-receiver setup`, to replace it)")
        log.warning("%s %s", what, note)
        return SetupStep(what, False, note)
    done = "installed" if matches is None else "updated"
    status, body = output.request("PUT", path, desired)
    if status not in (200, 201):
        raise SetupError(f"installing {what} failed: HTTP {status}: {_text(body)}")
    return SetupStep(what, True, done)


def _matches(
    output: ElasticsearchOutput, path: str, desired: dict[str, Any], what: str, extract: Any,
) -> bool | None:
    """Whether the server's copy at `path` holds everything in `desired`; None: it has none."""
    status, body = output.request("GET", path)
    if status == 404:
        return None
    if status != 200:
        raise SetupError(f"reading {what} failed: HTTP {status}: {_text(body)}")
    return contains(extract(body), desired)


def _text(body: Any) -> str:
    if isinstance(body, dict):
        return json.dumps(body.get("error", body))[:500]
    if isinstance(body, bytes):
        return body.decode("utf-8", "replace")[:500]
    return str(body)[:500]
