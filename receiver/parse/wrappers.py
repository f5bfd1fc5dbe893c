"""What container tooling and orchestrators put around a line, peeled before the syslog header.

Owns recognising each wrapper by its whole shape (a prefix is peeled only when every part of it
has its shape: nothing is guessed), writing what it names into the document, and returning the
line inside, which the header parser then reads exactly as if it had arrived over syslog. The
parser calls `peel` for every message that does not start with `<PRI>`, so lines read live and
lines imported from files get the same treatment. Wrappers may nest (output of one tool saved
and shown by another): up to `_MAX_LAYERS` are peeled, outermost first, and named in that
order in `haproxy.wrapper`.

| wrapper          | shape                                                      |
|------------------|------------------------------------------------------------|
| `kubectl`        | `[pod/NAME/CONTAINER] ` (`kubectl logs --prefix`)          |
| `docker-service` | `SERVICE.SLOT.TASKID@NODE    \\| ` (`docker service logs`) |
| `compose`        | `PROJECT-SERVICE-1  \\| ` (`docker compose logs`)          |
| `docker-json`    | `{"log":"…\\n","stream":"stderr","time":"…"}` (json-file)  |
| `cri`            | `2026-11-25T18:21:08.123456789Z stderr F …` (CRI files)    |
| `timestamps`     | `2026-11-25T18:21:08.123456789Z <134>…` (`logs --timestamps`) |

`kubectl` and `docker-service` name the pod or task in `orchestrator.*` and the container in
`container.name` (`docker-service` also the node, in `host.name`); `compose` names the
container; `docker-json` and `cri` name the stream (`stdout`, `stderr`) in `haproxy.stream`.

A timestamp the wrapper carries (`--timestamps`, json-file's `time`, CRI's) is returned beside
the line: it stamps the event only when neither the body nor the inner header has a date.

CRI `P` (partial) records are the pieces of a line longer than the runtime's buffer (16 KiB),
the last piece written as `F`. Pieces are not joined: a message is parsed on its own, and
pieces of one line need not even reach the same worker. Each piece is read as it is (the first
one reads like a line cut by HAProxy's `len`: what is whole is kept), and tagged
`_partial_line` so the pieces can be found.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from receiver.parse.syslog import HOST as _HOST
from receiver.parse.syslog import host_tag_after
from receiver.parse.timestamps import MONTHS

WRAPPER = "haproxy.wrapper"  # the wrappers peeled, outermost first
STREAM = "haproxy.stream"  # stdout or stderr, when the wrapper says
TAG_PARTIAL = "_partial_line"
_MAX_LAYERS = 3

_ORCHESTRATOR_TYPE = "orchestrator.type"
_RESOURCE_TYPE = "orchestrator.resource.type"
_RESOURCE_NAME = "orchestrator.resource.name"
_RESOURCE_ID = "orchestrator.resource.id"
_CONTAINER = "container.name"

# RFC 3339 with a fraction of up to nine digits and a zone: what Docker, kubectl and CRI write.
_RFC3339 = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:Z|[+-]\d\d:\d\d)"
# Kubernetes names: DNS labels and subdomains.
_KUBECTL = re.compile(r"\[pod/([a-z0-9][a-z0-9.-]{0,252})/([a-z0-9][a-z0-9-]{0,62})\] ")
# `docker service logs`: SERVICE.SLOT.TASKID@NODE (SLOT is the node's id for a global service;
# TASKID cut to 12 characters unless --no-trunc; with --no-task-ids there is none), padded to
# a column, then `| `.
_DOCKER_SERVICE = re.compile(
    r"([A-Za-z0-9][A-Za-z0-9_.-]{0,62}?)\.(\d{1,6}|[a-z0-9]{25})(?:\.([a-z0-9]{12}|[a-z0-9]{25}))?"
    r"@([A-Za-z0-9][A-Za-z0-9_.-]{0,252}) +\| ")
# `docker compose logs` (and docker-compose's): a container name that ends with its replica
# number (`proj-web-1`, `proj_web_1`, docker-compose 1's `web_1_3e1d962649bf`), then ` | `.
_COMPOSE = re.compile(r"([A-Za-z0-9][A-Za-z0-9_.-]{0,200}?[-_]\d{1,4}(?:_[0-9a-f]{12})?) +\| ")
_CRI = re.compile(rf"({_RFC3339}) (stdout|stderr) ([FP]) ")
# `docker logs --timestamps` / `kubectl logs --timestamps` alone: an RFC 3339 date, then a line
# with a header of its own (`<PRI>`, a BSD or Go date, a bare `name[pid]:` tag, an RFC 3339
# date with `host tag:`). A date then anything else is the `iso`/`iso-file` header the header
# parser reads.
_OWN_HEADER = re.compile(
    r"<\d{1,3}>|[A-Z][a-z]{2} [ \d]?\d \d\d:\d\d:\d\d |\d{4}/\d\d/\d\d \d\d:\d\d:\d\d "
    r"|[A-Za-z][A-Za-z0-9_./-]{0,63}\[\d{1,10}\]: ")
_ISO_DATE = re.compile(rf"{_RFC3339} ")
# A timestamp written by `--timestamps` between a prefix and the line (the line's own header,
# if it has one, follows it).
_TIMESTAMP = re.compile(rf"({_RFC3339}) ")
_RFC3339_WHOLE = re.compile(_RFC3339)
_LABEL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_JSON_FILE_KEYS = frozenset(("log", "stream", "time", "attrs"))


class Peeled:
    """The line inside its wrappers, the wrappers' date (RFC 3339, or ""), and tags."""

    __slots__ = ("date", "tags", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.date = ""
        self.tags: list[str] = []


def peel(text: str, doc: dict[str, Any]) -> Peeled | None:
    """The line inside the wrappers around `text`, or None when there are none (the usual
    case: a line that starts with `<` is never wrapped, and costs one comparison)."""
    if not _may_be_wrapped(text):
        return None
    peeled = Peeled(text)
    names: list[str] = []
    for _ in range(_MAX_LAYERS):
        name = _peel_one(peeled, doc)
        if name is None:
            break
        names.append(name)
    if not names:
        return None
    doc[WRAPPER] = names
    return peeled


def _may_be_wrapped(text: str) -> bool:
    """False, after a few comparisons, for a line no wrapper can be around (a log file's line,
    an `iso` header, a bare body: what is read most); True when one may be."""
    first = text[:1]
    if first == "<" or not first:
        return False
    if first == "[":
        return text.startswith("[pod/")
    if first == "{":
        return text.startswith('{"log":')
    if first.isdigit():
        if text[4:5] != "-":
            return False
        space = text.find(" ", 19, 40)
        if space < 0:
            return False
        after = text[space + 1 : space + 8]
        if after in ("stdout ", "stderr ") or after[:1] == "<" or after[:1].isdigit() or after[
                :3] in MONTHS:
            return True
        end = text.find(" ", space + 1, space + 80)  # a bare `name[pid]: ` tag next?
        return end > 0 and text[end - 2 : end] == "]:"
    # A container's or task's name is padded to a column before its `| `.
    space = text.find(" ", 0, 300)
    return space > 0 and text[space + 1 : space + 2] in (" ", "|") and text.find(
        " | ", space - 1, 300) >= 0


def _peel_one(peeled: Peeled, doc: dict[str, Any]) -> str | None:
    """Peel one wrapper off `peeled.text` (writing what it names into `doc`); its name, or
    None when the text is not inside one."""
    text = peeled.text
    first = text[:1]
    if first == "<" or not first:
        return None
    if first == "[":
        match = _KUBECTL.match(text)
        if match is None:
            return None
        doc[_ORCHESTRATOR_TYPE] = "kubernetes"
        doc[_RESOURCE_TYPE] = "pod"
        doc[_RESOURCE_NAME] = match[1]
        doc[_CONTAINER] = match[2]
        peeled.text = _after_timestamp(text[match.end() :], peeled)
        return "kubectl"
    if first == "{":
        return _docker_json(text, doc, peeled)
    if first.isdigit():
        if text[4:5] != "-":
            return None
        match = _CRI.match(text)
        if match is None:
            match = _TIMESTAMP.match(text)
            if match is None or not _has_own_header(text, match.end()):
                return None
            peeled.text = text[match.end() :]
            peeled.date = peeled.date or match[1]
            return "timestamps"
        peeled.text = text[match.end() :]
        peeled.date = peeled.date or match[1]
        doc[STREAM] = match[2]
        if match[3] == "P":
            peeled.tags.append(TAG_PARTIAL)
        return "cri"
    bar = text.find(" | ", 0, 300)
    if bar < 0:
        return None
    match = _DOCKER_SERVICE.match(text)
    if match is not None and match.end() == bar + 3:
        doc[_ORCHESTRATOR_TYPE] = "swarm"
        doc[_RESOURCE_TYPE] = "task"
        task = f"{match[1]}.{match[2]}" + (f".{match[3]}" if match[3] else "")
        doc[_RESOURCE_NAME] = task
        if match[3]:
            doc[_RESOURCE_ID] = match[3]
            doc[_CONTAINER] = task
        doc[_HOST] = match[4]
        peeled.text = _after_timestamp(text[match.end() :], peeled)
        return "docker-service"
    match = _COMPOSE.match(text)
    if match is not None and match.end() == bar + 3:
        doc[_CONTAINER] = match[1]
        peeled.text = _after_timestamp(text[match.end() :], peeled)
        return "compose"
    return None


def _has_own_header(text: str, at: int) -> bool:
    """Whether the line from `at` starts with a header of its own."""
    if _OWN_HEADER.match(text, at) is not None:
        return True
    date = _ISO_DATE.match(text, at)
    return date is not None and host_tag_after(text, date.end() - 1) is not None


def _after_timestamp(rest: str, peeled: Peeled) -> str:
    """`rest` without the `--timestamps` date in front (kept as the wrappers' date)."""
    if rest[:1].isdigit():
        match = _TIMESTAMP.match(rest)
        # Without `--timestamps`, a log file's `DATE host tag: ` line is the line itself.
        if match is not None and host_tag_after(rest, match.end() - 1) is None:
            peeled.date = peeled.date or match[1]
            return rest[match.end() :]
    return rest


def _docker_json(text: str, doc: dict[str, Any], peeled: Peeled) -> str | None:
    """A Docker json-file record: exactly the keys `log`, `stream`, `time` (and `attrs`, what
    `--log-opt labels/env` add), with their types; any other JSON is not one."""
    if not text.startswith('{"log":'):
        return None
    try:
        record = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    if type(record) is not dict or not record.keys() <= _JSON_FILE_KEYS:
        return None
    line, stream, time = record.get("log"), record.get("stream"), record.get("time")
    if type(line) is not str or stream not in ("stdout", "stderr") or type(time) is not str:
        return None
    if _RFC3339_WHOLE.fullmatch(time) is None:
        return None
    peeled.text = line.rstrip("\r\n")
    peeled.date = peeled.date or time
    doc[STREAM] = stream
    attrs = record.get("attrs")
    if type(attrs) is dict:
        for key, value in attrs.items():
            # A name with a dot would be an object in Elasticsearch: such labels are left out.
            if type(value) is str and _LABEL_NAME.fullmatch(key):
                doc[f"container.labels.{key}"] = value
    return "docker-json"
