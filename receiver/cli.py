"""The `haproxy-receiver` command line (typer). Commands only translate flags into settings and
call the module that owns the behaviour; exit status 2 means a wrong setting or usage."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from receiver import __version__
from receiver.config import ConfigError, Settings, load_settings, redacted, reference_markdown

app = typer.Typer(
    name="haproxy-receiver",
    help="Receive HAProxy syslog, parse it into typed documents, spool it, ship it to Elasticsearch.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
spool_app = typer.Typer(help="Inspect the spool (safe while the receiver runs).", no_args_is_help=True)
app.add_typer(spool_app, name="spool")
test_app = typer.Typer(help="Check what `run` needs before going live.", no_args_is_help=True)
app.add_typer(test_app, name="test")

ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="TOML configuration file.", show_default=False)
]
log = logging.getLogger("receiver")


def _settings(config: Path | None, overrides: dict[str, Any]) -> Settings:
    """Load and validate settings; a wrong one ends the program with status 2."""
    given = {key: _empty_means_none(value) for key, value in overrides.items() if value is not None}
    try:
        return load_settings(config, overrides=given)
    except ConfigError as error:
        typer.echo(f"haproxy-receiver: configuration error: {error}", err=True)
        raise typer.Exit(2) from None


def _empty_means_none(value: Any) -> Any:
    """`--udp ''` turns a listener list off, as `--metrics ''` turns metrics off."""
    if isinstance(value, list):
        return [item for item in value if item]
    return value


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("elastic_transport").setLevel(logging.WARNING)


@app.command()
def run(
    config: ConfigOption = None,
    udp: Annotated[list[str] | None, typer.Option(
        help="UDP HOST:PORT (repeatable); replaces listen.udp; '' for none.")] = None,
    tcp: Annotated[list[str] | None, typer.Option(
        help="TCP HOST:PORT (repeatable); replaces listen.tcp; '' for none.")] = None,
    unix: Annotated[list[str] | None, typer.Option(help="Unix datagram socket path (repeatable).")] = None,
    elasticsearch: Annotated[list[str] | None, typer.Option(
        "--elasticsearch", "-e", help="Elasticsearch URL (repeatable); none: JSON lines on stdout.")] = None,
    spool_dir: Annotated[str | None, typer.Option(help="Spool directory (spool.dir).")] = None,
    metrics: Annotated[str | None, typer.Option(
        help="Metrics HOST:PORT; '' disables (metrics.listen).")] = None,
    log_level: Annotated[str | None, typer.Option(help="debug, info, warning or error.")] = None,
) -> None:
    """Run the receiver until SIGTERM or SIGINT."""
    settings = _settings(config, {
        "listen.udp": udp, "listen.tcp": tcp, "listen.unix": unix,
        "elasticsearch.hosts": elasticsearch, "spool.dir": spool_dir, "metrics.listen": metrics,
        "service.log_level": log_level,
    })
    _setup_logging(settings.service.log_level)
    from receiver.listen import ListenError
    from receiver.service import Receiver
    from receiver.ship.errors import OutputError
    from receiver.spool import SpoolError

    try:
        status = Receiver(settings).run()
    except (ListenError, SpoolError, OutputError) as error:
        log.error("%s", error)
        raise typer.Exit(1) from None
    raise typer.Exit(status)


@app.command("check-config")
def check_config(config: ConfigOption = None) -> None:
    """Validate the configuration (file + environment) and print it, secrets hidden."""
    settings = _settings(config, {})
    typer.echo(orjson.dumps(redacted(settings), option=orjson.OPT_INDENT_2).decode())


@app.command("config-reference")
def config_reference() -> None:
    """Print the configuration reference (Markdown), generated from the settings' definitions."""
    typer.echo(reference_markdown(), nl=False)


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(f"haproxy-receiver {__version__}")


