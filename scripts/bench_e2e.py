#!/usr/bin/env python3
"""End-to-end benchmark of tanma-connector; run it through `scripts/bench`.

Starts its own Kafka broker and schema registry (scripts/infra/infra.sh with its own
TANMA_INFRA_DIR and free ports), the simulator (release build) with BENCH_CUSTOMERS customers, and
the connector (release build) twice over the same topics:

  run A  backfill from an empty state           -> relations/s, CPU-s per 1M relations, API requests
  run B  fresh transactional id (no checkpoint) -> state restore (records/s, s), re-scan of
         unchanged data (CPU-s per 1M relations, must emit nothing), then freshness with live
         mutations (p50/p99 from the mutation's `at` to the event read back read_committed)

then Kafka's ProducerPerformance (transactional, same record sizes) for the broker's ceiling.
Prints a results table and writes it (markdown + JSON) to $BENCH_OUT (default .bench/<stamp>/).
Everything it starts is stopped on exit, by pid.
"""

import json
import math
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import datetime, timedelta, timezone

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
BIN = os.path.join(TARGET, "release", "tanma-connector")
CUSTOMERS = int(os.environ.get("BENCH_CUSTOMERS", "1000000"))
FRESH_SECS = int(os.environ.get("BENCH_FRESH_SECS", "120"))
NEW_PER_SEC = float(os.environ.get("BENCH_NEW_PER_SEC", "20"))
LATE_PER_SEC = float(os.environ.get("BENCH_LATE_PER_SEC", "2"))
PAGE_SIZE = 100
WINDOW_SECS = int(os.environ.get("BENCH_WINDOW_SECS", "3600"))
SPLIT_THRESHOLD = int(os.environ.get("BENCH_SPLIT_THRESHOLD", "5000"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "4"))
SETTLE_LAG = 10
POLL_MS = 5000
PARTITIONS = 6
APP_ID, APP_KEY = "bench-app", "bench-secret-not-a-real-key"
KAFKA_LIBS = os.path.join(os.path.expanduser("~"), ".cache", "tanma-infra", "kafka-4.1.1")
CLK_TCK = os.sysconf("SC_CLK_TCK")
STAMP = datetime.now().strftime("%Y%m%d-%H%M%S")
OUT = os.environ.get("BENCH_OUT", os.path.join(ROOT, ".bench", STAMP))

procs = []  # (name, Popen) we started; stopped by pid on exit
infra_env = None


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def infra_addresses(infra_dir):
    """The `export NAME=VALUE` lines of the env file `infra.sh start` wrote, as a dict."""
    with open(os.path.join(infra_dir, "env")) as f:
        return dict(l[len("export "):].strip().split("=", 1) for l in f if l.startswith("export "))


def http(url, method="GET", body=None, timeout=30):
    req = urllib.request.Request(url, method=method, data=body)
    if body is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.read()


def http_json(url, **kw):
    return json.loads(http(url, **kw)[1])


def wait_until(what, deadline_secs, probe, every=0.2, proc=None):
    """Polls `probe` until it returns a truthy value; fails loudly at the deadline."""
    end = time.monotonic() + deadline_secs
    while True:
        try:
            v = probe()
        except Exception:  # noqa: BLE001 - not up yet
            v = None
        if v:
            return v
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"bench: {what}: the process exited with {proc.returncode}")
        if time.monotonic() > end:
            raise SystemExit(f"bench: {what}: not reached within {deadline_secs}s")
        time.sleep(every)


