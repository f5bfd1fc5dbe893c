"""The `haproxy-receiver` command line (typer). Commands only translate flags into settings and
call the module that owns the behaviour; exit status 2 means a wrong setting or usage."""

from __future__ import annotations

import faulthandler
import logging
import os
import sys
import time
import typing
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from receiver import __version__
from receiver.assets import KINDS, AssetError, read
from receiver.config import (
    CONFIG_ENV,
    DEFAULT_CONFIG_FILE,
    ConfigError,
    Settings,
    config_file,
    load_settings,
    redacted,
    reference_markdown,
    sections,
)
from receiver.logs import setup_logging

app = typer.Typer(
    name="haproxy-receiver",
    help="Receive HAProxy syslog, parse it into typed documents, spool it, ship it to Elasticsearch.",
    no_args_is_help=True,
    # Plain help: the rich one labels every flag `<bool>` (typer 0.29) and boxes it in.
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)
spool_app = typer.Typer(help="Inspect the spool (safe while the receiver runs).", no_args_is_help=True,
                        rich_markup_mode=None)
app.add_typer(spool_app, name="spool")
test_app = typer.Typer(help="Check what `run` needs before going live.", no_args_is_help=True,
                       rich_markup_mode=None)
app.add_typer(test_app, name="test")

ConfigOption = Annotated[Path | None, typer.Option(
    "--config", "-c", metavar="FILE", show_default=False,
    help=f"TOML configuration file (default: ${CONFIG_ENV}, else {DEFAULT_CONFIG_FILE} when it "
         "exists, else the built-in defaults).")]


def _allowed(section: str, key: str) -> list[str]:
    """The values a `Literal` setting allows (for shell completion), from its one declaration."""
    return [str(value) for value in typing.get_args(typing.get_type_hints(sections()[section])[key])]


LogLevelOption = Annotated[str | None, typer.Option(
    metavar="LEVEL", autocompletion=lambda: _allowed("service", "log_level"),
    help="debug, info, warning or error (service.log_level).")]
LogFormatOption = Annotated[str | None, typer.Option(
    metavar="FORMAT", autocompletion=lambda: _allowed("service", "log_format"),
    help="text, or json for ECS-shaped lines (service.log_format).")]
log = logging.getLogger("receiver")


