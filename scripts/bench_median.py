#!/usr/bin/env python3
"""Median (and range) of several `scripts/bench` runs: reads each run's results.json and prints
the end-to-end table and the target status table of BENCHMARKS.md.

    scripts/bench_median.py .bench/<stamp1> .bench/<stamp2> .bench/<stamp3>

`BENCH_RUNS=3 scripts/bench` runs the benchmark three times and calls this at the end.
"""
import json, os, sys, statistics as st
dirs=sys.argv[1:]
if not dirs:
    raise SystemExit("usage: scripts/bench_median.py RUN_DIR [RUN_DIR ...]  (each a .bench/<stamp> of scripts/bench)")
runs=[json.load(open(os.path.join(d, "results.json"))) for d in dirs]
def med(f): 
    v=[f(r) for r in runs]; return st.median(v), min(v), max(v)
n=lambda r: r['relations']
thr=med(lambda r: n(r)/r['a']['secs'])
bcpu=med(lambda r: r['a']['cpu_work']/n(r)*1e6)
rcpu=med(lambda r: r['b']['cpu_work']/n(r)*1e6)
rthr=med(lambda r: n(r)/r['b']['secs'])
rssa=med(lambda r: r['a']['hwm_mb'])
rssb=med(lambda r: r['b']['hwm_end_mb'])
rssbr=med(lambda r: r['b']['hwm_ready_mb'])
rest=med(lambda r: r['b']['restore_records']/r['b']['restore_secs'])
rests=med(lambda r: r['b']['restore_secs'])
reqa=med(lambda r: r['a']['requests']/r['a']['reqmin']['abs_min'])
reqal=med(lambda r: r['a']['requests']/r['a']['reqmin']['leaf_min'])
reqb=med(lambda r: r['b']['requests']/r['b']['reqmin']['abs_min'])
reqbl=med(lambda r: r['b']['requests']/r['b']['reqmin']['leaf_min'])
p50=med(lambda r: r['fresh']['p50']); p99=med(lambda r: r['fresh']['p99']); mx=med(lambda r: r['fresh']['max'])
live=med(lambda r: r['fresh']['cpu_live_per_min'])
ceil=med(lambda r: r['perf']['records_per_sec'])
prod=med(lambda r: r['a']['records']/r['a']['secs'])
ratio=med(lambda r: r['a']['records']/r['a']['secs']/r['perf']['records_per_sec'])
r0=runs[0]
bound=r0['fresh']['bound']
def rng(t, fmt): return f"{fmt.format(t[0])} ({fmt.format(t[1])} – {fmt.format(t[2])})"
ok=lambda c: "met" if c else "**missed**"
fresh_n=[(r['fresh']['n'], r['fresh']['missing']) for r in runs]
table=f"""| figure (median of {len(runs)} runs; range) | measured | target | |
| --- | --- | --- | --- |
| dataset | {r0['customers']:,} customers, {min(n(r) for r in runs):,}–{max(n(r) for r in runs):,} relations |  |  |
| backfill throughput | {rng(thr,'{:,.0f}')} relations/s | ≥ 30,000 relations/s | {ok(thr[0]>=30000)} |
| backfill CPU (connector) | {rng(bcpu,'{:.1f}')} CPU-s per 1M relations | ≤ 10 CPU-s / 1M | {ok(bcpu[0]<=10)} |
| re-scan of unchanged data CPU | {rng(rcpu,'{:.1f}')} CPU-s per 1M relations ({rthr[0]:,.0f} relations/s, 0 events) | ≤ 3 CPU-s / 1M | {ok(rcpu[0]<=3)} |
| peak RSS (VmHWM), backfill | {rng(rssa,'{:.0f}')} MB | ≤ 128 MB | {ok(rssa[0]<=128)} |
| peak RSS (VmHWM), restore + re-scan + live | {rng(rssb,'{:.0f}')} MB ({rssbr[0]:.0f} MB right after the restore) | ≤ 128 MB | {ok(rssb[0]<=128)} |
| state restore | {rng(rest,'{:,.0f}')} records/s; {st.median([r['b']['restore_records'] for r in runs]):,.0f} records ({r0['customers']:,} customers) in {rests[0]:.2f} s | ≥ 250,000 records/s | {ok(rest[0]>=250000)} |
| API requests, backfill | {rng(reqa,'{:.3f}')} × ceil(total/100); {reqal[0]:.3f} × Σ windows ceil(rows/100) ({r0['a']['reqmin']['windows']} windows, {r0['a']['reqmin']['splits']} splits) | ≤ 1.05 × minimum | {ok(reqa[0]<=1.05)} |
| API requests, re-scan | {rng(reqb,'{:.3f}')} × ceil(total/100); {reqbl[0]:.3f} × Σ windows ceil(rows/100) | ≤ 1.05 × minimum | {ok(reqb[0]<=1.05)} |
| freshness (new + late relations) | p50 {p50[0]:.2f} s, p99 {rng(p99,'{:.2f}')} s, max {mx[0]:.2f} s (n = {fresh_n[0][0]} a run, missing {sum(m for _,m in fresh_n)}) | p99 ≤ {bound:.0f} s (settle + poll + 2) | {ok(p99[0]<=bound)} |
| connector CPU while live | {live[0]:.2f} CPU-s per minute |  |  |
| connector produce rate (backfill) | {rng(prod,'{:,.0f}')} records/s = {ratio[0]*100:.0f} % ({ratio[1]*100:.0f}–{ratio[2]*100:.0f} %) of the broker's ceiling |  |  |
| broker ceiling (ProducerPerformance) | {rng(ceil,'{:,.0f}')} records/s at {r0['sizes']['perf']} B (events {r0['sizes']['event']:.0f} B, state {r0['sizes']['state']:.0f} B) |  |  |

Runs: {', '.join('`'+os.path.relpath(d)+'`' for d in dirs)}."""
targets=f"""| target | status (median) |
| --- | --- |
| backfill ≥ 30,000 relations/s | {ok(thr[0]>=30000)}: {thr[0]:,.0f} relations/s ({thr[1]:,.0f}–{thr[2]:,.0f}) |
| backfill ≤ 10 CPU-s / 1M relations | {ok(bcpu[0]<=10)}: {bcpu[0]:.1f} |
| re-scan ≤ 3 CPU-s / 1M relations | {ok(rcpu[0]<=3)}: {rcpu[0]:.1f} |
| peak RSS ≤ 128 MB with 1M customers ({r0['customers']:,} here) | {ok(max(rssa[0],rssb[0])<=128)}: {rssa[0]:.0f} MB (backfill), {rssb[0]:.0f} MB (restore + re-scan + live) |
| restore ≥ 250,000 records/s | {ok(rest[0]>=250000)}: {rest[0]:,.0f} records/s |
| API requests ≤ 1.05 × minimum | {ok(reqa[0]<=1.05 and reqb[0]<=1.05)}: {reqa[0]:.3f} × (backfill), {reqb[0]:.3f} × (re-scan) the absolute minimum |
| freshness p99 ≤ settle + poll + 2 s | {ok(p99[0]<=bound)}: {p99[0]:.2f} s ≤ {bound:.0f} s, {sum(m for _,m in fresh_n)} missing |"""

print(table)
print()
print(targets)
