"""Helpers for scripts/autobahn.sh and scripts/autobahn-client.sh: write the
fuzzingclient or fuzzingserver spec, summarise the report. Runs under the
same Python as wstest (2.7) and under Python 3.

  autobahn.py spec TEMPLATE OUT_SPEC URL OUTDIR [CASES [KEY CERT]]
      URL goes to every entry of the template's "servers" (fuzzingclient) or
      to its "url" (fuzzingserver). CASES is comma-separated ("1.*,2.*");
      empty keeps the template's list. KEY and CERT: the fuzzingserver's TLS
      key and certificate (for a wss:// URL).
  autobahn.py summary OUTDIR [MODE [EXPECTED]]
      Reads OUTDIR/index.json and the per-case reports, prints the counts and
      the cases that need attention, and exits:
        0  no case FAILED
        1  some case FAILED (behavior FAILED, or behaviorClose FAILED:
           closed by the wrong endpoint / handshake never completed), or,
           unless AUTOBAHN_STRICT_CLOSE=0, some case has another close
           deviation (FAILED BY CLIENT, UNCLEAN, WRONG CODE), or the report
           has fewer than EXPECTED cases (some never ran: missing=)
        2  no usable report
      MODE (default fuzzingclient) only names the run in the output.
"""

from __future__ import print_function

import io
import json
import os
import re
import sys

BEHAVIORS = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"]
CLOSE_OK = ("OK", "INFORMATIONAL")


def case_key(case_id):
    return tuple(int(p) if p.isdigit() else p for p in case_id.split("."))


def text(html):
    s = re.sub(r"<br\s*/?>", " ", html or "")
    s = re.sub(r"<[^>]+>", "", s)
    return re.sub(r"\s+", " ", s).strip()


def spec(template, out, url, outdir, cases, key=None, cert=None):
    with io.open(template, encoding="utf-8") as f:
        d = json.load(f)
    d["outdir"] = outdir
    if "servers" in d:
        for server in d["servers"]:
            server["url"] = url
    else:
        d["url"] = url
    if cases.strip():
        d["cases"] = [c.strip() for c in cases.split(",") if c.strip()]
    if key and cert:
        d["key"] = key
        d["cert"] = cert
    with io.open(out, "w", encoding="utf-8") as f:
        f.write(u"%s\n" % json.dumps(d, indent=2, sort_keys=True))
    print(" ".join(d["cases"]))


def load_case(outdir, entry):
    path = os.path.join(outdir, entry.get("reportfile", ""))
    try:
        with io.open(path, encoding="utf-8") as f:
            return json.load(f)
    except (IOError, OSError, ValueError):
        return {}


