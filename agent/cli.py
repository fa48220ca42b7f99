"""``a4c-agent``: run the node agent, print its version or its example config.

Exit status: 0 after a clean shutdown, 2 for a problem only an operator can
fix (bad config, missing or refused enrolment token, unusable identity
file) — printed as one line on stderr, never a traceback — so that systemd
(``RestartPreventExitStatus=2``) does not restart it in a loop.
"""

from __future__ import annotations

import sys

import click

from agent import __version__, daemon, example_config, identity
from shared import config


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """The A4C node agent."""


@main.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    envvar="A4C_CONFIG",
    help="YAML config file (see packaging/config/agent.yaml).",
)
def run(config_path: str | None) -> None:
    """Run the agent until SIGTERM."""
    try:
        code = daemon.run(config_path)
    except (config.ConfigError, identity.EnrolmentError, identity.IdentityError) as exc:
        click.echo(f"a4c-agent: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        code = 0
    sys.exit(code)


@main.command()
def version() -> None:
    """Print the agent's version."""
    click.echo(__version__)


@main.command("example-config")
def example_config_cmd() -> None:
    """Print a config file documenting every key with its default."""
    click.echo(example_config.render(), nl=False)