def _version(show: bool) -> None:
    if show:
        typer.echo(f"haproxy-receiver {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    """Receive HAProxy syslog, parse it into typed documents, spool it, ship it to Elasticsearch."""


def _loader(config: Path | None, overrides: dict[str, Any]) -> Callable[[], Settings]:
    """Reads the settings from the file, the environment and these flags (raises ConfigError):
    at start, and again at each reload (SIGHUP)."""
    given = {key: _empty_means_none(value) for key, value in overrides.items() if value is not None}
    return lambda: load_settings(config_file(config), overrides=given)


def _settings(config: Path | None, overrides: dict[str, Any]) -> Settings:
    """Load and validate settings; a wrong one ends the program with status 2."""
    try:
        return _loader(config, overrides)()
    except ConfigError as error:
        typer.echo(f"haproxy-receiver: configuration error: {error}", err=True)
        raise typer.Exit(2) from None


def _logged_settings(config: Path | None, overrides: dict[str, Any], log_level: str | None,
                     log_format: str | None) -> Settings:
    """`_settings` for commands that log: also sets up the log as the settings say."""
    settings = _settings(config, {**overrides, "service.log_level": log_level,
                                  "service.log_format": log_format})
    setup_logging(settings.service.log_level, settings.service.log_format)
    return settings


def _empty_means_none(value: Any) -> Any:
    """`--udp ''` turns a listener list off, as `--metrics ''` turns metrics off."""
    if isinstance(value, list):
        return [item for item in value if item]
    return value


@app.command()
def run(
    config: ConfigOption = None,
    udp: Annotated[list[str] | None, typer.Option(
        metavar="HOST:PORT", help="UDP address (repeatable); replaces listen.udp; '' for none.")] = None,
    tcp: Annotated[list[str] | None, typer.Option(
        metavar="HOST:PORT", help="TCP address (repeatable); replaces listen.tcp; '' for none.")] = None,
    unix: Annotated[list[str] | None, typer.Option(
        metavar="PATH", help="Unix datagram socket path (repeatable).")] = None,
    elasticsearch: Annotated[list[str] | None, typer.Option(
        "--elasticsearch", "-e", metavar="URL",
        help="Elasticsearch URL (repeatable); none: JSON lines on stdout.")] = None,
    spool_dir: Annotated[str | None, typer.Option(metavar="DIR", help="Spool directory (spool.dir).")] = None,
    metrics: Annotated[str | None, typer.Option(
        metavar="HOST:PORT", help="Metrics address; '' disables (metrics.listen).")] = None,
    log_level: LogLevelOption = None,
    log_format: LogFormatOption = None,
) -> None:
    """Run the receiver until SIGTERM or SIGINT."""
    flags = {
        "listen.udp": udp, "listen.tcp": tcp, "listen.unix": unix,
        "elasticsearch.hosts": elasticsearch, "spool.dir": spool_dir, "metrics.listen": metrics,
        "service.log_level": log_level, "service.log_format": log_format,
    }
    settings = _logged_settings(config, flags, log_level, log_format)
    _check_files(settings)
    log.info("haproxy-receiver %s, configuration %s", __version__,
             config_file(config) or "built in (no file)")
    # The systemd watchdog ends a wedged receiver with SIGABRT: every thread's stack then goes
    # to stderr (the journal), which shows the loop that stopped and where.
    faulthandler.enable()
    from receiver.listen import ListenError
    from receiver.service import Receiver
    from receiver.ship.errors import OutputError
    from receiver.spool import SpoolError

    load = _loader(config, flags)

    def reload() -> Settings:  # SIGHUP: a file gone or broken since is refused as at start
        from receiver.preflight import check_files

        fresh = load()
        check_files(fresh)
        return fresh

    try:
        status = Receiver(settings, loader=reload).run()
    except ListenError as error:  # an address in use or not ours: a setting to change
        log.error("%s", error)
        raise typer.Exit(2) from None
    except (SpoolError, OutputError) as error:
        log.error("%s", error)
        raise typer.Exit(1) from None
    raise typer.Exit(status)


@app.command()
def consume(
    config: ConfigOption = None,
    elasticsearch: Annotated[list[str] | None, typer.Option(
        "--elasticsearch", "-e", metavar="URL",
        help="Elasticsearch URL (repeatable); none: JSON lines on stdout.")] = None,
    metrics: Annotated[str | None, typer.Option(
        metavar="HOST:PORT", help="Metrics address; '' disables (metrics.listen).")] = None,
    log_level: LogLevelOption = None,
    log_format: LogFormatOption = None,
) -> None:
    """Run one member of the Kafka worker tier: read [kafka] topic as group kafka.group_id,
    parse and ship to Elasticsearch, until SIGTERM or SIGINT."""
    flags = {"elasticsearch.hosts": elasticsearch, "metrics.listen": metrics,
             "service.log_level": log_level, "service.log_format": log_format}
    settings = _logged_settings(config, flags, log_level, log_format)
    faulthandler.enable()
    from receiver.ship.errors import OutputError

    try:
        from receiver.kafka.member import run_member

        status = run_member(settings, loader=_loader(config, flags))
    except OutputError as error:
        log.error("%s", error)
        raise typer.Exit(1) from None
    raise typer.Exit(status)


def _check_files(settings: Settings) -> None:
    """The files, directories and certificates the settings name, on this machine; a problem
    ends the program with status 2 before anything starts."""
    from receiver.preflight import check_files

    try:
        check_files(settings)
    except ConfigError as error:
        typer.echo(f"haproxy-receiver: configuration error: {error}", err=True)
        raise typer.Exit(2) from None


@app.command("check-config")
def check_config(
    config: ConfigOption = None,
    values_only: Annotated[bool, typer.Option(
        "--values-only", help="Check the values only, not the files, certificates and "
        "addresses on this machine (a configuration meant for another host).")] = False,
) -> None:
    """Validate the configuration (file + environment) as `run` would before starting: values,
    then the files, certificates and addresses it names; print it, secrets hidden."""
    settings = _settings(config, {})
    if not values_only:
        from receiver.preflight import probe_addresses

        _check_files(settings)
        try:
            notes = probe_addresses(settings)
        except ConfigError as error:
            typer.echo(f"haproxy-receiver: configuration error: {error}", err=True)
            raise typer.Exit(2) from None
        for note in notes:
            typer.echo(f"haproxy-receiver: note: {note}", err=True)
    typer.echo(orjson.dumps(redacted(settings), option=orjson.OPT_INDENT_2).decode())


@app.command("config-reference")
def config_reference() -> None:
    """Print the configuration reference (Markdown), generated from the settings' definitions."""
    typer.echo(reference_markdown(), nl=False)


@app.command()
def version() -> None:
    """Print the version (as --version does)."""
    typer.echo(f"haproxy-receiver {__version__}")


@app.command()
def parse(
    lines: Annotated[list[str] | None, typer.Argument(
        metavar="LINE", show_default=False, hidden=True)] = None,  # said in the docstring
    config: ConfigOption = None,
    files: Annotated[list[Path] | None, typer.Option(
        "--file", "-f", metavar="FILE", show_default=False,
        help="Read the lines of this log file (repeatable; - for stdin).")] = None,
    pretty: Annotated[bool | None, typer.Option(
        "--pretty/--compact", help="Indent output (default: when stdout is a terminal).")] = None,
    log_level: LogLevelOption = None,
    log_format: LogFormatOption = None,
) -> None:
    """Show the document each syslog LINE becomes (instead of regex trial and error); with no
    LINE, read lines from the --file FILEs, else from stdin."""
    from receiver.parse.command import run_parse_command

    settings = _logged_settings(config, {}, log_level, log_format)
    for line in lines or []:
        if os.path.isfile(line):  # `parse /var/log/haproxy.log`; never raises
            typer.echo(f"haproxy-receiver: parse: {line!r} is a file, and arguments are log "
                       f"lines; to read the file's lines: haproxy-receiver parse --file {line}",
                       err=True)
            raise typer.Exit(2)
    if lines and files:
        typer.echo("haproxy-receiver: parse: give lines or --file, not both", err=True)
        raise typer.Exit(2)
    source: Iterable[bytes]
    if lines:
        source = [line.encode("utf-8", "surrogateescape") for line in lines]
    elif files:
        source = _lines_of(files)
    else:
        source = sys.stdin.buffer
    indent = sys.stdout.isatty() if pretty is None else pretty
    raise typer.Exit(run_parse_command(source, settings.parse, sys.stdout, indent))


@app.command("import")
def import_files(
    paths: Annotated[list[str], typer.Argument(
        metavar="PATH", show_default=False, hidden=True)],  # said in the docstring
    config: ConfigOption = None,
    elasticsearch: Annotated[list[str] | None, typer.Option(
        "--elasticsearch", "-e", metavar="URL",
        help="Elasticsearch URL (repeatable); none: JSON lines on stdout.")] = None,
    since: Annotated[str | None, typer.Option(
        metavar="TIME", help="Only events at or after TIME (ISO 8601, e.g. 2026-11-01 or "
        "2026-11-01T06:00:00Z; without an offset in parse.timezone).")] = None,
    until: Annotated[str | None, typer.Option(
        metavar="TIME", help="Only events before TIME (e.g. when the live receiver started).")] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Read and parse everything, send nothing: lines per file and format.")] = False,
    workers: Annotated[int, typer.Option(
        metavar="N", min=1, help="Processes parsing and shipping (large plain files are shared "
        "out in pieces).")] = 1,
    progress: Annotated[bool | None, typer.Option(
        "--progress/--no-progress", help="Progress line (default: when stderr is a terminal).")] = None,
    metrics: Annotated[str | None, typer.Option(
        metavar="HOST:PORT", help="Serve the import's metrics (/metrics) here while it runs "
        "(one process: without --workers).")] = None,
    piece_bytes: Annotated[int, typer.Option(
        min=4096, hidden=True, help="With --workers: plain files larger than twice this are "
        "shared out in pieces of this size.")] = 32 * 1024 * 1024,
    log_level: LogLevelOption = None,
    log_format: LogFormatOption = None,
) -> None:
    """Ship existing HAProxy log files to Elasticsearch, exactly once however often it runs
    (each event's id comes from the file's content: a rerun reports it "already there"). Each
    PATH is a log file (plain or gzip, told by its content), a directory (its files), a glob,
    or - for standard input."""
    from receiver.importer.command import Options, UsageError, period_bound, run_import

    settings = _logged_settings(config, {"elasticsearch.hosts": elasticsearch}, log_level,
                                log_format)
    try:
        zone = settings.parse.timezone
        options = Options(
            paths, since=period_bound(since, zone, "--since") if since else None,
            until=period_bound(until, zone, "--until") if until else None,
            dry_run=dry_run, workers=workers, progress=progress, piece_bytes=piece_bytes,
            metrics=metrics or "")
        status = run_import(settings, options, sys.stdin.buffer, sys.stderr)
    except UsageError as error:
        typer.echo(f"haproxy-receiver: import: {error}", err=True)
        raise typer.Exit(2) from None
    raise typer.Exit(status)


def _lines_of(files: list[Path]) -> Iterator[bytes]:
    """The lines of each file in turn; one that cannot be read ends the command (status 2)."""
    for path in files:
        if str(path) == "-":
            yield from sys.stdin.buffer
            continue
        try:
            with path.open("rb") as handle:
                yield from handle
        except OSError as error:
            typer.echo(f"haproxy-receiver: parse: --file {path}: cannot read: {error.strerror}",
                       err=True)
            raise typer.Exit(2) from None


@app.command()
def setup(
    config: ConfigOption = None,
    elasticsearch: Annotated[list[str] | None, typer.Option(
        "--elasticsearch", "-e", metavar="URL", help="Elasticsearch URL.")] = None,
    kibana: Annotated[str | None, typer.Option(
        metavar="URL", help="Kibana URL: also import the dashboards (data view on the indices "
        "elasticsearch.index or data_stream writes to).")] = None,
    log_level: LogLevelOption = None,
    log_format: LogFormatOption = None,
) -> None:
    """Install the index template (and ILM policy where supported); optionally Kibana dashboards."""
    settings = _logged_settings(config, {"elasticsearch.hosts": elasticsearch}, log_level, log_format)
    from receiver.ship.setup import setup_target

    status, pattern = setup_target(settings.elasticsearch)
    if kibana and status == 0:
        status = _import_dashboards(kibana, settings, pattern)
    raise typer.Exit(status)


def _import_dashboards(kibana: str, settings: Settings, pattern: str) -> int:
    """Dashboards with their data view on `pattern`, where documents go on this server."""
    from receiver.kibana import KibanaError, import_dashboards

    es = settings.elasticsearch
    try:
        result = import_dashboards(kibana, settings=es, index_pattern=pattern)
    except KibanaError as error:
        log.error("kibana: %s", error)
        return 1
    typer.echo(f"kibana: {result}; data view on {pattern}")
    return 0 if result.success else 1


@test_app.command("output")
def test_output(
    config: ConfigOption = None,
    elasticsearch: Annotated[list[str] | None, typer.Option(
        "--elasticsearch", "-e", metavar="URL", help="Elasticsearch URL (repeatable).")] = None,
    log_level: LogLevelOption = None,
    log_format: LogFormatOption = None,
) -> None:
    """Reach every Elasticsearch host as `run` would: version, credentials, privileges, template;
    with [kafka] set, the brokers and the topic first."""
    settings = _logged_settings(config, {"elasticsearch.hosts": elasticsearch}, log_level, log_format)
    if log_level is None:  # the report says it all; the output's own info lines would repeat it
        logging.getLogger("receiver").setLevel(logging.WARNING)
    from receiver.ship.output_check import run_output_check

    status = 0
    if settings.kafka.bootstrap_servers:
        from receiver.kafka.check import run_kafka_check
        from receiver.ship.errors import OutputError

        try:
            status = run_kafka_check(settings.kafka, typer.echo)
        except OutputError as error:  # the kafka extra is missing
            typer.echo(f"FAIL {error}")
            raise typer.Exit(1) from None
        if not (settings.elasticsearch.hosts or settings.elasticsearch.cloud_id):
            raise typer.Exit(status)  # receivers producing to Kafka need no Elasticsearch
    raise typer.Exit(run_output_check(settings.elasticsearch, typer.echo) or status)


@app.command(help="Write a file the deployment needs, carried in the package. KIND is one of: "
             + "; ".join(f"{k.name}: {k.summary}" for k in KINDS.values()) + ".")
def export(
    kind: Annotated[str, typer.Argument(
        metavar="KIND", show_default=False, hidden=True)],  # said in the command's help
    name: Annotated[str | None, typer.Option(
        metavar="NAME", help="haproxy-config: which configuration (omit it to list them).")] = None,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", metavar="FILE", help="Write to this file instead of stdout.")] = None,
    config: ConfigOption = None,
) -> None:
    settings = _settings(config, {}) if config is not None else None
    try:
        data = read(kind, name, settings.elasticsearch if settings else None)
    except AssetError as error:
        typer.echo(f"haproxy-receiver: export: {error}", err=True)
        raise typer.Exit(2) from None
    if output is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    try:
        output.write_bytes(data)
    except OSError as error:
        typer.echo(f"haproxy-receiver: export: cannot write {output}: {error.strerror}", err=True)
        raise typer.Exit(1) from None


@app.command()
def status(
    config: ConfigOption = None,
    metrics: Annotated[str | None, typer.Option(
        metavar="HOST:PORT", help="The instance's metrics address (metrics.listen).")] = None,
    watch: Annotated[bool, typer.Option(
        "--watch", "-w", help="Refresh until Ctrl-C, with rates, drain time and the last error.")] = False,
    interval: Annotated[float, typer.Option(
        metavar="SECONDS", min=0.1, help="Time between refreshes with --watch.")] = 2.0,
    count: Annotated[int, typer.Option(
        metavar="N", min=0, help="With --watch: stop after N refreshes (0: until Ctrl-C).")] = 0,
) -> None:
    """Show a running instance: listeners, spool depth and lag, the output's state."""
    from receiver.status import StatusError, fetch_status, render

    settings = _settings(config, {"metrics.listen": metrics})
    if not settings.metrics.listen:
        typer.echo("haproxy-receiver: status needs metrics.listen (the instance's metrics address)", err=True)
        raise typer.Exit(2)
    url = f"http://{settings.metrics.listen}"
    if watch:
        raise typer.Exit(_watch(url, interval, count))
    try:
        report = fetch_status(url)
    except StatusError as error:
        typer.echo(f"haproxy-receiver: {error}", err=True)
        raise typer.Exit(1) from None
    typer.echo(render(report))
    raise typer.Exit(0 if report.ready else 1)


def _watch(url: str, interval: float, count: int) -> int:
    """Redraw the screen every `interval` (on a terminal; elsewhere print one block each time)."""
    from receiver.status import StatusError, Watch, fetch_status

    watch = Watch(url, interval)
    terminal = sys.stdout.isatty()
    shown = 0
    try:
        while True:
            started = time.monotonic()
            clock = time.strftime("%H:%M:%S")
            try:
                screen = watch.update(fetch_status(url), clock)
            except StatusError as error:  # keep watching: the instance may be restarting
                screen = f"haproxy-receiver {url} at {clock}: {error}"
            typer.echo(("\033[H\033[2J" if terminal else "") + screen + ("" if terminal else "\n"))
            shown += 1
            if count and shown >= count:
                return 0
            time.sleep(max(interval - (time.monotonic() - started), 0.0))
    except KeyboardInterrupt:
        return 0


def _inspectable_spool(directory: Path) -> None:
    """A missing or wrong spool path: one line and exit 1, not zeros or a traceback."""
    from receiver.spool import SpoolError
    from receiver.spool.stats import check_spool_directory

    try:
        check_spool_directory(directory)
    except SpoolError as error:
        typer.echo(f"haproxy-receiver: {error}", err=True)
        raise typer.Exit(1) from None


@spool_app.command("stats")
def spool_stats_command(
    config: ConfigOption = None,
    spool_dir: Annotated[str | None, typer.Option(metavar="DIR", help="Spool directory.")] = None,
    log_level: LogLevelOption = None,
    log_format: LogFormatOption = None,
) -> None:
    """Segments, bytes, events pending and the age of the oldest pending event."""
    from receiver.spool import spool_stats

    settings = _logged_settings(config, {"spool.dir": spool_dir}, log_level, log_format)
    _inspectable_spool(Path(settings.spool.dir))
    stats = spool_stats(Path(settings.spool.dir))
    typer.echo(orjson.dumps(stats.as_dict(), option=orjson.OPT_INDENT_2).decode())


@spool_app.command("dump")
def spool_dump_command(
    config: ConfigOption = None,
    spool_dir: Annotated[str | None, typer.Option(metavar="DIR", help="Spool directory.")] = None,
    documents: Annotated[bool, typer.Option(
        "--documents", help="Show each message as the document it becomes (parse settings of "
        "the configuration), not as received.")] = False,
    log_level: LogLevelOption = None,
    log_format: LogFormatOption = None,
) -> None:
    """Print the pending events as JSON lines: each message as received (time, sender,
    listener, the syslog frame), or with --documents what it becomes."""
    from receiver.spool import dump_pending

    settings = _logged_settings(config, {"spool.dir": spool_dir}, log_level, log_format)
    _inspectable_spool(Path(settings.spool.dir))
    parse = None
    if documents:
        from prometheus_client import CollectorRegistry

        from receiver.metrics import ParseMetrics
        from receiver.parse import Parser
        from receiver.ship.encode import BulkEncoder

        encoder = BulkEncoder(settings.elasticsearch, Parser(settings.parse),
                              ParseMetrics(CollectorRegistry()))
        parse = encoder.document
    dump_pending(Path(settings.spool.dir), sys.stdout.buffer, parse=parse)
    sys.stdout.flush()


def main() -> None:
    app()