def cpu_secs(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def vm_hwm_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def metrics(port):
    _, body = http(f"http://127.0.0.1:{port}/metrics", timeout=10)
    out = {}
    for line in body.decode().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, _, value = line.rpartition(" ")
        try:
            out[name] = float(value)
        except ValueError:
            pass
    return out


def metric(m, name):
    return sum(v for k, v in m.items() if k == name or k.startswith(name + "{"))


def start(name, args, env=None, stdout=None):
    path = os.path.join(OUT, f"{name}.log")
    err = open(path, "w")
    p = subprocess.Popen(args, env={**os.environ, **(env or {})}, stdout=stdout or err,
                         stderr=err, cwd=ROOT)
    procs.append((name, p))
    log(f"started {name} (pid {p.pid}), log {path}")
    return p


def stop(p, grace=60):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(grace)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def cleanup():
    for name, p in reversed(procs):
        if p.poll() is None:
            log(f"stopping {name} (pid {p.pid})")
            stop(p, 30)
    if infra_env is not None:
        subprocess.run([os.path.join(ROOT, "scripts/infra/infra.sh"), "stop"], env=infra_env,
                       stdout=subprocess.DEVNULL)
    if not os.environ.get("BENCH_KEEP_DATA"):
        # Gigabytes at 1M customers; the logs and results stay.
        for d in ("infra/kafka/logs", "infra/registry", "state-a", "state-b"):
            shutil.rmtree(os.path.join(OUT, d), ignore_errors=True)


def log_lines(path, message):
    """JSON log lines of `path` whose message is `message`, flattened."""
    out = []
    with open(path, errors="replace") as f:
        for line in f:
            if message not in line:
                continue
            try:
                j = json.loads(line)
            except ValueError:
                continue
            flat = {**j, **j.get("fields", {})}
            if flat.get("message") == message:
                out.append(flat)
    return out


def connector_config(path, prefix, txn, sim_port, ops_port, state_dir, bootstrap, registry,
                     lookback):
    with open(path, "w") as f:
        f.write(f"""# written by scripts/bench
[api]
base_url = "http://127.0.0.1:{sim_port}"
app_id = "{APP_ID}"
page_size = {PAGE_SIZE}
rate_limit_per_sec = 100000.0
rate_limit_burst = 100
request_timeout_ms = 10000
[windows]
start_time = "{SIM_START}"
window_secs = {WINDOW_SECS}
split_threshold = {SPLIT_THRESHOLD}
settle_lag_secs = {SETTLE_LAG}
poll_interval_ms = {POLL_MS}
lookback_secs = {lookback}
concurrency = {CONCURRENCY}
rescan = [{{ max_age_secs = 0, every_secs = 31536000 }}]
[kafka]
bootstrap_servers = "{bootstrap}"
transactional_id = "{txn}"
[kafka.properties]
"fetch.wait.max.ms" = "50"
[topics]
events = "{prefix}.events"
state = "{prefix}.state"
checkpoint = "{prefix}.checkpoint"
dead_letter = "{prefix}.dlq"
partitions = {PARTITIONS}
[schema_registry]
url = "{registry}"
[state]
dir = "{state_dir}"
restore_timeout_ms = 300000
[ops]
listen = "127.0.0.1:{ops_port}"
log_format = "json"
progress = false
""")


def run_connector(name, cfg, sim_url, relations, expect_created):
    """Starts the connector, waits until it has read `relations` relations. Returns figures."""
    ops_port = int(re.search(r'listen = "127.0.0.1:(\d+)"', open(cfg).read()).group(1))
    env = {"TANMA_API__APP_KEY": APP_KEY,
           "RUST_LOG": "info,tanma_connector::pipeline::runner=debug,librdkafka=warn,rdkafka=warn"}
    req0 = sum(http_json(f"{sim_url}/_sim/stats")["requests"].values())
    t0 = time.monotonic()
    p = start(name, [BIN, "run", "--config", cfg], env=env)
    wait_until(f"{name} ready", 600,
               lambda: http(f"http://127.0.0.1:{ops_port}/ready", timeout=2)[0] == 200,
               proc=p)
    t_ready, cpu_ready, hwm_ready = time.monotonic(), cpu_secs(p.pid), vm_hwm_mb(p.pid)
    log(f"{name}: ready after {t_ready - t0:.1f}s (CPU {cpu_ready:.1f}s, VmHWM {hwm_ready:.0f} MB)")

    def done():
        m = metrics(ops_port)
        return m if metric(m, "tanma_relations_read_total") >= relations else None

    m = wait_until(f"{name} reads all {relations} relations", 3600, done, every=0.1, proc=p)
    t_done, cpu_done, hwm = time.monotonic(), cpu_secs(p.pid), vm_hwm_mb(p.pid)
    req = sum(http_json(f"{sim_url}/_sim/stats")["requests"].values()) - req0
    created = metric(m, 'tanma_events_total{type="CREATED"}')
    updated = metric(m, 'tanma_events_total{type="UPDATED"}')
    # A customer's relations may lie in different windows: CREATED for the first one read, then
    # UPDATED (a new follower) for each later one. A re-scan of unchanged data emits nothing.
    max_updated = relations - expect_created
    if created != expect_created or updated > max_updated:
        raise SystemExit(f"bench: {name}: {created:.0f} CREATED / {updated:.0f} UPDATED events, "
                         f"expected {expect_created} / at most {max_updated}")
    secs = t_done - t_ready
    log(f"{name}: {relations} relations in {secs:.1f}s, CPU {cpu_done - cpu_ready:.1f}s, "
        f"{req} requests, VmHWM {hwm:.0f} MB")
    return {
        "proc": p, "ops_port": ops_port, "secs": secs, "startup_secs": t_ready - t0,
        "cpu_startup": cpu_ready, "cpu_work": cpu_done - cpu_ready, "cpu_total": cpu_done,
        "hwm_mb": hwm, "hwm_ready_mb": hwm_ready, "requests": req,
        "transactions": metric(m, 'tanma_kafka_transactions_total{outcome="committed"}'),
        "records": metric(m, "tanma_kafka_records_produced_total"),
        "log": os.path.join(OUT, f"{name}.log"),
    }


def request_minimum(logfile, total):
    reads = log_lines(logfile, "Window read.")
    splits = len(log_lines(logfile, "Window too large; splitting."))
    leaf_min = sum(math.ceil(int(r.get("total_count", 0)) / PAGE_SIZE) for r in reads)
    return {"windows": len(reads), "splits": splits, "leaf_min": leaf_min,
            "abs_min": math.ceil(total / PAGE_SIZE),
            "empty_windows": sum(1 for r in reads if int(r.get("total_count", 0)) == 0)}


def freshness(run, sim_url, cfg):
    """Live mutations; latency from a relation's `at` to its event read back read_committed."""
    seen = {}  # (ext, qw) -> first receive time
    lock = threading.Lock()
    p = start("tail", [BIN, "tail", "--config", cfg, "--from-end"],
              env={"TANMA_API__APP_KEY": APP_KEY}, stdout=subprocess.PIPE)

    def reader():
        for line in p.stdout:
            now = time.time()
            try:
                e = json.loads(line)
            except ValueError:
                continue
            ext = e.get("external_user_id")
            for r in (e.get("after") or {}).get("relations") or []:
                with lock:
                    seen.setdefault((ext, r.get("qw_user_id")), now)

    threading.Thread(target=reader, daemon=True).start()
    # Prove the whole path (sim -> connector -> Kafka -> tail) is live before measuring.
    probe = http_json(f"{sim_url}/_sim/apply", method="POST",
                      body=json.dumps({"kind": "new", "count": 1}).encode())[0]
    key = (probe["externalUserId"], probe["qwUserId"])
    wait_until("tail sees a probe relation", SETTLE_LAG + POLL_MS / 1000 + 120,
               lambda: key in seen, proc=p)
    seq0 = http_json(f"{sim_url}/_sim/stats")["lastMutationSeq"]
    cpu0, t0 = cpu_secs(run["proc"].pid), time.monotonic()
    http(f"{sim_url}/_sim/mutations/resume", method="POST", body=b"{}")
    log(f"freshness: live mutations for {FRESH_SECS}s "
        f"({NEW_PER_SEC}/s new, {LATE_PER_SEC}/s late)")
    time.sleep(FRESH_SECS)  # the measurement period itself, not a synchronisation
    http(f"{sim_url}/_sim/mutations/pause", method="POST", body=b"{}")
    muts = [m for m in http_json(f"{sim_url}/_sim/mutations?after={seq0}&limit=100000")
            if m["kind"] in ("new", "late")]
    bound = SETTLE_LAG + POLL_MS / 1000 + 2

    def all_seen():
        with lock:
            return all((m["externalUserId"], m["qwUserId"]) in seen for m in muts)

    try:
        wait_until("every new/late relation's event", bound + 60, all_seen, every=0.5)
    except SystemExit as e:
        log(str(e))
    cpu_live = cpu_secs(run["proc"].pid) - cpu0
    live_secs = time.monotonic() - t0
    lat = {"new": [], "late": []}
    missing = 0
    with lock:
        for m in muts:
            at = parse_time(m["at"])
            t = seen.get((m["externalUserId"], m["qwUserId"]))
            if t is None:
                missing += 1
            else:
                lat[m["kind"]].append(t - at)
    stop(p, 10)
    allv = sorted(lat["new"] + lat["late"])

    def pct(v, q):
        return v[min(len(v) - 1, int(round(q * (len(v) - 1))))] if v else float("nan")

    return {"n": len(allv), "missing": missing, "bound": bound,
            "p50": pct(allv, 0.5), "p99": pct(allv, 0.99), "max": allv[-1] if allv else None,
            "p50_new": pct(sorted(lat["new"]), 0.5), "p99_new": pct(sorted(lat["new"]), 0.99),
            "p50_late": pct(sorted(lat["late"]), 0.5), "p99_late": pct(sorted(lat["late"]), 0.99),
            "cpu_live_per_min": cpu_live / live_secs * 60}


def parse_time(s):
    """RFC 3339 UTC with up to nanoseconds (chrono's form) → epoch seconds."""
    base, _, frac = s.rstrip("Z").partition(".")
    frac = frac.split("+")[0]
    t = datetime.fromisoformat(base).replace(tzinfo=timezone.utc).timestamp()
    return t + (float("0." + frac) if frac else 0.0)


def record_sizes(topic, data_dir):
    """Mean key and value size of the records in partition 0 of `topic` (uncompressed)."""
    d = os.path.join(data_dir, "kafka", "logs", f"{topic}-0")
    seg = sorted(f for f in os.listdir(d) if f.endswith(".log"))[0]
    out = subprocess.run(["java", "-cp", f"{KAFKA_LIBS}/*", "kafka.tools.DumpLogSegments",
                          "--files", os.path.join(d, seg), "--deep-iteration"],
                         capture_output=True, text=True, check=True).stdout
    keys = [int(x) for x in re.findall(r"keySize: (\d+)", out)]
    vals = [int(x) for x in re.findall(r"valueSize: (\d+)", out)]
    # Control records (transaction markers) have keySize 4 and valueSize 6; skip them.
    pairs = [(k, v) for k, v in zip(keys, vals) if v > 16]
    return (statistics.mean(k for k, _ in pairs), statistics.mean(v for _, v in pairs))


def producer_perf(bootstrap, size, n, txn_ms):
    topic = f"bench-perf-{STAMP}"
    subprocess.run(["java", "-cp", f"{KAFKA_LIBS}/*", "org.apache.kafka.tools.TopicCommand",
                    "--bootstrap-server", bootstrap, "--create", "--topic", topic,
                    "--partitions", str(PARTITIONS), "--replication-factor", "1"],
                   check=True, stdout=subprocess.DEVNULL)
    out = subprocess.run(
        ["java", "-Xmx512m", "-cp", f"{KAFKA_LIBS}/*", "org.apache.kafka.tools.ProducerPerformance",
         "--topic", topic, "--num-records", str(n), "--record-size", str(size),
         "--throughput", "-1", "--transactional-id", f"bench-perf-{STAMP}",
         "--transaction-duration-ms", str(txn_ms), "--producer-props",
         f"bootstrap.servers={bootstrap}", "acks=all", "compression.type=lz4", "linger.ms=5",
         "enable.idempotence=true"],
        capture_output=True, text=True, check=True).stdout
    with open(os.path.join(OUT, "producer-perf.log"), "w") as f:
        f.write(out)
    last = [l for l in out.splitlines() if "records sent" in l][-1]
    rate = float(re.search(r"([\d.]+) records/sec", last).group(1))
    mbs = float(re.search(r"\(([\d.]+) MB/sec\)", last).group(1))
    return {"records_per_sec": rate, "mb_per_sec": mbs, "line": last.strip()}


def main():
    global infra_env, SIM_START
    os.makedirs(OUT, exist_ok=True)
    load0 = os.getloadavg()[0]
    if not os.access(BIN, os.X_OK):
        raise SystemExit(f"bench: {BIN} missing; run scripts/bench (it builds it)")
    ports = {k: free_port() for k in ("sim", "opsa", "opsb")}
    infra_dir = os.path.join(OUT, "infra")
    # infra.sh takes free ports for everything; its env file says which.
    infra_env = {**os.environ, "TANMA_INFRA_DIR": infra_dir}
    log(f"starting our own broker and registry in {infra_dir}")
    subprocess.run([os.path.join(ROOT, "scripts/infra/infra.sh"), "start"], env=infra_env,
                   check=True, stdout=subprocess.DEVNULL)
    addresses = infra_addresses(infra_dir)
    bootstrap = addresses["KAFKA_BOOTSTRAP_SERVERS"]
    registry = addresses["SCHEMA_REGISTRY_URL"]

    end = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(seconds=60)
    SIM_START = (end - timedelta(days=30)).isoformat()
    sim_url = f"http://127.0.0.1:{ports['sim']}"
    t = time.monotonic()
    sim = start("sim", [BIN, "sim", "--listen", f"127.0.0.1:{ports['sim']}",
                        "--customers", str(CUSTOMERS), "--start", SIM_START,
                        "--end", end.isoformat(), "--paused", "--app-id", APP_ID,
                        "--new-per-sec", str(NEW_PER_SEC), "--late-per-sec", str(LATE_PER_SEC),
                        "--changed-per-sec", "0", "--removed-per-sec", "0",
                        "--late-lookback-secs", "1800"],
                env={"SIM_APP_KEY": APP_KEY, "RUST_LOG": "warn"})
    st = wait_until("simulator up", 600, lambda: http_json(f"{sim_url}/_sim/stats"), proc=sim)
    relations, customers = st["relations"], st["customers"]
    log(f"simulator: {customers} customers, {relations} relations "
        f"(generated in {time.monotonic() - t:.1f}s)")

    prefix = f"bench-{STAMP}"
    cfg_a, cfg_b = os.path.join(OUT, "run-a.toml"), os.path.join(OUT, "run-b.toml")
    connector_config(cfg_a, prefix, f"{prefix}-a", ports["sim"], ports["opsa"],
                     os.path.join(OUT, "state-a"), bootstrap, registry, lookback=0)
    connector_config(cfg_b, prefix, f"{prefix}-b", ports["sim"], ports["opsb"],
                     os.path.join(OUT, "state-b"), bootstrap, registry, lookback=3600)

    a = run_connector("run-a-backfill", cfg_a, sim_url, relations, customers)
    stop(a["proc"])
    a["reqmin"] = request_minimum(a["log"], relations)

    b = run_connector("run-b-rescan", cfg_b, sim_url, relations, 0)
    restored = log_lines(b["log"], "State restored.")[0]
    b["restore_records"], b["restore_secs"] = int(restored["records"]), float(restored["secs"])
    b["restore_customers"] = int(restored["customers"])
    b["reqmin"] = request_minimum(b["log"], relations)
    fresh = freshness(b, sim_url, cfg_b)
    b["hwm_end_mb"] = vm_hwm_mb(b["proc"].pid)
    stop(b["proc"])

    ev_key, ev_val = record_sizes(f"{prefix}.events", infra_dir)
    st_key, st_val = record_sizes(f"{prefix}.state", infra_dir)
    size = int(round((ev_val + st_val) / 2))
    txn_ms = max(20, int(a["secs"] * 1000 / max(1, a["transactions"])))
    log(f"record sizes: event {ev_val:.0f} B, state {st_val:.0f} B; ProducerPerformance with "
        f"{size} B, {int(a['records'])} records, transactions of {txn_ms} ms")
    perf = producer_perf(bootstrap, size, int(a["records"]), txn_ms)
    report(locals())


def report(v):
    a, b, fresh, perf = v["a"], v["b"], v["fresh"], v["perf"]
    rel, cust = v["relations"], v["customers"]
    per_m = 1e6 / rel
    produce_rate = a["records"] / a["secs"]
    rows = [
        ("dataset", f"{cust:,} customers, {rel:,} relations", "", ""),
        ("backfill throughput", f"{rel / a['secs']:,.0f} relations/s ({a['secs']:.1f} s)",
         "≥ 30,000 relations/s", rel / a["secs"] >= 30000),
        ("backfill CPU (connector)", f"{a['cpu_work'] * per_m:.2f} CPU-s per 1M relations "
         f"(+{a['cpu_startup']:.2f} s start-up)", "≤ 10 CPU-s / 1M", a["cpu_work"] * per_m <= 10),
        ("re-scan of unchanged data CPU", f"{b['cpu_work'] * per_m:.2f} CPU-s per 1M relations "
         f"({rel / b['secs']:,.0f} relations/s, 0 events)", "≤ 3 CPU-s / 1M",
         b["cpu_work"] * per_m <= 3),
        ("peak RSS (VmHWM), backfill", f"{a['hwm_mb']:.0f} MB", "≤ 128 MB", a["hwm_mb"] <= 128),
        ("peak RSS (VmHWM), restore + re-scan + live", f"{b['hwm_end_mb']:.0f} MB "
         f"({b['hwm_ready_mb']:.0f} MB after restore)", "≤ 128 MB", b["hwm_end_mb"] <= 128),
        ("state restore", f"{b['restore_records'] / b['restore_secs']:,.0f} records/s; "
         f"{b['restore_records']:,} records ({b['restore_customers']:,} customers) in "
         f"{b['restore_secs']:.2f} s "
         f"(start-up to ready {b['startup_secs']:.1f} s)", "≥ 250,000 records/s",
         b["restore_records"] / b["restore_secs"] >= 250000),
    ]
    for name, run in (("backfill", a), ("re-scan", b)):
        q = run["reqmin"]
        rows.append((f"API requests, {name}",
                     f"{run['requests']:,} = {run['requests'] / q['abs_min']:.3f} × ceil(total/100) "
                     f"= {q['abs_min']:,}; {run['requests'] / max(1, q['leaf_min']):.3f} × "
                     f"Σ windows ceil(rows/100) = {q['leaf_min']:,} ({q['windows']} windows, "
                     f"{q['splits']} splits, {q['empty_windows']} empty)",
                     "≤ 1.05 × minimum", run["requests"] <= 1.05 * q["abs_min"]))
    rows += [
        ("freshness (new + late relations)",
         f"p50 {fresh['p50']:.2f} s, p99 {fresh['p99']:.2f} s, max {fresh['max'] or float('nan'):.2f} s "
         f"(n={fresh['n']}, missing {fresh['missing']}; new p99 {fresh['p99_new']:.2f} s, "
         f"late p99 {fresh['p99_late']:.2f} s)",
         f"p99 ≤ {fresh['bound']:.0f} s (settle {SETTLE_LAG} + poll {POLL_MS / 1000:.0f} + 2)",
         fresh["p99"] <= fresh["bound"] and fresh["missing"] == 0),
        ("connector CPU while live", f"{fresh['cpu_live_per_min']:.2f} CPU-s per minute", "", ""),
        ("connector produce rate (backfill)",
         f"{produce_rate:,.0f} records/s = {produce_rate / perf['records_per_sec']:.0%} of the "
         f"broker's ceiling", "", ""),
        ("broker ceiling (ProducerPerformance)",
         f"{perf['records_per_sec']:,.0f} records/s, {perf['mb_per_sec']:.1f} MB/s at "
         f"{v['size']} B (events {v['ev_val']:.0f} B, state {v['st_val']:.0f} B), "
         f"transactions of {v['txn_ms']} ms", "", ""),
    ]
    machine = (f"{os.cpu_count()} CPUs, {os.uname().machine}, {os.uname().release}; load average "
               f"{v['load0']:.1f} at start, {os.getloadavg()[0]:.1f} at end")
    lines = [f"# tanma-connector end-to-end benchmark, {datetime.now().isoformat(timespec='seconds')}",
             "", f"Machine: {machine}. Config: window_secs={WINDOW_SECS}, "
             f"split_threshold={SPLIT_THRESHOLD}, concurrency={CONCURRENCY}, page_size={PAGE_SIZE}, "
             f"{PARTITIONS} partitions, schema registry framing.", "",
             "| figure | measured | target | |", "| --- | --- | --- | --- |"]
    for name, val, target, ok in rows:
        mark = "" if ok == "" else ("met" if ok else "**missed**")
        lines.append(f"| {name} | {val} | {target} | {mark} |")
    text = "\n".join(lines) + "\n"
    print(text)
    with open(os.path.join(OUT, "results.md"), "w") as f:
        f.write(text)
    data = {"a": {k: x for k, x in a.items() if k != "proc"},
            "b": {k: x for k, x in b.items() if k != "proc"},
            "fresh": fresh, "perf": perf, "relations": rel, "customers": cust,
            "sizes": {"event": v["ev_val"], "state": v["st_val"], "perf": v["size"]}}
    with open(os.path.join(OUT, "results.json"), "w") as f:
        json.dump(data, f, indent=2, default=str)
    log(f"results written to {OUT}/results.md and results.json")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
    finally:
        cleanup()