@app.command()
def parse(
    lines: Annotated[list[str] | None, typer.Argument(help="Syslog lines; none: read stdin.")] = None,
    config: ConfigOption = None,
    pretty: Annotated[bool | None, typer.Option(
        "--pretty/--compact", help="Indent output (default: when stdout is a terminal).")] = None,
) -> None:
    """Show the document each syslog line becomes (instead of regex trial and error)."""
    from receiver.parse.command import run_parse_command

    settings = _settings(config, {})
    source = [line.encode("utf-8", "surrogateescape") for line in lines] if lines else sys.stdin.buffer
    indent = sys.stdout.isatty() if pretty is None else pretty
    raise typer.Exit(run_parse_command(source, settings.parse, sys.stdout, indent))


@app.command()
def setup(
    config: ConfigOption = None,
    elasticsearch: Annotated[list[str] | None, typer.Option(
        "--elasticsearch", "-e", help="Elasticsearch URL.")] = None,
    kibana: Annotated[str | None, typer.Option(help="Kibana URL: also import the dashboards.")] = None,
) -> None:
    """Install the index template (and ILM policy where supported); optionally Kibana dashboards."""
    settings = _settings(config, {"elasticsearch.hosts": elasticsearch})
    _setup_logging(settings.service.log_level)
    from receiver.ship.template import run_setup

    status = run_setup(settings.elasticsearch)
    if kibana and status == 0:
        status = _import_dashboards(kibana, settings)
    raise typer.Exit(status)


def _import_dashboards(kibana: str, settings: Settings) -> int:
    from receiver.kibana import KibanaError, import_dashboards

    es = settings.elasticsearch
    try:
        result = import_dashboards(kibana, settings=es)
    except KibanaError as error:
        log.error("kibana: %s", error)
        return 1
    typer.echo(f"kibana: {result}")
    return 0 if result.success else 1


@test_app.command("output")
def test_output(
    config: ConfigOption = None,
    elasticsearch: Annotated[list[str] | None, typer.Option(
        "--elasticsearch", "-e", help="Elasticsearch URL (repeatable).")] = None,
) -> None:
    """Reach every Elasticsearch host as `run` would: version, credentials, privileges, template."""
    settings = _settings(config, {"elasticsearch.hosts": elasticsearch})
    _setup_logging(settings.service.log_level)
    from receiver.ship.output_check import run_output_check

    raise typer.Exit(run_output_check(settings.elasticsearch, typer.echo))


@app.command()
def status(
    config: ConfigOption = None,
    metrics: Annotated[str | None, typer.Option(help="The instance's metrics HOST:PORT.")] = None,
) -> None:
    """Show a running instance: listeners, spool depth and lag, the output's state."""
    from receiver.status import StatusError, fetch_status, render

    settings = _settings(config, {"metrics.listen": metrics})
    if not settings.metrics.listen:
        typer.echo("haproxy-receiver: status needs metrics.listen (the instance's metrics address)", err=True)
        raise typer.Exit(2)
    try:
        report = fetch_status(f"http://{settings.metrics.listen}")
    except StatusError as error:
        typer.echo(f"haproxy-receiver: {error}", err=True)
        raise typer.Exit(1) from None
    typer.echo(render(report))
    raise typer.Exit(0 if report.ready else 1)


@spool_app.command("stats")
def spool_stats_command(
    config: ConfigOption = None,
    spool_dir: Annotated[str | None, typer.Option(help="Spool directory.")] = None,
) -> None:
    """Segments, bytes, events pending and the age of the oldest pending event."""
    from receiver.spool import spool_stats

    settings = _settings(config, {"spool.dir": spool_dir})
    stats = spool_stats(Path(settings.spool.dir))
    typer.echo(orjson.dumps(stats.as_dict(), option=orjson.OPT_INDENT_2).decode())


@spool_app.command("dump")
def spool_dump_command(
    config: ConfigOption = None,
    spool_dir: Annotated[str | None, typer.Option(help="Spool directory.")] = None,
) -> None:
    """Print the pending events as JSON lines."""
    from receiver.spool import dump_pending

    settings = _settings(config, {"spool.dir": spool_dir})
    dump_pending(Path(settings.spool.dir), sys.stdout.buffer)
    sys.stdout.flush()


def main() -> None:
    app()
