#!/usr/bin/env python3
"""Where the time of one timed bench phase goes (scripts/bench-profile.sh).

Watches a `concertctl bench` output file. When the line `phase started: <NAME>` of the
phase appears it reads each process's CPU time from /proc, resets pg_stat_statements and
starts `perf record -a -g`; when the phase's result line (`<NAME>: ...`) appears it reads
the CPU times again and stops perf. Prints, for the phase: each process group's CPU per
call (microseconds) and its share of the machine, PostgreSQL's statements by total time
(per call of the phase), and perf's busiest processes and symbols.

CPU is counted per process from /proc/<pid>/stat (user + system, all threads), so the
figures do not depend on perf being able to sample every process. PostgreSQL is the sum of
its live processes plus what its postmaster collected from exited children.
"""
import argparse
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time

TICK = os.sysconf("SC_CLK_TCK")


def cpu_ticks(pid, children=False):
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    # After the ")" field 0 is state: utime is field 11, stime 12, cutime 13, cstime 14.
    own = int(fields[11]) + int(fields[12])
    return own + (int(fields[13]) + int(fields[14]) if children else 0)


def postgres_ticks(postmaster):
    total = cpu_ticks(postmaster, children=True)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == postmaster:
                total += cpu_ticks(int(entry))
    return total


def snapshot(groups, postmaster):
    cpu = {name: sum(cpu_ticks(p) for p in pids) for name, pids in groups.items()}
    cpu["postgresql"] = postgres_ticks(postmaster)
    return time.monotonic(), cpu


def wait_for(path, pattern, bench_pid, on_tick=None):
    regex = re.compile(pattern)
    while True:
        if on_tick:
            on_tick()
        try:
            for line in open(path):
                if regex.search(line):
                    return line.strip()
        except FileNotFoundError:
            pass
        if bench_pid and not os.path.exists(f"/proc/{bench_pid}"):
            sys.exit(f"profile: the bench ended before a line matching {pattern!r}")
        time.sleep(0.05)


