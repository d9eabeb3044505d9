#!/usr/bin/env python3
"""report.py — turns the suites' Google Benchmark JSON into the report:
report.md (latency table with ratios to the pipe baseline and the spin
floor, CPU per call, the issue's targets, the throughput table, the calls in
flight table and its targets, tls:// against tcp:// and its targets) and
latency.dat, the data latency.gp plots.

usage: report.py RESULTS_DIR [--mode quick|full|smoke]
reads RESULTS_DIR/latency.json, throughput.json and pipeline.json (any may
be missing), writes RESULTS_DIR/report.md and RESULTS_DIR/latency.dat.
"""
import argparse
import json
import os
import platform
import sys

import report_peers
import report_python

# Report order: the raw baselines, then libsvc.
ORDER = ["pipe", "unix", "tcp", "futex", "spin", "svc-shm", "svc-shm-prep",
         "svc-unix", "svc-tcp", "svc-tls"]
DESCR = {
    "pipe": "raw pipe pair",
    "unix": "raw Unix socketpair",
    "tcp": "raw TCP loopback, TCP_NODELAY",
    "futex": "raw shm ping-pong, futex only",
    "spin": "raw shm ping-pong, spin only (floor)",
    "svc-shm": "libsvc shm://",
    "svc-shm-prep": "libsvc shm://, request written in place (svc_request_alloc)",
    "svc-unix": "libsvc unix://",
    "svc-tcp": "libsvc tcp://",
    "svc-tls": "libsvc tls:// (TLS 1.3, OpenSSL 3, EC P-256 certificates)",
}


