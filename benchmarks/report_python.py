"""report_python.py — the report's section on the Python binding (issue
13), from bench_python.py's python.json: one table per payload (Python ->
C and Python -> Python over shm:// and tcp://, multiprocessing.Pipe, a
socketpair, and C -> C for reference) and the issue's targets. Used by
report.py."""
import report as r

ORDER = ["c-c-shm", "py-c-shm", "py-c-tcp", "py-py-shm", "py-py-tcp",
         "mp-pipe", "socketpair"]
DESCR = {
    "c-c-shm": "C client (`svc bench`, one client) to the C echo server, shm://",
    "py-c-shm": "Python svc.Client.call to the C echo server, shm://",
    "py-c-tcp": "Python svc.Client.call to the C echo server, tcp:// loopback",
    "py-py-shm": "Python svc.Client.call to a Python svc.Server, shm://",
    "py-py-tcp": "Python svc.Client.call to a Python svc.Server, tcp:// loopback",
    "mp-pipe": "multiprocessing.Pipe send_bytes/recv_bytes to a Python echo process",
    "socketpair": "socket.socketpair sendall/recv_into to a Python echo process",
}


def tables(py):
    sizes = sorted({k[2] for k in py if k[0] == "python"})
    out = ["Every row is an echo round trip of the payload, timed in batches "
           "of about 200 µs (p50 of the batch means; mean = all calls); "
           "`x mp-pipe` is the row's p50 over multiprocessing.Pipe's.", ""]
    for s in sizes:
        base = r.val(py.get(("python", "mp-pipe", s)), "p50_us")
        out += [f"**{r.human_size(s)}**", "",
                "| row | p50 µs | mean µs | client CPU µs | server CPU µs | x mp-pipe |",
                "|---|---:|---:|---:|---:|---:|"]
        for t in ORDER:
            run = py.get(("python", t, s))
            if run is None:
                continue
            p50 = r.val(run, "p50_us")
            out.append(f"| {t} | {r.fmt(p50)} | {r.fmt(r.val(run, 'mean_us'))} | "
                       f"{r.fmt(r.val(run, 'client_cpu_us'))} | "
                       f"{r.fmt(r.val(run, 'server_cpu_us'))} | "
                       f"{r.fmt(r.ratio(p50, base), 2)} |")
        out.append("")
    return out


def targets(py):
    def get(t, s, what="p50_us"):
        return r.val(py.get(("python", t, s)), what)

    rows = []
    check = r.target_checker(rows)
    check("64 B: mp-pipe p50 / py-py-shm p50",
          r.ratio(get("mp-pipe", 64), get("py-py-shm", 64)), "≥ 10",
          lambda v: v >= 10)
    py_c, c_c = get("py-c-shm", 64, "mean_us"), get("c-c-shm", 64, "mean_us")
    check("64 B: py-c-shm mean − c-c-shm mean (µs)",
          None if py_c is None or c_c is None else py_c - c_c, "≤ 1",
          lambda v: v <= 1)
    return r.target_table("### Targets (issue 13)", rows)


def section(py):
    if not py:
        return []
    out = ["## From Python (issue 13)", "",
           "Rows: " + "; ".join(f"`{t}` = {DESCR[t]}" for t in ORDER) + ".", ""]
    return out + targets(py) + tables(py)
