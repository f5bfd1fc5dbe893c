"""`haproxy-receiver test output`: check, before going live, what `run` will need of its output.

With the same settings as `run`, for every host of `elasticsearch.hosts` (or the `cloud_id`'s)
on its own: it connects (TLS and proxy as `run` does), names the server and its version, checks
the credentials, and where the server has a security API (`_security/user/_has_privileges`)
whether they allow what `run` does: bulk `create` into the configured index pattern or data
stream, creating the daily index or the data stream (`auto_configure`), and, with
`setup_on_start`, installing the template. Then whether the index template is installed and up
to date. A server without security (OpenSearch without its plugin, osmem-server, Elasticsearch
with security off) is named as such, not failed.

Each finding is one line: `ok`, `--` (could not be checked, not a failure) or `FAIL` with what
to fix. The exit status is 0 when nothing failed, 1 otherwise; every text is redacted.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from receiver.config import ElasticsearchSettings
from receiver.ship.destination import expected
from receiver.ship.elasticsearch import ElasticsearchOutput, ServerInfo
from receiver.ship.errors import OutputError, OutputUnavailable
from receiver.ship.template import SetupError, index_pattern, template_state

Say = Callable[[str], None]
OK, SKIP, FAIL = "ok  ", "--  ", "FAIL"
CREDENTIALS = "elasticsearch.username/password, api_key or bearer_token"


def run_output_check(settings: ElasticsearchSettings, say: Say = print) -> int:
    """Check every host; 0 when all is well, 1 when something must be fixed."""
    if not settings.hosts:
        say(f"{FAIL} no output configured: set elasticsearch.hosts or elasticsearch.cloud_id "
            "(without them `run` prints documents on stdout)")
        return 1
    failures = 0
    for host in settings.hosts:
        try:
            output = ElasticsearchOutput(dataclasses.replace(settings, hosts=[host]))
        except OutputError as error:  # a TLS file that cannot be read: the same for every host
            say(f"{FAIL} {error}")
            return 1
        try:
            say(output.urls[0])
            failures += _check_host(output, settings, lambda line: say("  " + line))
        finally:
            output.close()
    hosts = f"{len(settings.hosts)} host{'s' if len(settings.hosts) > 1 else ''}"
    if failures:
        say(f"output test failed: {failures} problem{'s' if failures > 1 else ''} on {hosts}; "
            "fix the FAIL lines above")
        return 1
    say(f"output ok: {hosts} ready for `run`")
    return 0


def _check_host(output: ElasticsearchOutput, settings: ElasticsearchSettings, say: Say) -> int:
    """The findings of one host; returns the number of failures."""
    try:
        server = output.probe()
    except OutputUnavailable as error:
        say(f"{FAIL} {error}; check elasticsearch.hosts, the network, the proxy "
            "(elasticsearch.proxy, HTTPS_PROXY) and the TLS settings")
        return 1
    except OutputError as error:
        say(f"{FAIL} {error}")
        return 1
    if server.flavor == "unknown":
        say(f"{SKIP} the server hides its version (`GET /` answered 403: no `monitor` "
            "privilege); `run` works with plain JSON media types")
    else:
        say(f"{OK} {server.describe()}")
    if settings.destination == "auto" and server.flavor != "elasticsearch":
        say(f"{SKIP} documents go to data stream {expected(output, settings).data_stream} if "
            f"this server accepts one, else to daily indices {settings.index}: `run` asks at "
            "start (checked below for the data stream)")
    failures = _check_privileges(output, settings, server, say)
    return failures + _check_template(output, settings, say)


def _check_privileges(output: ElasticsearchOutput, settings: ElasticsearchSettings,
                      server: ServerInfo, say: Say) -> int:
    if server.flavor == "opensearch":
        return _check_opensearch_user(output, say)
    status, body = output.request("GET", "/_security/_authenticate")
    if status == 401:
        say(f"{FAIL} the credentials are refused (HTTP 401): fix {CREDENTIALS}")
        return 1
    if status != 200:
        say(f"{SKIP} no security API on this server ({_reason(output, status, body)}): "
            "credentials and privileges not checked")
        return 0
    user = body.get("username", "?") if isinstance(body, dict) else "?"
    say(f"{OK} authenticated as {user}")
    target = index_pattern(expected(output, settings))
    index_privileges = ["create_doc", "auto_configure"]
    cluster = ["manage_index_templates"] if settings.setup_on_start else []
    if settings.setup_on_start and server.has_ilm:
        cluster.append("manage_ilm")
    status, body = output.request("POST", "/_security/user/_has_privileges", {
        "cluster": cluster, "index": [{"names": [target], "privileges": index_privileges}],
    })
    if status != 200 or not isinstance(body, dict):
        say(f"{FAIL} cannot check the privileges of {user}: {_reason(output, status, body)}")
        return 1
    missing = [name for name, granted in (body.get("cluster") or {}).items() if not granted]
    missing += [f"{name} on {target}" for name, granted
                in ((body.get("index") or {}).get(target) or {}).items() if not granted]
    if missing or body.get("has_all_requested") is False:
        say(f"{FAIL} {user} lacks what `run` needs: {', '.join(missing) or 'some privileges'}; "
            f"grant a role with index privileges {' and '.join(index_privileges)} on {target}"
            + (f" and cluster privileges {', '.join(cluster)}" if cluster else ""))
        return 1
    say(f"{OK} {user} may create documents in {target}"
        + (f" and install the template ({', '.join(cluster)})" if cluster else ""))
    return 0


def _check_opensearch_user(output: ElasticsearchOutput, say: Say) -> int:
    status, body = output.request("GET", "/_plugins/_security/authinfo")
    if status == 401:
        say(f"{FAIL} the credentials are refused (HTTP 401): fix {CREDENTIALS}")
        return 1
    if status != 200 or not isinstance(body, dict):
        say(f"{SKIP} no security plugin on this server ({_reason(output, status, body)}): credentials "
            "and privileges not checked")
        return 0
    say(f"{SKIP} authenticated as {body.get('user_name', '?')} (roles: "
        f"{', '.join(map(str, body.get('roles') or [])) or 'none'}); OpenSearch has no API to "
        "check privileges ahead: refusals show as HTTP 403 in `run`'s log")
    return 0


def _check_template(output: ElasticsearchOutput, settings: ElasticsearchSettings, say: Say) -> int:
    try:
        what, state = template_state(output, expected(output, settings))
    except (SetupError, OutputError) as error:
        say(f"{SKIP} index template not checked: {output.redact(str(error))}")
        return 0
    if state == "up to date":
        say(f"{OK} {what} installed and up to date")
        return 0
    if settings.setup_on_start:
        say(f"{OK} {what} {state}: `run` installs it at start (setup_on_start)")
        return 0
    say(f"{FAIL} {what} {state}: run `haproxy-receiver setup` (or set "
        "elasticsearch.setup_on_start), else documents get dynamic mappings")
    return 1


def _reason(output: ElasticsearchOutput, status: int, body: Any) -> str:
    """The server's refusal in a few words, redacted."""
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            error = error.get("reason") or error.get("type")
        if error:
            return output.redact(f"HTTP {status}: {str(error)[:200]}")
    return f"HTTP {status}"
