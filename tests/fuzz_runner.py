"""Runs `atlas` commands in one process, each as the command line would, and reports per command: the exit
status, stderr, whether an exception escaped (a traceback), and every file opened (from an audit hook).

    python fuzz_runner.py CASES.json RESULTS.json      # CASES: [{"id": ..., "argv": [...]}, ...]
"""

import contextlib
import io
import json
import sys
import traceback


def main() -> None:
    cases = json.load(open(sys.argv[1]))
    opened: list = []

    def audit(event, args):
        if event == "open" and args and isinstance(args[0], (str, bytes)):
            opened.append(args[0].decode(errors="replace") if isinstance(args[0], bytes) else args[0])

    sys.addaudithook(audit)
    from atlas_core.cli import main as atlas
    results = []
    for case in cases:
        opened.clear()
        err, out = io.StringIO(), io.StringIO()
        escaped = None
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            try:
                rc = atlas(case["argv"])
            except SystemExit as exc:  # argparse
                rc = exc.code if isinstance(exc.code, int) else 2
            except BaseException:  # noqa: BLE001 - what the suite looks for
                rc, escaped = 1, traceback.format_exc()
        results.append({"id": case["id"], "rc": rc, "stderr": err.getvalue(), "traceback": escaped,
                        "opened": sorted(set(opened))})
    json.dump(results, open(sys.argv[2], "w"))


if __name__ == "__main__":
    main()
