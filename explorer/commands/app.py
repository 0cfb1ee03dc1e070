"""``tinyfront app``: start the Streamlit explorer on this machine (127.0.0.1 unless --host says otherwise).

The app runs ``streamlit run explorer/app/main.py`` in a child process, headless, without usage
statistics, with the working folder (SQLite storage, artifacts, uploads, logs) given by
``--workdir``. Nothing the browser sends reads or writes outside that folder.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from search.errors import ConfigError

MAIN_SCRIPT = Path(__file__).resolve().parent.parent / "app" / "main.py"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("app", help="start the explorer web app (launch searches, read the front, export bundles)")
    p.add_argument("--port", type=int, default=8501, help="port to listen on (default: 8501)")
    p.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1; 0.0.0.0 exposes it to the network)"
    )
    p.add_argument("--workdir", default=".", help="working folder: storage, artifacts, uploads (default: .)")
    p.set_defaults(run=run)


def streamlit_command(port: int, host: str, workdir: Path) -> list[str]:
    """The ``streamlit run`` command line of the app."""
    if not 0 < port < 65536:
        raise ConfigError(f"--port must be from 1 to 65535, got {port}")
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(MAIN_SCRIPT),
        "--server.headless",
        "true",
        "--server.address",
        host,
        "--server.port",
        str(port),
        "--browser.gatherUsageStats",
        "false",
        "--server.fileWatcherType",
        "none",
        "--server.maxUploadSize",
        "512",
        "--client.toolbarMode",
        "minimal",
        "--theme.base",
        "light",
    ]


def run(args: argparse.Namespace) -> int:
    workdir = Path(args.workdir).expanduser().resolve()
    if not workdir.is_dir():
        raise ConfigError(f"--workdir must be an existing folder, got {args.workdir}")
    env = {**os.environ, "TINYFRONT_WORKDIR": str(workdir), "TF_CPP_MIN_LOG_LEVEL": "2"}
    print(
        f"tinyfront app on http://{args.host}:{args.port} (working folder {workdir}); Ctrl-C stops it", file=sys.stderr
    )
    try:
        return subprocess.call(streamlit_command(args.port, args.host, workdir), cwd=workdir, env=env)
    except KeyboardInterrupt:
        return 0
