"""The files a deployment needs beside the program, carried in the package, and `export`.

Owns the table of those files (`KINDS`: Kibana dashboards, index template, systemd unit, HAProxy
configurations, Grafana dashboard, Prometheus alert rules) and reading them through
`importlib.resources`, so the same call works from a wheel, an editable install and a checkout.
`haproxy-receiver export KIND` (receiver/cli.py) prints or writes them, as `filebeat export`
does, so a host set up from the wheel alone has everything the README's guide installs.

Each file has one home in the repository: `dashboards/`, `deploy/systemd/` and `haproxy/` at
the top, the index template in `receiver/ship/`. This package's `dashboards`, `systemd` and
`haproxy` entries are symbolic links to those folders; building a wheel (or an sdist) follows
them and copies the files in, and an editable install reads through them. Nothing is kept
twice, and the wheel never depends on where a checkout is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable

import orjson

from receiver.config import ElasticsearchSettings


class AssetError(ValueError):
    """An unknown kind or configuration name; the message lists the allowed values."""


@dataclass(frozen=True, slots=True)
class Kind:
    """One kind of file `export` writes: where it lives in this package, what it is for."""

    name: str
    summary: str
    path: str  # under receiver/assets/; "" for the index template, built from the settings


KINDS: dict[str, Kind] = {kind.name: kind for kind in (
    Kind("kibana-dashboards", "Kibana saved objects (NDJSON: data view, searches, dashboard)",
         "dashboards/kibana/haproxy-receiver.ndjson"),
    Kind("index-template", "the composable index template `setup` installs, in the form every "
         "server takes (`ecs.version` a keyword; JSON; for indices, or the data stream --config "
         "names)", ""),
    Kind("systemd-unit", "the systemd service for the per-host role",
         "systemd/haproxy-receiver.service"),
    Kind("haproxy-config", "an HAProxy configuration sending to the receiver (--name)", "haproxy"),
    Kind("grafana-dashboard", "the Grafana dashboard over the receiver's metrics (JSON)",
         "dashboards/grafana/haproxy-receiver.json"),
    Kind("alert-rules", "Prometheus alerting rules (YAML, for rule_files)",
         "dashboards/prometheus/alerts.yml"),
    Kind("config", "a complete configuration file: every setting at its default, with its "
         "meaning (TOML, accepted by check-config as it is)", ""),
)}
HAPROXY_GUIDE = "README"  # `--name README`: haproxy/README.md, which configuration to choose


def _root() -> Traversable:
    return resources.files(__name__)


def kind(name: str) -> Kind:
    """The kind called `name`, or `AssetError` naming every allowed kind."""
    try:
        return KINDS[name]
    except KeyError:
        raise AssetError(f"unknown kind {name!r}; allowed: {', '.join(KINDS)}") from None


def haproxy_configs() -> dict[str, str]:
    """Name (file name without `.cfg`) -> the first sentence of its header comment, by name."""
    configs = {}
    for entry in _root().joinpath(KINDS["haproxy-config"].path).iterdir():
        if entry.name.endswith(".cfg"):
            configs[entry.name.removesuffix(".cfg")] = _first_sentence(entry.read_text("utf-8"))
    return dict(sorted(configs.items()))


def haproxy_config_listing() -> str:
    """One line per HAProxy configuration (name and summary), then the guide to choosing."""
    configs = haproxy_configs()
    width = max(map(len, configs))
    listing = "".join(f"  {config:<{width}}  {summary}\n" for config, summary in configs.items())
    return listing + f"  {HAPROXY_GUIDE:<{width}}  which one to choose (haproxy/README.md)\n"


def _first_sentence(config: str) -> str:
    paragraph = []
    for line in config.splitlines():
        text = line.removeprefix("#").strip()
        if not line.startswith("#") or not text:
            break
        paragraph.append(text)
    return re.split(r"[.:](?:\s|$)", " ".join(paragraph), maxsplit=1)[0]


def read(kind_name: str, name: str | None = None,
         elasticsearch: ElasticsearchSettings | None = None) -> bytes:
    """The bytes of one file of `kind_name`.

    `name` picks the HAProxy configuration (`haproxy_configs()`, or `README` for the guide to
    choosing one) and is refused for the other kinds. The index template is built for the
    `elasticsearch` settings (default ones when None): index pattern or data stream; `setup`
    adds the ILM policy name where the server has ILM.
    """
    chosen = kind(kind_name)
    if chosen.name == "haproxy-config":
        return _haproxy_config(name)
    if name is not None:
        raise AssetError(f"{chosen.name} has no --name (only haproxy-config has)")
    if chosen.name == "config":
        from receiver.config import config_toml

        return config_toml().encode()
    if chosen.name == "index-template":
        from receiver.ship.destination import fixed
        from receiver.ship.template import build_template

        template = build_template(fixed(elasticsearch or ElasticsearchSettings()), None)
        return orjson.dumps(template, option=orjson.OPT_INDENT_2) + b"\n"
    return _root().joinpath(chosen.path).read_bytes()


def _haproxy_config(name: str | None) -> bytes:
    folder = _root().joinpath(KINDS["haproxy-config"].path)
    if name == HAPROXY_GUIDE:
        return folder.joinpath("README.md").read_bytes()
    if name is None:  # what there is to choose from
        return f"haproxy-config --name NAME, one of:\n{haproxy_config_listing()}".encode()
    if name not in haproxy_configs():
        raise AssetError(f"haproxy-config has no configuration {name!r}, one of:\n"
                         + haproxy_config_listing().rstrip("\n"))
    return folder.joinpath(f"{name}.cfg").read_bytes()