def psql(url, sql):
    return subprocess.run(["psql", url, "-XAtF", "\t", "-c", sql], check=True, capture_output=True, text=True).stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--log", required=True, help="the bench's output file (written by --command when given)")
    ap.add_argument("--phase", help="the phase name's start, e.g. PayReservation")
    ap.add_argument("--bench-pid", type=int, help="the running bench (without --command)")
    ap.add_argument("--command", help="instead of a bench: run this pgbench command line; the window is its run")
    ap.add_argument("--postmaster", type=int, required=True)
    ap.add_argument("--group", action="append", default=[], help="NAME=PID[,PID...]")
    ap.add_argument("--db", required=True, help="a URL to the database with pg_stat_statements")
    ap.add_argument("--perf-out", help="perf.data path (no perf when absent)")
    ap.add_argument("--json", help="write the figures here too")
    args = ap.parse_args()
    groups = {g.split("=", 1)[0]: [int(p) for p in g.split("=", 1)[1].split(",")] for g in args.group}
    if args.command:
        psql(args.db, "SELECT pg_stat_statements_reset()")
    else:
        wait_for(args.log, rf"^phase started: {re.escape(args.phase)}", args.bench_pid)
        psql(args.db, "SELECT pg_stat_statements_reset()")
    perf = None
    if args.perf_out:
        perf = subprocess.Popen(
            ["perf", "record", "-a", "-g", "-F", "499", "-o", args.perf_out],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
    if args.command:
        log = open(args.log, "w")
        run = subprocess.Popen(shlex.split(args.command), stdout=log, stderr=subprocess.STDOUT)
        generator_pid = run.pid
    else:
        generator_pid = args.bench_pid
    groups["generator"] = [generator_pid]
    t0, before = snapshot(groups, args.postmaster)
    # The generator exits right after printing its last phase, taking its CPU counters with
    # it: keep its latest reading (taken every 50 ms) for the end of the window.
    generator = {"ticks": before["generator"]}

    def read_generator():
        generator["ticks"] = max(generator["ticks"], cpu_ticks(generator_pid))

    if args.command:
        # Reaped here, so its resource usage (all threads, to the end) is exact.
        while True:
            pid, status, usage = os.wait4(run.pid, os.WNOHANG)
            if pid:
                break
            time.sleep(0.05)
        run.returncode = os.waitstatus_to_exitcode(status)
        before["generator"] = 0
        generator["ticks"] = round((usage.ru_utime + usage.ru_stime) * TICK)
        log.close()
        output = open(args.log).read()
        if run.returncode != 0:
            sys.exit(f"profile: {args.command!r} failed:\n{output}")
        tps = re.search(r"tps = ([0-9.]+) \(without", output)
        processed = re.search(r"number of transactions actually processed: (\d+)", output)
        result = f"pgbench: {processed.group(1)} calls, {float(tps.group(1)):.0f}/s"
    else:
        result = wait_for(args.log, rf"^{re.escape(args.phase)}.*: ", args.bench_pid, read_generator)
    t1 = time.monotonic()

    def stop_perf():
        if perf:
            perf.send_signal(signal.SIGINT)
            perf.wait()

    if args.command:
        # pgbench's connections end with it: let their backends exit and be reaped, so their
        # CPU is in the postmaster's children's time and not lost between two readings.
        stop_perf()
        time.sleep(1)
        _, after = snapshot(groups, args.postmaster)
    else:
        # At once: the services go on with background work after the phase.
        _, after = snapshot(groups, args.postmaster)
        stop_perf()
    after["generator"] = generator["ticks"]

    m = re.search(r"(\d+) calls", result)
    calls = int(m.group(1)) if m else 0
    secs = t1 - t0
    print(f"\n== {result}")
    print(f"window {secs:.1f} s, {calls} calls; the machine has {os.cpu_count()} cores "
          f"({os.cpu_count() * secs:.1f} CPU-seconds)")
    print(f"{'process':<14} {'CPU s':>7} {'share':>6} {'us/call':>8}")
    figures = {"result": result, "seconds": secs, "calls": calls, "cpu": {}, "statements": []}
    total = 0.0
    for name in list(groups) + ["postgresql"]:
        s = (after[name] - before[name]) / TICK
        total += s
        per = s * 1e6 / calls if calls else 0.0
        figures["cpu"][name] = {"seconds": s, "us_per_call": per}
        print(f"{name:<14} {s:>7.2f} {s / (os.cpu_count() * secs):>6.1%} {per:>8.1f}")
    idle = os.cpu_count() * secs - total
    print(f"{'(rest, idle)':<14} {idle:>7.2f} {idle / (os.cpu_count() * secs):>6.1%}")

    rows = psql(args.db, """
        SELECT calls, round(total_plan_time::numeric, 1), round(total_exec_time::numeric, 1), rows,
               regexp_replace(left(query, 100), '\\s+', ' ', 'g')
        FROM pg_stat_statements ORDER BY total_plan_time + total_exec_time DESC LIMIT 15""")
    print("\nPostgreSQL statements by planning + execution time (us/call: per call of the phase;"
          " execution includes lock waits):")
    print(f"{'calls':>8} {'plan ms':>8} {'exec ms':>9} {'plan us':>8} {'exec us':>8} {'rows':>8}  query")
    for line in rows.splitlines():
        c, plan, tot, nrows, query = line.split("\t", 4)
        plan_per = float(plan) * 1e3 / calls if calls else 0.0
        per = float(tot) * 1e3 / calls if calls else 0.0
        figures["statements"].append({"calls": int(c), "plan_ms": float(plan), "exec_ms": float(tot),
                                      "rows": int(nrows), "plan_us_per_call": plan_per,
                                      "exec_us_per_call": per, "query": query})
        print(f"{int(c):>8} {float(plan):>8.1f} {float(tot):>9.1f} {plan_per:>8.1f} {per:>8.1f} {int(nrows):>8}  {query}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=1)


if __name__ == "__main__":
    main()
