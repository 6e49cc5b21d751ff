"""The command line (`dnabot`): its commands, the demo and the terminal renderers."""


def main() -> None:
    """`dnabot`: the commands load on first use (an entry point written for `bot.cli:main` keeps working)."""
    from bot.cli.commands import main as run

    run()
