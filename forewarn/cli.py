"""The `forewarn` command line: one click command per stage."""

import click


@click.group()
def main() -> None:
    """forewarn: customer-notification policy as code."""
