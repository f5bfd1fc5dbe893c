"""Where documents go: a data stream, or daily indices (`elasticsearch.destination`).

A data stream is what today's Elasticsearch expects of logs: one name to write to, backing
indices that roll over by size and age under a lifecycle policy, no index per day to create
and delete. `auto` (the default) writes to `elasticsearch.data_stream` where the server has
data streams and to the daily indices of `elasticsearch.index` where it has not:

- Elasticsearch: from 7.9 (data streams came with 7.9); 7.0-7.8 get daily indices.
- OpenSearch has them since 1.0, but an OpenSearch-compatible server may not (osmem, the
  test server, refuses them): the data stream is created (`PUT /_data_stream/<name>`, after
  its index template where `setup_on_start` installs it) and a refusal as unsupported means
  daily indices (the template made for the data stream is removed again).

Every part that names the target (the bulk encoder, `setup`, `test output`) takes the settings
from `resolve()`: `data_stream` is then the data stream to write, or empty for indices. (Read
without a server, as by `export index-template`, `auto` means what the settings say: indices
unless `data_stream` names one.)

The receive-time window (`parse.max_future`/`max_past`) keeps a sender's dates from creating
an index for any day it likes: it applies where index names carry the date
(`window_applies`), not to a data stream, whose backing indices do not depend on the event's
time.
"""

from __future__ import annotations

import dataclasses
import logging
import weakref
from typing import TYPE_CHECKING, Any

from receiver.config import ElasticsearchSettings, ParseSettings, Seconds

if TYPE_CHECKING:
    from receiver.ship.elasticsearch import ElasticsearchOutput

log = logging.getLogger(__name__)

DATA_STREAMS_SINCE = (7, 9)  # Elasticsearch


DEFAULT_DATA_STREAM = "logs-haproxy-default"  # `elasticsearch.data_stream` left empty


def fixed(settings: ElasticsearchSettings) -> ElasticsearchSettings:
    """The choice the settings make without a server: `index` means indices, `data_stream`
    the data stream (named, or `DEFAULT_DATA_STREAM`); `auto` is left as the settings read
    (indices unless `data_stream` names one), which is what `resolve` refines."""
    if settings.destination == "index":
        return _indices(settings)
    if settings.destination == "data_stream":
        return _stream(settings)
    return settings


# Per output (one server): the settings asked about and the answer; asked once.
_resolved: weakref.WeakKeyDictionary[ElasticsearchOutput, tuple[ElasticsearchSettings,
                                                                ElasticsearchSettings]]
_resolved = weakref.WeakKeyDictionary()


def resolve(output: ElasticsearchOutput, settings: ElasticsearchSettings) -> ElasticsearchSettings:
    """The settings for this server: `data_stream` set to the data stream to write, or empty
    for the daily indices. May raise OutputUnavailable/OutputError (the server is not there)."""
    if settings.destination != "auto":
        return fixed(settings)
    known = _known(output, settings)
    if known is not None:
        return known
    answer = _ask(output, settings, _stream(settings))
    _resolved[output] = (settings, answer)
    return answer


def _ask(output: ElasticsearchOutput, settings: ElasticsearchSettings,
         chosen: ElasticsearchSettings) -> ElasticsearchSettings:
    server = output.probe()
    if server.flavor == "elasticsearch":
        if (server.major, server.minor) >= DATA_STREAMS_SINCE:
            return chosen
        log.info("output: %s has no data streams: daily indices %s", server.describe(),
                 settings.index)
        return _indices(settings)
    if _creates_data_stream(output, chosen):
        return chosen
    log.info("output: %s refuses data streams: daily indices %s instead of %s",
             server.describe(), settings.index, chosen.data_stream)
    return _indices(settings)


