#!/usr/bin/env python3
"""scripts/examples-check's comparison of the two example consumers with each other and with the
connector's own view (`verify` figures, `state` of sampled customers), after the probes of
scripts/examples_inject.py. Then proves that it can fail: each of a set of broken copies of the
inputs (a consumer that does not deduplicate, one without schema resolution, one that reads
uncommitted records, one that ignores tombstones, a stale table, disagreeing summaries, a probe
that did not bite) must fail at least one check.

    examples_compare.py WORK_DIR     # reads verify.json, inject.json, {java,python}.json and
                                     # -table.tsv, state-cmd/ids.tsv and state-cmd/N.{json,err}
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path


def load(work: Path) -> dict:
    ids = {}
    for line in (work / "state-cmd/ids.tsv").read_text("utf-8").splitlines():
        n, ext = line.split("\t")
        ids[ext] = n
    state = {}
    for ext, n in ids.items():
        try:
            state[ext] = json.loads((work / f"state-cmd/{n}.json").read_text("utf-8"))
        except ValueError:
            state[ext] = {"error": (work / f"state-cmd/{n}.err").read_text("utf-8").strip()}
    read = lambda name: json.loads((work / name).read_text("utf-8"))  # noqa: E731
    return {
        "verify": read("verify.json"), "inject": read("inject.json"),
        "java": read("java.json"), "python": read("python.json"),
        "java_table": (work / "java-table.tsv").read_text("utf-8"),
        "python_table": (work / "python-table.tsv").read_text("utf-8"),
        "state": state,
    }


def compare(x: dict) -> list[tuple[bool, str]]:
    """Every check as (passed, description)."""
    out = []
    check = lambda ok, what: out.append((bool(ok), what))  # noqa: E731
    ev, st, probe = x["verify"]["events"], x["verify"]["state"], x["inject"]
    tomb = probe["tombstoned"]
    check(ev["created"] > 0 and ev["updated"] > 0,
          f"verify saw CREATED ({ev['created']}) and UPDATED ({ev['updated']}) events")
    check(probe["aborted_visible_uncommitted"],
          "the aborted probe is in the log (a read_uncommitted reader sees it)")
    for s in (x["java"], x["python"]):
        name, e, c = s["consumer"], s["events"], s["customers"]
        check(e["decode_errors"] == 0 and c["decode_errors"] == 0, f"{name}: no decode errors")
        want = {"CREATED": ev["created"], "UPDATED": ev["updated"], "UNKNOWN": 1}
        if ev.get("deleted"):
            want["DELETED"] = ev["deleted"]
        check(e["by_type"] == want,
              f"{name}: events by type {e['by_type']} == verify's plus the future-type probe as UNKNOWN")
        check(e["distinct_event_ids"] == ev["events"] + 1,
              f"{name}: {e['distinct_event_ids']} distinct event ids == verify's {ev['events']} + the future-type probe")
        check(e["duplicates_dropped"] == 1, f"{name}: {e['duplicates_dropped']} duplicate dropped (the probe)")
        check(e["records"] == ev["events"] + 2,
              f"{name}: {e['records']} event records == {ev['events']} + duplicate + future-type probe (aborted ones unseen)")
        check(probe["evolved_schema_id"] in e["writer_schema_ids"] and len(e["writer_schema_ids"]) == 2,
              f"{name}: events read with writer schemas {e['writer_schema_ids']}, the evolved one included")
        check(c["count"] == st["snapshots"] - 1 and c["tombstones"] == 1,
              f"{name}: {c['count']} customers == verify's {st['snapshots']} snapshots - the tombstoned one")
    strip = lambda s: {k: v for k, v in s.items() if k != "consumer"}  # noqa: E731
    check(strip(x["java"]) == strip(x["python"]), "the two summaries agree")
    jt, pt = x["java_table"], x["python_table"]
    check(jt == pt and jt, f"the two tables are identical ({len(jt.splitlines())} rows)")
    table = {line.split("\t")[0]: line.split("\t")[1:] for line in jt.splitlines()}
    check(tomb not in table, f"tombstoned {tomb} is not in the table")
    check("no snapshot" in x["state"].get(tomb, {}).get("error", ""),
          f"`tanma-connector state {tomb}` finds no snapshot")
    revisions = []
    for ext, got in x["state"].items():
        if ext == tomb:
            continue
        if "revision" not in got:
            check(False, f"`tanma-connector state {ext}`: {got.get('error')}")
            continue
        want = [str(got["revision"]), got["fingerprint"]]
        revisions.append(got["revision"])
        check(table.get(ext) == want, f"{ext}: table {table.get(ext)} == `tanma-connector state` {want}")
    check(any(r >= 2 for r in revisions), f"the sample includes updated customers (revisions {revisions})")
    return out


def _no_dedupe(x):
    e = x["python"]["events"]
    e["duplicates_dropped"], e["distinct_event_ids"] = 0, e["distinct_event_ids"] + 1
    e["by_type"]["CREATED"] += 1


def _no_resolution(x):
    e = x["java"]["events"]
    e["decode_errors"] += 1
    e["by_type"].pop("UNKNOWN", None)


def _read_uncommitted(x):
    for s in ("java", "python"):
        x[s]["events"]["records"] += 1
        x[s]["events"]["decode_errors"] += 1


def _ignores_tombstones(x):
    tomb = x["inject"]["tombstoned"]
    row = f"{tomb}\t1\t{x['state'].get(tomb, {}).get('fingerprint', '0')}\n"
    for s in ("java", "python"):
        x[f"{s}_table"] = "".join(sorted(x[f"{s}_table"].splitlines(keepends=True) + [row]))
        x[s]["customers"]["count"] += 1


def _stale_row(x):
    # Both tables alike, so that only the comparison with `tanma-connector state` catches it.
    ext = next((e for e, s in x["state"].items() if s.get("revision", 0) >= 2), None)
    if ext is None:
        return  # nothing to make stale: the check "the sample includes updated customers" fails
    for s in ("java_table", "python_table"):
        lines = []
        for line in x[s].splitlines(keepends=True):
            key, rev, rest = line.split("\t", 2)
            lines.append(f"{key}\t{int(rev) - 1}\t{rest}" if key == ext else line)
        x[s] = "".join(lines)


def _summaries_differ(x):
    x["python"]["customers"]["table_sha256"] = "0" * 64


def _probe_missed(x):
    x["inject"]["aborted_visible_uncommitted"] = False


MUTATIONS = {
    "a consumer that does not deduplicate": _no_dedupe,
    "a consumer that cannot read the evolved schema": _no_resolution,
    "a read_uncommitted consumer": _read_uncommitted,
    "a consumer that ignores tombstones": _ignores_tombstones,
    "a stale revision in both tables": _stale_row,
    "disagreeing summaries": _summaries_differ,
    "an aborted probe that is not in the log": _probe_missed,
}


def main() -> int:
    inputs = load(Path(sys.argv[1]))
    results = compare(inputs)
    for ok, what in results:
        print(("  ok   " if ok else "  FAIL ") + what)
    failed = sum(not ok for ok, _ in results)
    for name, mutate in MUTATIONS.items():
        broken = copy.deepcopy(inputs)
        mutate(broken)
        caught = [what for ok, what in compare(broken) if not ok]
        print(("  ok   " if caught else "  FAIL ") + f"the comparison rejects {name}"
              + (f" ({caught[0]})" if caught else ""))
        failed += not caught
    print(f"{len(results) + len(MUTATIONS) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