def summary(outdir, mode="fuzzingclient", expected=None):
    index = os.path.join(outdir, "index.json")
    try:
        with io.open(index, encoding="utf-8") as f:
            agents = json.load(f)
    except (IOError, OSError, ValueError) as e:
        print("autobahn: no usable report at %s: %s" % (index, e))
        return 2
    total_failed = 0
    total_cases = 0
    strict = os.environ.get("AUTOBAHN_STRICT_CLOSE", "1") != "0"
    for agent in sorted(agents):
        cases = agents[agent]
        ids = sorted(cases, key=case_key)
        total_cases += len(ids)
        counts = dict((b, 0) for b in BEHAVIORS)
        close_counts = {}
        for cid in ids:
            b = cases[cid].get("behavior", "?")
            counts[b] = counts.get(b, 0) + 1
            c = cases[cid].get("behaviorClose", "?")
            close_counts[c] = close_counts.get(c, 0) + 1
        extra = sorted(b for b in counts if b not in BEHAVIORS)
        print("")
        print("Autobahn|Testsuite %s, agent %s: %d cases" % (mode, agent, len(ids)))
        print("  behavior:      " + ", ".join("%s %d" % (b, counts[b]) for b in BEHAVIORS + extra))
        print("  behaviorClose: " + ", ".join("%s %d" % (c, close_counts[c]) for c in sorted(close_counts)))

        failed = [cid for cid in ids if cases[cid].get("behavior") == "FAILED"]
        close_failed = [cid for cid in ids
                        if cases[cid].get("behavior") != "FAILED" and cases[cid].get("behaviorClose") == "FAILED"]
        close_other = [cid for cid in ids
                       if cases[cid].get("behaviorClose") not in CLOSE_OK + ("FAILED",)
                       and cases[cid].get("behavior") != "FAILED"]
        non_strict = [cid for cid in ids if cases[cid].get("behavior") == "NON-STRICT"]
        unimpl = [cid for cid in ids if cases[cid].get("behavior") == "UNIMPLEMENTED"]

        def show(title, lst):
            print("")
            print("  %s: %s" % (title, len(lst) and len(lst) or "none"))
            for cid in lst:
                e = cases[cid]
                r = load_case(outdir, e)
                print("    %-8s behavior %s, close %s, remote close code %s, %s ms  [%s]" % (
                    cid, e.get("behavior"), e.get("behaviorClose"), e.get("remoteCloseCode"),
                    e.get("duration"), e.get("reportfile")))
                if r:
                    print("             case:     %s" % text(r.get("description"))[:300])
                    print("             expected: %s" % text(r.get("expectation"))[:300])
                    print("             result:   %s / %s" % (r.get("result"), r.get("resultClose")))

        show("FAILED cases", failed)
        show("close behavior FAILED (wrong endpoint closed, or no handshake)", close_failed)
        show("other close-behavior deviations (%s)" % ("fatal; AUTOBAHN_STRICT_CLOSE=0 only reports them" if strict else
                                                       "reported only: AUTOBAHN_STRICT_CLOSE=0"),
             close_other)
        if non_strict:
            print("")
            print("  NON-STRICT (accepted by the RFC, not the strictest behaviour): " + " ".join(non_strict))
        if unimpl:
            print("  UNIMPLEMENTED: " + " ".join(unimpl))
        missing = max(0, expected - len(ids)) if expected is not None else 0
        if missing:
            print("")
            print("  MISSING: %d of the %d cases are not in the report (they never ran to the end)"
                  % (missing, expected))
        n_failed = len(failed) + len(close_failed) + (len(close_other) if strict else 0) + missing
        total_failed += n_failed
        print("")
        print("RESULT agent=%s total=%d ok=%d non_strict=%d informational=%d unimplemented=%d failed=%d "
              "close_failed=%d close_deviations=%d%s" % (
                  agent, len(ids), counts["OK"], counts["NON-STRICT"], counts["INFORMATIONAL"],
                  counts["UNIMPLEMENTED"], len(failed), len(close_failed), len(close_other),
                  " missing=%d" % missing if expected is not None else ""))
    if total_cases == 0 and expected:
        # A report, but no case ran to the end: the testee's fault, not the run's.
        print("autobahn: the report lists none of the %d cases" % expected)
        print("RESULT agent=- total=0 ok=0 non_strict=0 informational=0 unimplemented=0 failed=0 "
              "close_failed=0 close_deviations=0 missing=%d" % expected)
        return 1
    if total_cases == 0:
        print("autobahn: the report lists no cases")
        return 2
    return 1 if total_failed else 0


def main(argv):
    if len(argv) in (6, 7, 9) and argv[1] == "spec":
        spec(argv[2], argv[3], argv[4], argv[5], argv[6] if len(argv) > 6 else "",
             *(argv[7:9] if len(argv) == 9 else ()))
        return 0
    if 3 <= len(argv) <= 5 and argv[1] == "summary":
        mode = argv[3] if len(argv) > 3 and argv[3] else "fuzzingclient"
        expected = int(argv[4]) if len(argv) > 4 else None
        return summary(argv[2], mode, expected)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
