"""Run a fake MCP server over stdio: `python -m tests.fakes.mcp_stdio_server --flavor tavily [--record FILE]`."""

from __future__ import annotations

import argparse
from pathlib import Path

from tests.fakes.mcp_servers import FLAVORS, Recorder, build_server


def main(argv: list[str] | None = None) -> None:
    """Parse the flavor, record a "start" event, and serve on stdin/stdout until stdin closes."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--flavor", choices=FLAVORS, required=True)
    parser.add_argument("--record", type=Path, default=None, help="append JSON lines of starts and calls here")
    options = parser.parse_args(argv)
    recorder = Recorder(options.record)
    recorder.record("start", flavor=options.flavor)
    build_server(options.flavor, recorder).run()


if __name__ == "__main__":
    main()
