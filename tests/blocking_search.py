"""``python -m blocking_search ARGS``: the ``tinyfront`` CLI whose second candidate build blocks.

Test harness for test_kill_resume.py: the first candidate is built and recorded normally; the
second writes the file named by ``TINYFRONT_TEST_BLOCKED`` and then sleeps, so the test can SIGKILL
the search at a known point (one trial COMPLETE, the next RUNNING) instead of after a guessed delay.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import search.candidate
from explorer.cli import main

_real = search.candidate.evaluate_candidate
_builds = 0


def _blocking_evaluate(*args: Any, **kwargs: Any) -> Any:
    global _builds
    _builds += 1
    if _builds >= 2:
        Path(os.environ["TINYFRONT_TEST_BLOCKED"]).write_text("blocked in candidate build 2\n")
        time.sleep(3600)
    return _real(*args, **kwargs)


search.candidate.evaluate_candidate = _blocking_evaluate  # read by search.study.make_objective at call time

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