def load(path):
    """Returns (context, {(suite, transport, arg): run}) from one JSON file;
    with repetitions, the repetition with the median p50 (or rate) wins."""
    if not os.path.exists(path):
        return None, {}
    try:
        with open(path) as f:
            doc = json.load(f)
    except ValueError:
        # A suite killed by its watchdog leaves its JSON unterminated.
        print(f"report.py: {path} is incomplete; skipped", file=sys.stderr)
        return None, {}
    runs = {}
    for b in doc.get("benchmarks", []):
        if b.get("run_type") == "aggregate":
            continue
        parts = b.get("run_name", b["name"]).split("/")
        # suite/transport/arg[/iterations:1][/manual_time]
        if len(parts) < 3:
            continue
        if parts[0] in ("stats", "workers") and len(parts) >= 4:
            # stats/svc-shm/on|off/64, workers/svc-shm/VARIANT/N/...
            key = (parts[0], parts[2], int(parts[3]))
        else:
            key = (parts[0], parts[1], int(parts[2]))
        runs.setdefault(key, []).append(b)
    picked = {}
    for key, rs in runs.items():
        good = [r for r in rs if not r.get("error_occurred")]
        if not good:
            picked[key] = rs[-1]
            continue
        metric = ("p50_us" if key[0] in ("latency", "stats", "memcpy", "send", "slow",
                                         "peers", "peers-idle", "python")
                  else "connects_per_s" if key[0] == "connect"
                  else "ratio" if key[0] == "paired"
                  else "calls_per_s")
        good.sort(key=lambda r: r.get(metric, 0))
        picked[key] = good[len(good) // 2]
    return doc.get("context", {}), picked


def human_size(n):
    for unit, div in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= div and n % div == 0:
            return f"{n // div} {unit}"
    return f"{n} B"


def fmt(v, digits=3):
    """3 significant digits, thousands separated, never an exponent."""
    if v is None:
        return "–"
    if abs(v) >= 10 ** (digits - 1):
        return f"{v:,.0f}"
    if v == 0:
        return "0"
    return f"{v:.{digits}g}" if abs(v) >= 1e-3 else "<0.001"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def header(ctx, mode, build_type):
    out = ["# svc benchmark report", ""]
    ctx = ctx or {}
    load_avg = ", ".join(f"{x:.2f}" for x in ctx.get("load_avg", []))
    out += [
        f"- date: {ctx.get('date', '?')}, mode: `{mode}`",
        f"- host: {ctx.get('host_name', platform.node())}, {cpu_model()}, "
        f"{ctx.get('num_cpus', os.cpu_count())} CPUs at "
        f"{ctx.get('mhz_per_cpu', '?')} MHz, Linux {platform.release()}",
        f"- load average when the suite started: {load_avg or '?'}"
        " (anything well above 0 means other work shared the cores and the"
        " numbers are not a quiet-machine result)",
        f"- suites built as CMake `{build_type}`; calls are timed by hand"
        " (clock_gettime around each call), so the \"library was built as"
        " DEBUG\" line from Debian's libbenchmark does not affect them",
        "",
    ]
    if mode != "full":
        out += [f"> **{mode} run: too few iterations to quote.** Use "
                "`ci/bench` (full) on a quiet machine for numbers.", ""]
    return out


def val(run, counter):
    if not run or run.get("error_occurred"):
        return None
    return run.get(counter)


def latency_section(lat):
    sizes = sorted({k[2] for k in lat if k[0] == "latency"})
    present = [t for t in ORDER if any((("latency", t, s) in lat) for s in sizes)]
    out = [
        "## Round-trip latency",
        "",
        "One client (the benchmark process) and one echo server (a forked",
        "process); each call is timed on its own. Ratios compare medians",
        "(p50): `x pipe` is this transport's p50 over the raw pipe's at the",
        "same size (below 1 = faster than a pipe), `x spin` over the",
        "spin-only floor's. `CPU/call` is client + server CPU time per call;",
        "`cores busy` is CPU seconds per wall second (2.0 = both cores",
        "spinning the whole time).",
        "",
        "| size | transport | mean µs | p50 µs | p99 µs | x pipe | x spin | CPU/call µs | cores busy |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in sizes:
        pipe = val(lat.get(("latency", "pipe", s)), "p50_us")
        spin = val(lat.get(("latency", "spin", s)), "p50_us")
        for t in present:
            r = lat.get(("latency", t, s))
            if r is None:
                continue
            if r.get("error_occurred"):
                out.append(f"| {human_size(s)} | {t} | error: "
                           f"{r.get('error_message', '?')} ||||||| ")
                continue
            p50 = val(r, "p50_us")
            name = f"**{t}**" if t.startswith("svc-") else t
            out.append(
                f"| {human_size(s)} | {name} | {fmt(val(r, 'mean_us'))} | "
                f"{fmt(p50)} | {fmt(val(r, 'p99_us'))} | "
                f"{fmt(ratio(p50, pipe), 2)} | {fmt(ratio(p50, spin), 2)} | "
                f"{fmt(val(r, 'cpu_us_per_call'))} | "
                f"{fmt(val(r, 'cores_busy'), 2)} |")
    out.append("")
    return out


def paired_states(run):
    """Splits a paired run's rounds by the VM's state: [(state, floors,
    ratios)]. One state unless the slowest round's floor is at least 1.8x
    the fastest's; then rounds below the geometric middle are "fast"."""
    rounds = []
    for i in range(int(val(run, "rounds") or 0)):
        f, r = run.get(f"floor_us_r{i}"), run.get(f"ratio_r{i}")
        if f and r:
            rounds.append((f, r))
    if not rounds:
        return []
    lo, hi = min(f for f, _ in rounds), max(f for f, _ in rounds)
    if hi < 1.8 * lo:
        return [("one", [f for f, _ in rounds], [r for _, r in rounds])]
    mid = (lo * hi) ** 0.5
    out = []
    for name, keep in (("fast", lambda f: f < mid), ("slow", lambda f: f >= mid)):
        sel = [(f, r) for f, r in rounds if keep(f)]
        if sel:
            out.append((name, [f for f, _ in sel], [r for _, r in sel]))
    return out


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return None if n == 0 else xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def paired_section(lat):
    runs = sorted(k for k in lat if k[0] == "paired")
    if not runs:
        return []
    out = ["## Paired against the spin floor", "",
           "This VM's two vCPUs switch between a fast state and a slow one",
           "(the spin floor's 64 B round trip about 0.26 µs against about",
           "0.85 µs) between processes and sometimes within one, so rows",
           "measured minutes apart can compare two states. Here the libsvc",
           "row and the spin floor take turns in short windows (floor, svc,",
           "svc, floor, ...), each with a fresh server; a round's ratio is its",
           "two neighbouring windows' p50s, and rounds are split by the",
           "floor's state when the floor moved by 1.8x or more.", "",
           "| pair | rounds | ratio, median (min–max) | floor p50 µs | by state: rounds, floor µs, ratio |",
           "|---|---:|---|---:|---|"]
    for key in runs:
        r = lat[key]
        what = f"{key[1]} / spin, {human_size(key[2])}"
        if r.get("error_occurred"):
            out.append(f"| {what} | error: {r.get('error_message', '?')} |||| ")
            continue
        states = "; ".join(f"{n}: {len(fl)}, {fmt(median(fl))}, {fmt(median(ra))}"
                           for n, fl, ra in paired_states(r))
        out.append(f"| {what} | {fmt(val(r, 'rounds'))} | {fmt(val(r, 'ratio'))} "
                   f"({fmt(val(r, 'ratio_min'))}–{fmt(val(r, 'ratio_max'))}) | "
                   f"{fmt(val(r, 'floor_p50_us'))} | {states} |")
    out.append("")
    return out


def gbps(size, p50_us):
    """Decimal GB/s of size bytes moved in p50_us."""
    return None if not p50_us else size / p50_us / 1e3


def large_section(lat):
    """Issue 11: the machine's memcpy, a one-way transfer written in place,
    and the client's CPU while a slow handler computes."""
    rows = []
    for kind, t, what in (("memcpy", "local", "memcpy in one process"),
                          ("send", "svc-shm-prep",
                           "svc-shm, written in place, handler reads it all")):
        for s in sorted(k[2] for k in lat if k[0] == kind and k[1] == t):
            r = lat[(kind, t, s)]
            p50 = val(r, "p50_us")
            rows.append(f"| {what} | {human_size(s)} | {fmt(p50)} | "
                        f"{fmt(gbps(s, p50), 3)} | {fmt(val(r, 'cpu_us_per_call'))} |")
    slow = lat.get(("slow", "svc-shm", 10000))
    if not rows and not slow:
        return []
    out = ["## Large messages (issue 11)", "",
           "A one-way transfer: the client writes the payload into",
           "`svc_request_alloc`'s space (a copy from its own buffer, as memcpy",
           "makes), the handler reads every byte where it lies and replies",
           "with 8 bytes. Its GB/s is payload over p50; memcpy is one copy of",
           "the same size between two buffers of one process.", "",
           "| what | size | p50 µs | GB/s | CPU/call µs |", "|---|---:|---:|---:|---:|"] \
        + rows + [""]
    if slow:
        out += ["A handler that computes for 10 ms (64 B request): what the",
                "waiting client costs.", "",
                "| transport | p50 µs | client CPU µs per call | client share of a core |",
                "|---|---:|---:|---:|",
                f"| svc-shm | {fmt(val(slow, 'p50_us'))} | "
                f"{fmt(val(slow, 'client_cpu_us'))} | "
                f"{fmt(val(slow, 'client_cores'), 3)} |", ""]
    return out


def throughput_section(tp, window_note):
    order = ["futex", "spin", "svc-shm", "unix", "svc-unix", "tcp", "svc-tcp", "svc-tls"]
    keys = sorted(tp, key=lambda k: (order.index(k[1]) if k[1] in order else 99, k[2]))
    out = [
        "## Throughput (64 B echo)",
        "",
        "N client processes call one server process as fast as they can for",
        f"a fixed window{window_note}. `min`/`max` are the fewest and most",
        "calls one client completed: a small `min` is a starved client.",
        "With more runnable spinners than cores, a naive spinner waits for",
        "the scheduler's time slice; that is what the `spin` rows show.",
        "",
        "| transport | clients | calls/s | min / max calls per client | min/max | "
        "p50 µs, best / worst client | p99 µs, best / worst client | CPU/call µs | cores busy |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for k in keys:
        r = tp[k]
        name = f"**{k[1]}**" if k[1].startswith("svc-") else k[1]
        if r.get("error_occurred"):
            out.append(f"| {name} | {k[2]} | error: {r.get('error_message', '?')} |||||||")
            continue
        lo, hi = val(r, "min_calls"), val(r, "max_calls")
        out.append(
            f"| {name} | {k[2]} | {fmt(val(r, 'calls_per_s'))} | "
            f"{fmt(lo)} / {fmt(hi)} | {fmt(ratio(lo, hi), 2)} | "
            f"{fmt(val(r, 'p50_us_min'))} / {fmt(val(r, 'p50_us_max'))} | "
            f"{fmt(val(r, 'p99_us_min'))} / {fmt(val(r, 'p99_us_max'))} | "
            f"{fmt(val(r, 'cpu_us_per_call'))} | {fmt(val(r, 'cores_busy'), 2)} |")
    out.append("")
    return out


def target_table(title, rows):
    return [title, "", "| target | this run | wanted | |", "|---|---:|---|---|"] \
        + rows + [""]


def target_checker(rows):
    """check(what, value, limit, ok) appends one target row to rows: met,
    **missed**, – when this run has no value for it, or reported (ok None:
    a figure the issue asks to see, with no limit)."""
    def check(what, value, limit, ok):
        state = ("–" if value is None else "reported" if ok is None
                 else "met" if ok(value) else "**missed**")
        rows.append(f"| {what} | {fmt(value, 3)} | {limit} | {state} |")
    return check


def targets_section(lat, tp):
    """The targets of issue 4, checked against this run."""
    def p50(t, s):
        return val(lat.get(("latency", t, s)), "p50_us")

    def rate(t, n):
        return val(tp.get(("throughput", t, n)), "calls_per_s")

    rows = []
    check = target_checker(rows)

    check("svc-shm 64 B p50 / spin 64 B p50", ratio(p50("svc-shm", 64), p50("spin", 64)),
          "≤ 1.5", lambda v: v <= 1.5)
    check("pipe 64 B p50 / svc-shm 64 B p50", ratio(p50("pipe", 64), p50("svc-shm", 64)),
          "≥ 20", lambda v: v >= 20)
    check("svc-shm-prep (in place) 1 MiB p50 / spin 1 MiB p50 (issue 11)",
          ratio(p50("svc-shm-prep", 1 << 20), p50("spin", 1 << 20)), "≤ 1.3",
          lambda v: v <= 1.3)
    for kind in ("unix", "tcp"):
        worst = None
        for s in sorted({k[2] for k in lat if k[0] == "latency"}):
            r = ratio(p50("svc-" + kind, s), p50(kind, s))
            if r is not None and (worst is None or r > worst[0]):
                worst = (r, s)
        check(f"svc-{kind} / raw {kind}, worst size"
              + (f" ({human_size(worst[1])})" if worst else ""),
              worst[0] if worst else None, "≤ 1.25", lambda v: v <= 1.25)
    for n in (4, 8):
        check(f"svc-shm / futex calls/s, {n} clients",
              ratio(rate("svc-shm", n), rate("futex", n)), "≥ 1", lambda v: v >= 1)
        r = tp.get(("throughput", "svc-shm", n))
        check(f"svc-shm min/max calls per client, {n} clients",
              ratio(val(r, "min_calls"), val(r, "max_calls")), "≥ 0.5 (no starvation)",
              lambda v: v >= 0.5)
    def cpu(t, n):
        return val(tp.get(("throughput", t, n)), "cpu_us_per_call")

    def worst_p99(t, n):
        r = tp.get(("throughput", t, n)) or {}
        v = [x for k, x in r.items() if k.startswith("p99_us_c")]
        return max(v) if v else None

    check("svc-shm 64 B p50 / spin 64 B p50 (issue 18)",
          ratio(p50("svc-shm", 64), p50("spin", 64)), "≤ 1.1", lambda v: v <= 1.1)

    def paired(t, s):
        return val(lat.get(("paired", t, s)), "ratio")

    check("the same, paired rounds' median (issue 18)", paired("svc-shm", 64),
          "≤ 1.1", lambda v: v <= 1.1)
    for name, fl, ra in paired_states(lat.get(("paired", "svc-shm", 64)) or {}):
        if name != "one":
            check(f"the same, paired rounds in the {name} state "
                  f"(floor {fmt(median(fl))} µs, {len(ra)} rounds)",
                  median(ra), "≤ 1.1", lambda v: v <= 1.1)
    check("svc-shm worst client's p99 µs, 8 clients (issue 18)",
          worst_p99("svc-shm", 8), "reported", None)
    check("futex worst client's p99 µs, 8 clients (the same run)",
          worst_p99("futex", 8), "reported", None)

    for kind in ("unix", "tcp"):
        for n in (4, 8):
            check(f"svc-{kind} / raw {kind} calls/s, {n} clients (issue 18)",
                  ratio(rate("svc-" + kind, n), rate(kind, n)), "≥ 0.9",
                  lambda v: v >= 0.9)
            check(f"svc-{kind} / raw {kind} CPU per call, {n} clients (issue 18)",
                  ratio(cpu("svc-" + kind, n), cpu(kind, n)), "≤ 1.2",
                  lambda v: v <= 1.2)
    check("copying (svc_call) 1 MiB p50 / spin 1 MiB p50 (issue 11)",
          ratio(p50("svc-shm", 1 << 20), p50("spin", 1 << 20)), "≤ 1.5",
          lambda v: v <= 1.5)
    check("the same, paired rounds' median", paired("svc-shm", 1 << 20), "≤ 1.5",
          lambda v: v <= 1.5)
    check("svc-shm-prep 1 MiB / spin 1 MiB, paired rounds' median (issue 11)",
          paired("svc-shm-prep", 1 << 20), "≤ 1.3", lambda v: v <= 1.3)
    big = 16 << 20
    send = gbps(big, val(lat.get(("send", "svc-shm-prep", big)), "p50_us"))
    mem = gbps(big, val(lat.get(("memcpy", "local", big)), "p50_us"))
    echo = val(lat.get(("latency", "svc-shm-prep", big)), "p50_us")
    check("svc-shm-prep 16 MiB echo, 2 x payload / p50, GB/s / memcpy GB/s (issue 11)",
          ratio(gbps(2 * big, echo), mem), "≥ 0.7", lambda v: v >= 0.7)
    floor = val(lat.get(("latency", "spin", big)), "p50_us")
    fr = ratio(gbps(2 * big, floor), mem)
    rows.append(f"| the same for the spin floor's 16 MiB echo (what the three copies "
                f"allow on this machine) | {fmt(fr, 3)} | reference | |")
    check("16 MiB one way (written in place, handler reads it), GB/s / memcpy GB/s",
          ratio(send, mem), "≥ 0.7", lambda v: v >= 0.7)
    check("10 ms handler: the waiting client's share of a core (issue 11)",
          val(lat.get(("slow", "svc-shm", 10000)), "client_cores"), "< 0.05",
          lambda v: v < 0.05)
    st_on = val(lat.get(("stats", "on", 64)), "p50_us")
    st_off = val(lat.get(("stats", "off", 64)), "p50_us")
    check("svc-shm 64 B p50, stats on / off (issue 7)", ratio(st_on, st_off),
          "≤ 1.05", lambda v: v <= 1.05)
    w1 = val(tp.get(("workers", "burn200us-1thread", 1)), "calls_per_s")
    w2 = val(tp.get(("workers", "burn200us-1thread", 2)), "calls_per_s")
    check("CPU-bound handler, 2 workers / 1 worker calls/s (issue 6)",
          ratio(w2, w1), "≥ 1.7", lambda v: v >= 1.7)
    return target_table("## Targets (issues 4, 6, 7, 11)", rows)


# Issue 16: the payload sizes and client counts tls:// is compared at.
TLS_SIZES = [64, 4 << 10, 1 << 20]
TLS_CLIENTS = [1, 4, 8]


def tls_section(lat, tp):
    """Issue 16: tls:// next to tcp:// from the same run (round trips,
    calls/s, connections per second) and the issue's targets."""
    def run(kind, t, arg):
        return (lat if kind in ("latency", "connect") else tp).get((kind, t, arg))

    def v(kind, t, arg, counter):
        return val(run(kind, t, arg), counter)

    if not any(run(k, "svc-tls", a) for k, args in
               (("latency", TLS_SIZES), ("throughput", TLS_CLIENTS), ("connect", [64]))
               for a in args):
        return []

    def error_of(kind, arg):
        for t in ("svc-tcp", "svc-tls"):
            r = run(kind, t, arg)
            if r and r.get("error_occurred"):
                return f"{t}: error: {r.get('error_message', '?')}"
        return None

    out = ["## tls:// against tcp:// (issue 16)", "",
           "The same echo server and client over `tcp://` and `tls://` (TLS 1.3,",
           "OpenSSL 3, certificates made for this run by",
           "tests/helpers/make-certs.sh), loopback, in this run. `tls/tcp` is",
           "the tls value over the tcp one; CPU/call is client + server CPU time",
           "per call.", "",
           "### Round trip, one client", "",
           "| size | tcp p50 µs | tls p50 µs | tls/tcp p50 | tcp p99 µs | tls p99 µs "
           "| tcp CPU/call µs | tls CPU/call µs | tls/tcp CPU |",
           "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s in TLS_SIZES:
        bad = error_of("latency", s)
        if bad:
            out.append(f"| {human_size(s)} | {bad} ||||||||")
            continue
        p50 = [v("latency", t, s, "p50_us") for t in ("svc-tcp", "svc-tls")]
        p99 = [v("latency", t, s, "p99_us") for t in ("svc-tcp", "svc-tls")]
        cpu = [v("latency", t, s, "cpu_us_per_call") for t in ("svc-tcp", "svc-tls")]
        out.append(f"| {human_size(s)} | {fmt(p50[0])} | {fmt(p50[1])} | "
                   f"{fmt(ratio(p50[1], p50[0]), 3)} | {fmt(p99[0])} | {fmt(p99[1])} | "
                   f"{fmt(cpu[0])} | {fmt(cpu[1])} | {fmt(ratio(cpu[1], cpu[0]), 3)} |")
    out += ["", "### Calls/s, 64 B echo, N client processes", "",
            "| clients | tcp calls/s | tls calls/s | tls/tcp | tcp CPU/call µs "
            "| tls CPU/call µs | tls/tcp CPU |",
            "|---:|---:|---:|---:|---:|---:|---:|"]
    for n in TLS_CLIENTS:
        bad = error_of("throughput", n)
        if bad:
            out.append(f"| {n} | {bad} ||||||")
            continue
        rate = [v("throughput", t, n, "calls_per_s") for t in ("svc-tcp", "svc-tls")]
        cpu = [v("throughput", t, n, "cpu_us_per_call") for t in ("svc-tcp", "svc-tls")]
        out.append(f"| {n} | {fmt(rate[0])} | {fmt(rate[1])} | "
                   f"{fmt(ratio(rate[1], rate[0]), 3)} | {fmt(cpu[0])} | {fmt(cpu[1])} | "
                   f"{fmt(ratio(cpu[1], cpu[0]), 3)} |")
    out += ["", "### Connections, one client thread", "",
            "Per connection: `svc_client_open`, one 64 B call, `svc_client_close`,",
            "in a loop. Over tls:// each is a full TLS 1.3 handshake (a new",
            "client has no session ticket to resume).", "",
            "| transport | connects/s | p50 µs | p99 µs | CPU µs per connection "
            "| client / server CPU µs |",
            "|---|---:|---:|---:|---:|---:|"]
    for t in ("svc-tcp", "svc-tls"):
        r = run("connect", t, 64)
        if r and r.get("error_occurred"):
            out.append(f"| **{t}** | error: {r.get('error_message', '?')} |||||")
            continue
        out.append(f"| **{t}** | {fmt(val(r, 'connects_per_s'))} | "
                   f"{fmt(val(r, 'p50_us'))} | {fmt(val(r, 'p99_us'))} | "
                   f"{fmt(val(r, 'cpu_us_per_call'))} | "
                   f"{fmt(val(r, 'client_cpu_us'))} / {fmt(val(r, 'server_cpu_us'))} |")
    out.append("")

    def tls_over_tcp(kind, arg, counter):
        return ratio(v(kind, "svc-tls", arg, counter), v(kind, "svc-tcp", arg, counter))

    rows = []
    check = target_checker(rows)
    check("svc-tls / svc-tcp 64 B p50", tls_over_tcp("latency", 64, "p50_us"),
          "≤ 1.3", lambda x: x <= 1.3)
    check("svc-tls / svc-tcp 1 MiB p50", tls_over_tcp("latency", 1 << 20, "p50_us"),
          "≤ 2", lambda x: x <= 2)
    check("svc-tls CPU µs per call, 64 B round trip (client + server)",
          v("latency", "svc-tls", 64, "cpu_us_per_call"), "reported", lambda x: True)
    cpu_r = tls_over_tcp("latency", 64, "cpu_us_per_call")
    rows.append(f"| the same over svc-tcp's, tls/tcp | {fmt(cpu_r, 3)} | reference | |")
    for t in ("svc-tcp", "svc-tls"):
        check(f"{t} connects/s (open + one 64 B call + close)",
              v("connect", t, 64, "connects_per_s"), "reported", lambda x: True)
    conn_r = tls_over_tcp("connect", 64, "connects_per_s")
    rows.append(f"| svc-tls / svc-tcp connects/s | {fmt(conn_r, 3)} | reference | |")
    return out + target_table("### Targets (issue 16)", rows)


def workers_section(tp):
    """Issue 6: a CPU-bound handler (200 us of CPU per call) called by 4
    client processes, served by 1 or 2 worker processes."""
    rows = []
    for variant, what in (("burn200us-1thread", "1 thread per worker (GIL-like)"),
                          ("burn200us-threads", "default thread pool")):
        base = val(tp.get(("workers", variant, 1)), "calls_per_s")
        for n in (1, 2):
            r = tp.get(("workers", variant, n))
            if r is None:
                continue
            rate = val(r, "calls_per_s")
            rows.append(f"| {what} | {n} | {fmt(rate)} | {fmt(ratio(rate, base))} "
                        f"| {fmt(val(r, 'cpu_us_per_call'))} |")
    if not rows:
        return []
    return ["## Worker processes (issue 6)", "",
            "4 client processes call a handler that burns 200 µs of CPU.", "",
            "| server | workers | calls/s | × 1 worker | CPU µs/call |",
            "|---|---:|---:|---:|---:|"] + rows + [""]


# Calls in flight (bench_pipeline): rows in report order, what each is, and
# the raw pipelined socket each libsvc stream row is measured against.
PIPELINE_ORDER = ["unix", "svc-unix", "tcp", "svc-tcp", "svc-shm-sync", "svc-shm",
                  "svc-shm-block"]
PIPELINE_DESCR = {
    "unix": "raw Unix socketpair, pipelined",
    "svc-unix": "libsvc unix://",
    "tcp": "raw TCP loopback, pipelined",
    "svc-tcp": "libsvc tcp://",
    "svc-shm-sync": "libsvc shm://, svc_call (no calls in flight)",
    "svc-shm": "libsvc shm://, adaptive wait",
    "svc-shm-block": "libsvc shm://, SVC_WAIT_BLOCK on both sides",
}
PIPELINE_RAW = {"svc-unix": "unix", "svc-tcp": "tcp"}


def pipeline_section(pl):
    def rate(t, w):
        return val(pl.get(("pipeline", t, w)), "calls_per_s")

    def own_window_1(t):
        # svc_call is compared with its asynchronous twin at window 1
        return rate("svc-shm" if t == "svc-shm-sync" else t, 1)

    keys = sorted(pl, key=lambda k: (PIPELINE_ORDER.index(k[1])
                                     if k[1] in PIPELINE_ORDER else 99, k[2]))
    out = [
        "## Calls in flight (64 B echo, one client thread)",
        "",
        "One client thread keeps `window` calls in flight on one connection",
        "for a fixed time: libsvc sends with `svc_call_send` until `window`",
        "calls are in flight, then sends one more for every call",
        "`svc_call_recv` hands back. The raw baselines are a pipelined socket",
        "written by a careful user: `window` length-prefixed requests in one",
        "`writev`, a server that answers every whole request it read with one",
        "write, then `window` replies read. `svc-shm-sync` is plain `svc_call`,",
        "next to window 1 because the synchronous path must not get slower.",
        "`x window 1` is calls/s over the same row's window 1 (for",
        "`svc-shm-sync`: over `svc-shm` window 1); `x raw` is over the raw",
        "pipelined socket at the same window.",
        "",
        "Rows: " + "; ".join(f"`{t}` = {PIPELINE_DESCR[t]}"
                             for t in PIPELINE_ORDER) + ".",
        "",
        "| transport | window | calls/s | x window 1 | x raw | CPU/call µs | cores busy |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for k in keys:
        r = pl[k]
        t, w = k[1], k[2]
        name = f"**{t}**" if t.startswith("svc-") else t
        if r.get("error_occurred"):
            out.append(f"| {name} | {w} | error: {r.get('error_message', '?')} |||||")
            continue
        v = rate(t, w)
        raw = rate(PIPELINE_RAW[t], w) if t in PIPELINE_RAW else None
        out.append(
            f"| {name} | {w} | {fmt(v)} | {fmt(ratio(v, own_window_1(t)), 3)} | "
            f"{fmt(ratio(v, raw), 2)} | {fmt(val(r, 'cpu_us_per_call'))} | "
            f"{fmt(val(r, 'cores_busy'), 2)} |")
    out.append("")

    rows = []
    check = target_checker(rows)
    for kind in ("unix", "tcp"):
        t = "svc-" + kind
        check(f"{t} calls/s, window 64 / window 1", ratio(rate(t, 64), rate(t, 1)),
              "≥ 10", lambda v: v >= 10)
        check(f"{t} / raw pipelined {kind} calls/s, window 64",
              ratio(rate(t, 64), rate(kind, 64)), "≥ 0.7", lambda v: v >= 0.7)
    check("svc-shm-block calls/s, window 64 / window 1",
          ratio(rate("svc-shm-block", 64), rate("svc-shm-block", 1)), "≥ 10",
          lambda v: v >= 10)
    check("svc-shm (adaptive) calls/s, window 64 / window 1",
          ratio(rate("svc-shm", 64), rate("svc-shm", 1)), "≥ 2", lambda v: v >= 2)
    return out + target_table("### Targets: calls in flight", rows)


def write_dat(lat, path):
    """One row per size, one column per transport (p50 µs; ? = missing)."""
    sizes = sorted({k[2] for k in lat if k[0] == "latency"})
    cols = [t for t in ORDER if any(("latency", t, s) in lat for s in sizes)]
    with open(path, "w") as f:
        f.write("size " + " ".join(cols) + "\n")
        for s in sizes:
            vals = []
            for t in cols:
                v = val(lat.get(("latency", t, s)), "p50_us")
                vals.append("?" if v is None else f"{v:.6g}")
            f.write(f"{s} " + " ".join(vals) + "\n")
    return cols


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir")
    ap.add_argument("--mode", default="full")
    ap.add_argument("--duration-ms", type=int, default=None)
    ap.add_argument("--build-type", default="?")
    a = ap.parse_args()
    ctx_l, lat = load(os.path.join(a.dir, "latency.json"))
    ctx_t, tp = load(os.path.join(a.dir, "throughput.json"))
    ctx_p, pl = load(os.path.join(a.dir, "pipeline.json"))
    ctx_e, pe = load(os.path.join(a.dir, "peers.json"))
    _, idle = load(os.path.join(a.dir, "peers-idle.json"))
    ctx_y, py = load(os.path.join(a.dir, "python.json"))
    if not lat and not tp and not pl and not pe and not py:
        print(f"report.py: no results in {a.dir}", file=sys.stderr)
        return
    out = header(ctx_l or ctx_t or ctx_p or ctx_e or ctx_y, a.mode, a.build_type)
    out += ["Transports: " + "; ".join(f"`{t}` = {DESCR[t]}" for t in ORDER) + ".", ""]
    if lat:
        out += targets_section(lat, tp)
        out += latency_section(lat)
        out += paired_section(lat)
        out += large_section(lat)
    if tp:
        note = f" ({a.duration_ms} ms)" if a.duration_ms else ""
        out += throughput_section(tp, note)
        out += workers_section(tp)
    out += tls_section(lat, tp)
    if pl:
        out += pipeline_section(pl)
    out += report_peers.section(pe, idle)
    out += report_python.section(py)
    out += ["See docs/benchmarks.md for what each baseline does and how CPU "
            "is measured. Plots: latency.svg, peers.svg.", ""]
    with open(os.path.join(a.dir, "report.md"), "w") as f:
        f.write("\n".join(out))
    if pe:
        report_peers.write_dat(pe, os.path.join(a.dir, "peers.dat"))
    if lat:
        cols = write_dat(lat, os.path.join(a.dir, "latency.dat"))
        print(" ".join(cols))  # ci/bench passes the column names to gnuplot


if __name__ == "__main__":
    main()
