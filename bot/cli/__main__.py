"""`python -m bot.cli`: the same command line as `dnabot`."""

from bot.cli.commands import main

main()
