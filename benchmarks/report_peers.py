"""report_peers.py — the report's section on the libraries a user would
pick instead (issue 12), from bench_peers' JSON (peers.json, and
peers-idle.json for the idle cost): one latency table per payload, calls/s
with 1/4/8 client processes, calls in flight, idle CPU and memory, the
issue's targets, and peers.dat for the plot. Used by report.py."""
import report as r

# Report order: libsvc first, then the peers.
PEER_ORDER = ["svc-shm", "svc-shm-prep", "svc-unix", "svc-tcp",
              "iceoryx-poll", "iceoryx-waitset", "zmq-ipc", "zmq-tcp",
              "nng-ipc", "nng-tcp", "grpc-unix"]
PEER_DESCR = {
    "iceoryx-poll": "iceoryx 2.0 request/response (C binding), client busy-polls",
    "iceoryx-waitset": "iceoryx 2.0 request/response, client waits on a wait set",
    "zmq-ipc": "ZeroMQ 4.3 REQ to ROUTER over ipc://",
    "zmq-tcp": "ZeroMQ 4.3 REQ to ROUTER over tcp:// loopback",
    "nng-ipc": "nng 1.5 req0/rep0 over ipc://",
    "nng-tcp": "nng 1.5 req0/rep0 over tcp:// loopback",
    "grpc-unix": "gRPC 1.51 unary Echo(bytes), synchronous stub, unix: socket",
}


def present(pe, kind):
    names = {k[1] for k in pe if k[0] == kind}
    return [n for n in PEER_ORDER if n in names]


def latency_tables(pe):
    sizes = sorted({k[2] for k in pe if k[0] == "peers"})
    out = ["### Latency, one client", "",
           "Each row's client is a process of its own, calling for the run's",
           "window after a warm-up; `x svc-shm` is this row's p50 over libsvc",
           "`shm://`'s in the same run.", ""]
    for s in sizes:
        base = r.val(pe.get(("peers", "svc-shm", s)), "p50_us")
        out += [f"**{r.human_size(s)}**", "",
                "| system | p50 µs | p99 µs | client CPU µs | server CPU µs | x svc-shm |",
                "|---|---:|---:|---:|---:|---:|"]
        for t in present(pe, "peers"):
            run = pe.get(("peers", t, s))
            if run is None:
                continue
            if run.get("error_occurred"):
                out.append(f"| {t} | error: {run.get('error_message', '?')} |||||")
                continue
            p50 = r.val(run, "p50_us")
            name = f"**{t}**" if t.startswith("svc-") else t
            out.append(f"| {name} | {r.fmt(p50)} | {r.fmt(r.val(run, 'p99_us'))} | "
                       f"{r.fmt(r.val(run, 'client_cpu_us'))} | "
                       f"{r.fmt(r.val(run, 'server_cpu_us'))} | "
                       f"{r.fmt(r.ratio(p50, base), 2)} |")
        out.append("")
    return out


def rate_table(pe, kind, title, args, what):
    names = present(pe, kind)
    if not names:
        return []
    out = [title, "", "| system | " + " | ".join(f"{what} {a}" for a in args)
           + " | CPU/call µs (" + str(args[-1]) + ") |",
           "|---|" + "---:|" * (len(args) + 1)]
    for t in names:
        cells = []
        for a in args:
            run = pe.get((kind, t, a))
            cells.append("error" if run and run.get("error_occurred")
                         else r.fmt(r.val(run, "calls_per_s")))
        last = pe.get((kind, t, args[-1]))
        name = f"**{t}**" if t.startswith("svc-") else t
        out.append(f"| {name} | " + " | ".join(cells)
                   + f" | {r.fmt(r.val(last, 'cpu_us_per_call'))} |")
    return out + [""]


