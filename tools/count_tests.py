#!/usr/bin/env python3
"""tools/count_tests.py — sums test cases from a meson testlog.json.

A Criterion executable counts as its individual tests (its "Synthesis" line);
any other test, or a Criterion run that died before its synthesis (crash,
timeout), counts as one test by meson's verdict. Prints "passed failed"."""
import json
import re
import sys

SYN = re.compile(r"Synthesis: Tested: (\d+) \| Passing: (\d+) \| Failing: (\d+) \| Crashing: (\d+)")


def main(path):
    passed = failed = 0
    try:
        lines = open(path, encoding="utf-8", errors="replace").read().splitlines()
    except OSError:
        print("0 1")
        return
    for line in lines:
        if not line.strip():
            continue
        rec = json.loads(line)
        out = (rec.get("stdout") or "") + (rec.get("stderr") or "")
        m = SYN.findall(re.sub(r"\x1b\[[0-9;]*m", "", out))
        ok = rec.get("result") in ("OK", "EXPECTEDFAIL")
        if m:
            tested, passing, failing, crashing = map(int, m[-1])
            passed += passing
            failed += failing + crashing
            if not ok and failing + crashing == 0:
                failed += 1  # e.g. leak report or sanitizer exit after synthesis
        elif rec.get("result") == "SKIP":
            continue
        elif ok:
            passed += 1
        else:
            failed += 1
    print(passed, failed)


if __name__ == "__main__":
    main(sys.argv[1])
