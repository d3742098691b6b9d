#!/usr/bin/env python3
"""Counts the test cases of one `bazel test` invocation from Bazel's own verdicts.

    python3 .ci/count_tests.py --stage NAME --bep FILE.json --targets FILE [--bazel-exit N] [--seconds N]

--bep is the --build_event_json_file that *this* invocation wrote; --targets lists, one label a line, the test
targets the stage expects (`bazel query 'tests(P) except attr(tags, manual, tests(P))'`). Nothing else is read
except the test.log files that the invocation's testResult events name, so a log left over from another stage or
an earlier run can never be counted.

Per expected target:
  - no testResult event (it did not build, or was never run): one failed case;
  - the Catch2 summary of its log gives the case counts ("All tests passed (.. in N test cases)",
    "test cases: N | P passed | F failed"), or the placement program's "VM-RESULT: P passed, F failed, S skipped" (shell tests: "TEST-RESULT: ...");
  - a Bazel verdict other than PASSED/FLAKY (FAILED, TIMEOUT, ...) is at least one failed case, whatever the log says;
  - a sanitizer report in the log is at least one failed case too (ASan, LSan, TSan, UBSan "runtime error:");
  - a log without any summary is one failed case.
Only the last attempt of a test counts when the stage retries (--flaky_test_attempts, the asan stage): an earlier
attempt that failed is accepted only as a hang (Bazel's TIMEOUT, no sanitizer report in its log), and said; any
other failed attempt fails the target. (Why the asan stage retries hangs: the comment at its call in .ci/run.)
Every target that contributes a failure is named with the reason. The last line printed is
"NAME: P passed, F failed" (plus ", S skipped" when something was skipped); the exit status is 1 when F > 0.
"""
import argparse
import json
import re
import sys
import urllib.parse

# Lines whose presence anywhere in a test log fails the target.
SANITIZER_REPORTS = [
    ("AddressSanitizer", re.compile(r"ERROR: AddressSanitizer")),
    ("LeakSanitizer", re.compile(r"ERROR: LeakSanitizer")),
    ("ThreadSanitizer", re.compile(r"WARNING: ThreadSanitizer")),
    ("UndefinedBehaviorSanitizer", re.compile(r"runtime error:")),
]

CATCH2_ALL_PASSED = re.compile(r"^All tests passed \(\d+ assertions? in (\d+) test cases?\)", re.M)
CATCH2_SOME_FAILED = re.compile(r"^test cases:\s*(\d+) \|(?:\s*(\d+) passed \|)?\s*(\d+) failed", re.M)
# The VM placement program and the shell tests (tests/install) print this line.
VM_RESULT = re.compile(r"^(?:VM|TEST)-RESULT: (\d+) passed, (\d+) failed(?:, (\d+) skipped)?$", re.M)

GOOD_STATUSES = {"PASSED", "FLAKY"}


def read_events(path):
    """The build events of one invocation, one JSON object a line."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def test_results(events):
    """(label -> list of (status, log path) for the last attempt of every run and shard of that label,
    label -> list of (attempt, status, log path) for the earlier attempts)."""
    attempts = {}  # (label, run, shard) -> {attempt: (status, log)}
    for event in events:
        key = event.get("id", {}).get("testResult")
        if key is None:
            continue
        result = event.get("testResult", {})
        log = None
        for output in result.get("testActionOutput", []):
            if output.get("name") == "test.log" and output.get("uri", "").startswith("file://"):
                log = urllib.parse.unquote(output["uri"][len("file://"):])
        slot = (key["label"], key.get("run", 1), key.get("shard", 1))
        attempts.setdefault(slot, {})[key.get("attempt", 1)] = (result.get("status", "NO_STATUS"), log)
    last, earlier = {}, {}
    for (label, _, _), by_attempt in sorted(attempts.items()):
        final = max(by_attempt)
        last.setdefault(label, []).append(by_attempt[final])
        earlier.setdefault(label, []).extend(
            (attempt, status, log) for attempt, (status, log) in sorted(by_attempt.items()) if attempt != final)
    return last, earlier


def read_log(log, problems):
    try:
        with open(log, encoding="utf-8", errors="replace") as f:
            return f.read()
    except (OSError, TypeError):
        problems.append(f"test log {log!r} cannot be read")
        return ""


def sanitizer_reports(text):
    """One "NAME reported N time(s)" per sanitizer that reported in `text`."""
    reports = []
    for name, pattern in SANITIZER_REPORTS:
        hits = len(pattern.findall(text))
        if hits:
            reports.append(f"{name} reported {hits} time(s)")
    return reports


def count_retried(earlier):
    """(failed, problems, notes) of the attempts before the last: a hang is a note, anything else a failure."""
    failed, problems, notes = 0, [], []
    for attempt, status, log in earlier:
        if status in GOOD_STATUSES:
            continue
        attempt_problems = []
        reports = sanitizer_reports(read_log(log, attempt_problems))
        if status == "TIMEOUT" and not reports and not attempt_problems:
            notes.append(f"attempt {attempt} hung (TIMEOUT) and was retried; log: {log}")
        else:
            failed = 1
            problems.extend([f"attempt {attempt}: Bazel says {status}"] + reports + attempt_problems +
                            [f"log: {log}"])
    return failed, problems, notes


def count_log(text):
    """(passed, failed, skipped) from the log's last summary, or None when it has none."""
    counts = None
    last = -1
    for m in CATCH2_ALL_PASSED.finditer(text):
        if m.start() > last:
            last, counts = m.start(), (int(m.group(1)), 0, 0)
    for m in CATCH2_SOME_FAILED.finditer(text):
        if m.start() > last:
            last, counts = m.start(), (int(m.group(2) or 0), int(m.group(3)), 0)
    for m in VM_RESULT.finditer(text):
        if m.start() > last:
            last, counts = m.start(), (int(m.group(1)), int(m.group(2)), int(m.group(3) or 0))
    return counts