def expected(output: ElasticsearchOutput, settings: ElasticsearchSettings) -> ElasticsearchSettings:
    """`resolve`'s answer as far as it is known without changing the server (`test output`):
    Elasticsearch by its version; on OpenSearch `auto` expects the data stream, which `run`
    confirms at start by creating it."""
    if settings.destination != "auto":
        return fixed(settings)
    known = _known(output, settings)
    if known is not None:
        return known
    server = output.probe()
    if server.flavor == "elasticsearch" and (server.major, server.minor) < DATA_STREAMS_SINCE:
        return _indices(settings)
    return _stream(settings)


def _known(output: ElasticsearchOutput,
           settings: ElasticsearchSettings) -> ElasticsearchSettings | None:
    """What `resolve` already answered for this output and these settings, if it did."""
    asked = _resolved.get(output)
    return asked[1] if asked is not None and asked[0] == settings else None


def window_applies(settings: ElasticsearchSettings) -> bool:
    """Whether index names depend on the event's date (then the receive-time window keeps
    a forged or broken date from creating an index for it)."""
    return not settings.data_stream and "%" in settings.index


def parse_settings_for(settings: ElasticsearchSettings, parse: ParseSettings) -> ParseSettings:
    """`parse` with the receive-time window lifted where it protects nothing (`window_applies`)."""
    if window_applies(settings):
        return parse
    return dataclasses.replace(parse, max_future=Seconds(0), max_past=Seconds(0))


def _stream(settings: ElasticsearchSettings) -> ElasticsearchSettings:
    if settings.data_stream:
        return settings
    return dataclasses.replace(settings, data_stream=DEFAULT_DATA_STREAM)


def _indices(settings: ElasticsearchSettings) -> ElasticsearchSettings:
    return dataclasses.replace(settings, data_stream="") if settings.data_stream else settings


def _creates_data_stream(output: ElasticsearchOutput, settings: ElasticsearchSettings) -> bool:
    """Whether the server has (or now made) the data stream; False only when it refuses data
    streams as such. Its index template goes first when `setup_on_start` (a data stream needs
    one that matches its name)."""
    from receiver.ship.template import ensure_template, remove_template

    name = settings.data_stream
    status, body = output.request("GET", f"/_data_stream/{name}")
    if status == 200 and isinstance(body, dict) and body.get("data_streams"):
        return True
    for _attempt in range(_TEMPLATE_VANISHED_ATTEMPTS):
        installed = False
        if settings.setup_on_start:
            installed = ensure_template(output, settings, settings.template_overwrite).changed
        status, body = output.request("PUT", f"/_data_stream/{name}")
        # The template was there (found or just installed) and is not now: another worker of
        # ours, refused, removed the one it installed (or took for its own) between our look and
        # our PUT. Asking again gets the server's own answer (taken as "writing anyway", every
        # event was dead-lettered on such a server).
        if not (settings.setup_on_start and _no_matching_template(body)):
            break
    if status == 200 or _error_type(body) == "resource_already_exists_exception":
        return True
    if not _unsupported(status, body):
        log.warning("output: creating data stream %s answered HTTP %d (%s); writing to it "
                    "anyway (the first document creates it where a template matches)",
                    name, status, output.redact(str(_error_type(body) or body))[:200])
        return True
    if installed:
        remove_template(output, settings)
    return False


_TEMPLATE_VANISHED_ATTEMPTS = 3


def _no_matching_template(body: Any) -> bool:
    return "no matching index template" in str(body)


def _error_type(body: Any) -> str:
    error = body.get("error") if isinstance(body, dict) else None
    return str(error.get("type", "")) if isinstance(error, dict) else ""


def _unsupported(status: int, body: Any) -> bool:
    """The answer of a server without data streams: no such endpoint, or refused as such."""
    if status in (404, 405, 501) and _error_type(body) in ("", "illegal_argument_exception"):
        return True
    text = str(body).lower()
    return status >= 400 and ("not supported" in text or "no handler found" in text
                              or _error_type(body) == "unsupported_operation_exception")
