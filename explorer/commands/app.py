"""``tinyfront app``: start the Streamlit explorer on this machine (127.0.0.1 unless --host says otherwise).

The app runs ``streamlit run explorer/app/main.py`` in a child process, headless, without usage
statistics, with the working folder (SQLite storage, artifacts, uploads, logs) given by
``--workdir``. Nothing the browser sends reads or writes outside that folder.

SIGTERM and SIGHUP sent to ``tinyfront app`` are forwarded to the Streamlit child, which then
stops serving the port; Ctrl-C reaches both (same process group).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from types import FrameType

from explorer.commands._args import positive_int
from search.errors import ConfigError

MAIN_SCRIPT = Path(__file__).resolve().parent.parent / "app" / "main.py"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("app", help="start the explorer web app (launch searches, read the front, export bundles)")
    p.add_argument("--port", type=positive_int, default=8501, help="port to listen on (default: 8501)")
    p.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1; 0.0.0.0 exposes it to the network)"
    )
    p.add_argument("--workdir", default=".", help="working folder: storage, artifacts, uploads (default: .)")
    p.set_defaults(run=run)


def streamlit_command(port: int, host: str, workdir: Path) -> list[str]:
    """The ``streamlit run`` command line of the app."""
    if not 0 < port < 65536:
        raise ConfigError(f"--port must be from 1 to 65535, got {port}")
    check_host(host, port)
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


def check_host(host: str, port: int) -> None:
    """ConfigError unless ``host`` is an address (or a name) this machine can resolve to bind to."""
    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE | socket.AI_NUMERICSERV)
    except (OSError, UnicodeError) as exc:
        reason = exc.args[-1] if isinstance(exc, OSError) and exc.args else str(exc)
        raise ConfigError(
            f"--host {host!r} is not an address to listen on ({reason}); try 127.0.0.1 or 0.0.0.0"
        ) from None


def run_child(command: list[str], *, cwd: Path, env: dict[str, str]) -> int:
    """Run ``command`` and wait for it; SIGTERM / SIGHUP to this process are forwarded to it.

    A signal this process ignores (SIGHUP under ``nohup``) stays ignored, in it and in the child,
    which inherits that: forwarding it would stop this process and wait for a child that ignores it."""
    proc = subprocess.Popen(command, cwd=cwd, env=env)

    def forward(signum: int, frame: FrameType | None) -> None:
        if proc.poll() is None:
            proc.send_signal(signum)

    wanted = [sig for sig in (signal.SIGTERM, signal.SIGHUP) if signal.getsignal(sig) != signal.SIG_IGN]
    previous = {sig: signal.signal(sig, forward) for sig in wanted}
    try:
        while True:
            try:
                return proc.wait()
            except KeyboardInterrupt:  # Ctrl-C reached the child too (same group): let it finish stopping
                continue
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if proc.poll() is None:  # this process is leaving for another reason: do not leave the server behind
            proc.terminate()
            proc.wait()


def run(args: argparse.Namespace) -> int:
    workdir = Path(args.workdir).expanduser().resolve()
    if not workdir.is_dir():
        raise ConfigError(f"--workdir must be an existing folder, got {args.workdir}")
    env = {**os.environ, "TINYFRONT_WORKDIR": str(workdir), "TF_CPP_MIN_LOG_LEVEL": "2"}
    command = streamlit_command(args.port, args.host, workdir)
    print(
        f"tinyfront app on http://{args.host}:{args.port} (working folder {workdir}); Ctrl-C stops it", file=sys.stderr
    )
    rc = run_child(command, cwd=workdir, env=env)
    return 0 if rc in (0, -signal.SIGINT, -signal.SIGTERM, -signal.SIGHUP) else rc