def count_target(label, results):
    """(passed, failed, skipped, problems) of one expected target, from its testResult events."""
    if not results:
        return 0, 1, 0, ["no test result in this run (it did not build, or was not run)"]
    passed = failed = skipped = 0
    problems = []
    for status, log in results:
        text = read_log(log, problems)
        counts = count_log(text)
        p, f, s = counts if counts else (0, 0, 0)
        if status not in GOOD_STATUSES:
            problems.append(f"Bazel says {status}")
            f = max(f, 1)
        reports = sanitizer_reports(text)
        if reports:
            problems.extend(reports)
            f = max(f, 1)
        if counts is None:
            problems.append("the log has no test summary")
            f = max(f, 1)
        elif f:
            problems.append(f"the log's summary: {counts[0]} passed, {counts[1]} failed")
        if f:
            problems.append(f"log: {log}")
        passed, failed, skipped = passed + p, failed + f, skipped + s
    return passed, failed, skipped, problems


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stage", required=True)
    parser.add_argument("--bep", required=True, help="this invocation's --build_event_json_file")
    parser.add_argument("--targets", required=True, help="the test labels this stage expects, one a line")
    parser.add_argument("--bazel-exit", type=int, default=0, help="bazel test's exit status")
    parser.add_argument("--seconds", type=int, help="the stage's wall time, printed with its result")
    args = parser.parse_args()

    with open(args.targets, encoding="utf-8") as f:
        expected = [line.strip() for line in f if line.strip().startswith("//")]
    try:
        results, retried = test_results(read_events(args.bep))
    except (OSError, ValueError) as e:
        print(f"{args.stage}: cannot read the build events {args.bep}: {e}")
        results, retried = {}, {}

    passed = failed = skipped = 0
    for label in expected:
        p, f, s, problems = count_target(label, results.get(label, []))
        retry_failed, retry_problems, notes = count_retried(retried.get(label, []))
        f, problems = max(f, retry_failed), problems + retry_problems
        for note in notes:
            print(f"{args.stage}: note: {label}: {note}")
        passed, failed, skipped = passed + p, failed + f, skipped + s
        if f:
            print(f"{args.stage}: FAILED {label}: " + "; ".join(problems))
        if s:
            print(f"{args.stage}: {label}: {s} check(s) skipped")
    if not expected:
        print(f"{args.stage}: FAILED: the stage expects no test target (did `bazel query` fail?)")
        failed += 1
    # A result for a target the query did not list is not counted, but said: the two lists should agree.
    for label in sorted(set(results) - set(expected)):
        print(f"{args.stage}: note: {label} ran but is not among the expected targets; not counted")
    if args.bazel_exit != 0 and failed == 0:
        print(f"{args.stage}: FAILED: bazel test exited with {args.bazel_exit} although every test passed")
        failed += 1

    line = f"{args.stage}: {passed} passed, {failed} failed"
    if skipped:
        line += f", {skipped} skipped"
    if args.seconds is not None:
        line += f" ({args.seconds} s)"
    print(line)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