def idle_table(idle):
    names = present(idle, "peers-idle")
    if not names:
        return []
    out = ["### What an idle service costs", "",
           "10 connected clients (one process, one call each, then idle) for",
           "the run's window: CPU clock ticks of the server (and daemon) and",
           "of the client process in that window, then their memory",
           "(`/proc/PID/smaps_rollup`, KiB).", "",
           "| system | idle s | server ticks | client ticks | server RSS / PSS | "
           "client RSS / PSS | daemon RSS / PSS |",
           "|---|---:|---:|---:|---:|---:|---:|"]
    for t in names:
        run = idle.get(("peers-idle", t, 10))
        if run.get("error_occurred"):
            out.append(f"| {t} | error: {run.get('error_message', '?')} ||||||")
            continue
        g = lambda c: r.val(run, c)
        daemon = (f"{r.fmt(g('daemon_rss_kb'))} / {r.fmt(g('daemon_pss_kb'))}"
                  if g("daemon_rss_kb") is not None else "–")
        name = f"**{t}**" if t.startswith("svc-") else t
        out.append(f"| {name} | {r.fmt(g('idle_s'), 2)} | {r.fmt(g('server_ticks'))} | "
                   f"{r.fmt(g('client_ticks'))} | "
                   f"{r.fmt(g('server_rss_kb'))} / {r.fmt(g('server_pss_kb'))} | "
                   f"{r.fmt(g('client_rss_kb'))} / {r.fmt(g('client_pss_kb'))} | "
                   f"{daemon} |")
    return out + [""]


def targets(pe, idle):
    def p50(t, s):
        return r.val(pe.get(("peers", t, s)), "p50_us")

    rows = []
    check = r.target_checker(rows)
    check("64 B: svc-shm p50 / iceoryx-poll p50",
          r.ratio(p50("svc-shm", 64), p50("iceoryx-poll", 64)), "≤ 0.2",
          lambda v: v <= 0.2)
    for t in ("nng-ipc", "zmq-ipc", "grpc-unix"):
        check(f"64 B: {t} p50 / svc-shm p50", r.ratio(p50(t, 64), p50("svc-shm", 64)),
              "≥ 100", lambda v: v >= 100)
    for t in ("nng-ipc", "zmq-ipc"):
        check(f"64 B: svc-unix p50 / {t} p50", r.ratio(p50("svc-unix", 64), p50(t, 64)),
              "≤ 1", lambda v: v <= 1)
    for s in (1 << 20, 16 << 20):
        check(f"{r.human_size(s)}: svc-shm-prep p50 / iceoryx-poll p50",
              r.ratio(p50("svc-shm-prep", s), p50("iceoryx-poll", s)), "≤ 1",
              lambda v: v <= 1)
    for t in ("svc-shm", "svc-unix"):
        check(f"idle: {t} server CPU ticks with 10 idle clients",
              r.val(idle.get(("peers-idle", t, 10)), "server_ticks"), "0",
              lambda v: v == 0)
    return r.target_table("### Targets (issue 12)", rows)


def section(pe, idle):
    if not pe and not idle:
        return []
    names = sorted({k[1] for k in list(pe) + list(idle)},
                   key=lambda n: PEER_ORDER.index(n) if n in PEER_ORDER else 99)
    out = ["## Against other libraries (issue 12)", "",
           "Systems: " + "; ".join(
               f"`{t}` = {PEER_DESCR.get(t) or r.DESCR.get(t, t)}" for t in names) + ".",
           ""]
    out += targets(pe, idle)
    out += latency_tables(pe)
    out += rate_table(pe, "peers-tp", "### Calls/s, 64 B, 1 / 4 / 8 client processes",
                      [1, 4, 8], "clients")
    out += rate_table(pe, "peers-pipe", "### Calls in flight, 64 B, one client",
                      [1, 8, 64], "window")
    out += idle_table(idle)
    return out


def write_dat(pe, path):
    """peers.dat: p50 µs per size, one column per system."""
    sizes = sorted({k[2] for k in pe if k[0] == "peers"})
    cols = present(pe, "peers")
    with open(path, "w") as f:
        f.write("size " + " ".join(cols) + "\n")
        for s in sizes:
            vals = [r.val(pe.get(("peers", t, s)), "p50_us") for t in cols]
            f.write(f"{s} " + " ".join("?" if v is None else f"{v:.6g}" for v in vals)
                    + "\n")
    return cols
