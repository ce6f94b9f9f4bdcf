#!/usr/bin/env python3
"""The table of benches/e2e.sh: medians per test and back end, and ratios of every tapnet
variant to every anchor (slirp4netns 65520 and 1500, pasta, the kernel path).

usage: e2e-table.py OUTDIR      (reads results.tsv, mem.tsv, env.txt, backends.txt, skipped.txt)
"""
import csv
import os
import statistics
import sys
from collections import defaultdict

out = sys.argv[1]


def rows(name):
    p = os.path.join(out, name)
    if not os.path.exists(p):
        return []
    with open(p) as f:
        return list(csv.DictReader(f, delimiter="\t"))


def lines(name):
    p = os.path.join(out, name)
    return [l.rstrip("\n") for l in open(p)] if os.path.exists(p) else []


data = defaultdict(list)  # (backend, test) -> rows with a value
order = []
for r in rows("results.tsv") + rows("mem.tsv"):
    if r["backend"] not in order:
        order.append(r["backend"])
    if r["value"] not in ("NA", ""):
        data[(r["backend"], r["test"])].append(r)

ANCHORS = ["slirp65520", "slirp1500", "pasta", "kernel"]
PREFERRED = ["tapnet65520", "tapnet1500", "tapnet-uplink", "tapnet-daemon"] + ANCHORS
backends = [b for b in PREFERRED if b in order] + [b for b in order if b not in PREFERRED]
tapnets = [b for b in backends if b.startswith("tapnet")]
anchors = [b for b in ANCHORS if b in backends]

THROUGHPUT = [
    ("tcp_egress_host", "TCP container → host service"),
    ("tcp_egress_ext", "TCP container → peer namespace"),
    ("tcp_ingress_lo", "TCP host 127.0.0.1 → published port"),
    ("tcp_ingress_ext", "TCP peer namespace → published port"),
]


def med(be, test, key="value"):
    rs = data.get((be, test))
    if not rs:
        return None
    return statistics.median(float(r[key]) for r in rs)


def per_gbit(key):
    def f(be, test):
        rs = data.get((be, test))
        if not rs or (key == "fwd_cores" and be == "kernel"):
            return None
        g = statistics.median(float(r["value"]) for r in rs)
        c = statistics.median(float(r[key]) for r in rs)
        return c / g if g > 0 else None
    return f


# (label, unit, better, getter, test)
R = []
for t, label in THROUGHPUT:
    R.append((label, "Gbit/s", "higher", med, t))
R.append(("UDP container → host, 1400 B datagrams, received", "Gbit/s", "higher", med, "udp_egress_host"))
R.append(("request/response container → host", "round trips/s", "higher", med, "rr_egress_host"))
R.append(("request/response host → published port", "round trips/s", "higher", med, "rr_ingress_lo"))
R.append(("connections container → host service", "conn/s", "higher", med, "crr_egress_host"))
R.append(("connections host 127.0.0.1 → published port", "conn/s", "higher", med, "crr_ingress_lo"))
for t, label in THROUGHPUT:
    R.append(("CPU, whole host: " + label, "core-s per Gbit", "lower", per_gbit("sys_cores"), t))
for t, label in THROUGHPUT:
    R.append(("CPU, forwarder process: " + label, "core-s per Gbit", "lower", per_gbit("fwd_cores"), t))
R.append(("forwarder resident memory, idle after setup", "MiB (VmRSS)", "lower", med, "mem_rss_idle"))
R.append(("forwarder resident memory, after the tests", "MiB (VmRSS)", "lower", med, "mem_rss_after"))
R.append(("forwarder peak resident memory", "MiB (VmHWM)", "lower", med, "mem_hwm"))


def fmt(v, unit):
    if v is None:
        return "–"
    if unit in ("round trips/s", "conn/s"):
        return "{:,}".format(round(v)).replace(",", " ")
    if unit.startswith("MiB"):
        return "%.1f" % v
    return "%.2f" % v


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "–"
    r = a / b
    if r > 100:
        return ">100×"
    if r < 0.01:
        return "<0.01×"
    return ("%.2f×" % r) if r < 10 else ("%.0f×" % r)


env = dict(l.split(": ", 1) for l in lines("env.txt") if ": " in l)
print("End-to-end benchmark, %s; %s; %s, kernel %s." % (
    env.get("date", "?"), env.get("cpus", "?"), env.get("memory", "?"), env.get("kernel", "?")))
settings = [l for l in lines("env.txt") if l.startswith("secs=")]
print("Settings: %s. Medians over rounds; a round sets up every back end once, in turn." % (
    settings[0] if settings else "?"))
print("Ratios are tapnet ÷ anchor within this run: above 1× tapnet is faster, except in the CPU")
print("and memory rows (lower is better there, so below 1× tapnet uses less).")
print()
cols = backends + ["%s/%s" % (t, a) for t in tapnets for a in anchors]
print("| test | unit | " + " | ".join(cols) + " |")
print("|---|---|" + "---:|" * len(cols))
for label, unit, better, get, test in R:
    vals = {b: get(b, test) for b in backends}
    if all(v is None for v in vals.values()):
        continue
    cells = [fmt(vals[b], unit) for b in backends]
    cells += [ratio(vals[t], vals[a]) for t in tapnets for a in anchors]
    print("| %s | %s | %s |" % (label, unit, " | ".join(cells)))
print()
notes = lines("backends.txt")
if notes:
    print("Back ends:")
    print()
    for l in notes:
        be, _, note = l.partition("\t")
        print("- **%s**: %s" % (be, note))
    print()
skipped = lines("skipped.txt")
for l in skipped:
    be, _, why = l.partition("\t")
    print("- **%s**: %s" % (be, why))
if skipped:
    print()
failed = [(be, t) for be in backends for t in sorted({r["test"] for r in rows("results.tsv")})
          if any(r["backend"] == be and r["test"] == t and r["value"] in ("NA", "") for r in rows("results.tsv"))]
for be, t in failed:
    n = sum(1 for r in rows("results.tsv") if r["backend"] == be and r["test"] == t and r["value"] in ("NA", ""))
    print("- %s %s: %d run(s) failed (see results.tsv)" % (be, t, n))
g = lines("guard_drops")
print("Guard: %s packets for the test subnets tried to leave through the physical interface (must be 0)."
      % (g[0] if g else "?"))
