"""gRPC latency/throughput of ``python -m serving.server`` on an export, with and without
``--enable_batching``, at several client concurrencies. Appends a section to BENCHMARKS.md.

::

    python bench/serving_latency.py --export-dir models/rearec [models/rearec-xla]  # existing exports
    python bench/serving_latency.py --run-dir runs/x [--xla both|on|off]  # export it first (tmp)
        [--concurrency 1 8 32] [--duration 10] [--k 10] [--history-len 20]
        [--signature recommend] [--batch 1] [--server-args "--num_batch_threads 1"]
        [--batch-timeouts 2000 0] [--batching-variants "--max_batch_rows 8 ..." ...]
        [--baseline-server /tmp/rearec-prev] [--client-processes 1 8]
        [--server-cpus all 0] [--no-append]

With ``--run-dir`` the run is exported twice by default, without and with ``--xla``, and
both are measured in the same run (the table gives p99 ratios against the default
export). One server per export, batching mode, timeout and checkout is started on
127.0.0.1 and a free port, all of them before the first measurement; then for each
concurrency and each of ``--repeats`` rounds every server is measured in turn:
``concurrency`` clients send requests back to back for ``--duration`` seconds (each
its own channel): threads of the bench process, or with ``--client-processes P`` threads
spread over P client processes, which is how independent clients load a server (threads
of one Python process also queue for its GIL, which adds to their measured latency).
Interleaving the servers this way makes their ratios robust to the host's swings of
speed, which on these machines move a p99 by ±20 % within minutes. Reports p50/p95/p99
latency (ms) and throughput (requests/s) of successful requests, the error count, and the
CPU time per request of the server process (and of its TensorFlow op threads) and of the
client process(es) (where a closed loop on 2 cores spends its time). Histories are random
vocabulary ids of fixed length (so requests are batchable). ``--batch-timeouts`` measures
batching with each ``--batch_timeout_micros`` given (one server each; 0 = no waiting, what
queued while the previous batch ran is merged); ``--batching-variants`` measures batching
with each string of server flags given instead (e.g. ``"--max_batch_rows 8
--batch_timeout_micros 6000"`` or ``"--adaptive_batching --batch_timeout_micros 10000"``),
one server each. The
log line each server writes at shutdown gives its batch sizes and queue waits (listed
under the command). ``--baseline-server CHECKOUT`` also runs
the ``serving.server`` of another checkout of this repo (e.g. ``git worktree add
/tmp/rearec-prev HEAD~1``) on the same exports and levels, interleaved with this
checkout's, so a server change is measured as a ratio in one run. ``--server-cpus all 0``
runs each server twice, free to use every CPU and pinned to CPU 0 (``taskset -c 0``), and
gives the pinned rows' p99 as a ratio to the free ones (the clients stay free).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import List

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._common import command, git_commit  # noqa: E402
from serving.client import RecommenderClient  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def latest_version(base: pathlib.Path) -> pathlib.Path:
    vs = sorted(int(d) for d in os.listdir(base) if d.isdigit())
    if not vs:
        raise SystemExit(f"no version under {base}")
    return base / str(vs[-1])


def _export_info(version: pathlib.Path) -> dict:
    path = version / "assets.extra" / "export.json"
    return json.loads(path.read_text()) if path.exists() else {}


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                cpu = line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return f"{cpu}, nproc={os.cpu_count()} (sched_getaffinity={len(os.sched_getaffinity(0))})"


def parse_cpus(layout: str):
    """``"all"`` -> None (no pinning); ``"0"``, ``"0,1"``, ``"0-3"`` -> a set of CPU ids, each
    one this process may run on."""
    if layout == "all":
        return None
    cpus = set()
    try:
        for part in layout.split(","):
            lo, _, hi = part.partition("-")
            cpus.update(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise ValueError(f"--server-cpus {layout!r}: give 'all' or CPU ids such as 0, 0,1 or 0-3")
    allowed = os.sched_getaffinity(0)
    if not cpus or not cpus <= allowed:
        raise ValueError(f"--server-cpus {layout!r}: this machine offers CPUs {sorted(allowed)}")
    return cpus


def start_server(base, batching: bool, log_path, extra=(), repo=REPO, cpus=None):
    port = free_port()
    env = dict(os.environ)
    env.pop("TF_USE_LEGACY_KERAS", None)
    env["PYTHONPATH"] = str(repo) + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, "-m", "serving.server", "--model_base_path", str(base), "--port", str(port),
           "--host", "127.0.0.1", "--log_level", "INFO"] + (["--enable_batching"] if batching else []) + list(extra)
    log = open(log_path, "w")
    pin = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None  # as `taskset -c` does
    proc = subprocess.Popen(cmd, cwd=str(repo), env=env, stdout=log, stderr=subprocess.STDOUT,
                            preexec_fn=pin)
    address = f"127.0.0.1:{port}"
    deadline = time.time() + 120
    with RecommenderClient(address, timeout=5, retries=0) as c:
        while time.time() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"server exited {proc.returncode}, see {log_path}")
            try:
                if c.status():
                    break
            except Exception:  # noqa: BLE001
                pass
            time.sleep(0.3)
    return proc, address, log


def stop_server(proc, log) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()
    return proc.returncode


def batching_summary(log_path) -> str:
    """The batcher's statistics a server logs at shutdown (``batching: ...``), or ''."""
    try:
        text = pathlib.Path(log_path).read_text(errors="replace")
    except OSError:
        return ""
    found = [line.split("batching: ", 1)[1].strip() for line in text.splitlines()
             if "serving.server: batching: " in line]
    return found[-1] if found else ""


def _dirty(repo) -> bool:
    out = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                         capture_output=True, text=True)
    return bool(out.stdout.strip())


def _stat(path):
    """(name, user + system CPU seconds) from a Linux ``/proc/.../stat`` file."""
    with open(path) as f:
        stat = f.read()
    fields = stat.rsplit(")", 1)[1].split()
    return (stat[stat.index("(") + 1:stat.rindex(")")],
            (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"))


def process_cpu_seconds(pid) -> float:
    """User + system CPU seconds of process ``pid`` (Linux ``/proc``; NaN elsewhere or
    without a pid)."""
    if not pid:
        return float("nan")
    try:
        return _stat(f"/proc/{pid}/stat")[1]
    except (OSError, IndexError, ValueError):
        return float("nan")


def tf_thread_cpu_seconds(pid) -> float:
    """CPU seconds of the threads of process ``pid`` that TensorFlow's runtime named
    (``tf_*``, e.g. ``tf_Compute``: where the model's ops run); the rest of a server's CPU
    is Python and gRPC. NaN where ``/proc`` is unavailable."""
    if not pid:
        return float("nan")
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return float("nan")
    total = 0.0
    for t in tasks:
        try:
            name, seconds = _stat(f"/proc/{pid}/task/{t}/stat")
        except OSError:  # the thread ended
            continue
        if name.startswith("tf_"):
            total += seconds
    return total


def _drive(address, histories, threads, duration, k, signature, batch, seed0=0, start_at=None):
    """``threads`` closed-loop clients in this process, each on its own channel, sending
    requests back to back for ``duration`` s (from ``start_at``, a ``time.time()``, when
    given; else as soon as all are connected). Returns (latencies in s, error reprs,
    CPU s of this process and wall s during the window)."""
    lat, errors = [], []
    lock = threading.Lock()
    go = threading.Barrier(threads + 1)
    window = {}

    def worker(i):
        rng = np.random.default_rng(seed0 + i)
        local, errs = [], []
        with RecommenderClient(address, timeout=30, retries=0) as c:
            c.recommend(histories[:batch], k=k)  # connect + warm
            go.wait()
            go.wait()  # the window's start is set between the two barriers
            while time.perf_counter() < window["stop"]:
                rows = rng.integers(0, len(histories), size=batch)
                h = [histories[r] for r in rows]
                t0 = time.perf_counter()
                try:
                    if signature == "user_embedding":
                        c.embed(h)
                    else:
                        c.recommend(h, k=k)
                    local.append(time.perf_counter() - t0)
                except Exception as e:  # noqa: BLE001
                    errs.append(repr(e))
        with lock:
            lat.extend(local)
            errors.extend(errs)

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in workers:
        t.start()
    go.wait()
    if start_at is not None:
        time.sleep(max(0.0, start_at - time.time()))
    window["stop"] = time.perf_counter() + duration
    t0, cpu0 = time.perf_counter(), time.process_time()
    go.wait()
    for t in workers:
        t.join()
    return lat, errors, time.process_time() - cpu0, time.perf_counter() - t0


def _drive_remote(job):
    """:func:`_drive` in a client process of the pool (``--client-processes``)."""
    return _drive(*job)


def _client_pool(processes: int):
    """``processes`` client processes, started (and their imports done) before any level."""
    import concurrent.futures as cf
    import multiprocessing as mp

    pool = cf.ProcessPoolExecutor(max_workers=processes, mp_context=mp.get_context("spawn"))
    list(pool.map(time.sleep, [1.0] * processes))  # queued sleeps make it start them all
    return pool


def client_shares(concurrency: int, processes: int) -> List[int]:
    """Client threads per process: ``concurrency`` spread as evenly as possible over at
    most ``processes`` processes (none empty)."""
    n = max(1, min(processes, concurrency))
    return [concurrency // n + (i < concurrency % n) for i in range(n)]


def run_level(address, histories, concurrency, duration, k, signature, batch, server_pid=None,
              pool=None, processes=1):
    """One closed-loop level: ``concurrency`` clients as threads of this process, or, with
    ``processes`` > 1 and a process ``pool``, as threads of up to that many client processes
    (independent clients, as separate front-ends would be: no shared GIL). Besides latency
    and throughput, the CPU time spent per successful request by the server process
    (``server_pid``) and by the client process(es) during the level."""
    shares = client_shares(concurrency, processes) if pool is not None else [concurrency]
    if len(shares) == 1:
        server0, tf0 = process_cpu_seconds(server_pid), tf_thread_cpu_seconds(server_pid)
        lat, errors, client_cpu, wall = _drive(address, histories, concurrency, duration, k,
                                               signature, batch)
        server_cpu = process_cpu_seconds(server_pid) - server0
        tf_cpu = tf_thread_cpu_seconds(server_pid) - tf0
    else:  # a common start, after every process has connected and warmed up
        start_at = time.time() + 3.0
        futures = [pool.submit(_drive_remote, (address, histories, n, duration, k, signature,
                                               batch, 1000 * j, start_at))
                   for j, n in enumerate(shares)]
        time.sleep(max(0.0, start_at - time.time()))
        server0, tf0 = process_cpu_seconds(server_pid), tf_thread_cpu_seconds(server_pid)
        time.sleep(duration)
        server_cpu = process_cpu_seconds(server_pid) - server0
        tf_cpu = tf_thread_cpu_seconds(server_pid) - tf0
        parts = [f.result() for f in futures]
        lat = [x for part in parts for x in part[0]]
        errors = [e for part in parts for e in part[1]]
        client_cpu = sum(part[2] for part in parts)
        wall = max(part[3] for part in parts)
    a = np.array(lat) * 1e3
    pct = np.percentile(a, [50, 95, 99]) if a.size else [float("nan")] * 3
    n = max(int(a.size), 1)
    return {"concurrency": concurrency, "requests": int(a.size), "errors": len(errors),
            "p50_ms": float(pct[0]), "p95_ms": float(pct[1]), "p99_ms": float(pct[2]),
            "rps": a.size / wall, "server_cpu_ms": server_cpu / n * 1e3,
            "server_tf_cpu_ms": tf_cpu / n * 1e3, "client_cpu_ms": client_cpu / n * 1e3}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--export-dir", nargs="+",
                     help="model base path(s) (BASE/<version>/); several are measured in turn")
    src.add_argument("--run-dir", help="a training run to export to a temporary base path")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--duration", type=float, default=10.0, help="seconds per level")
    p.add_argument("--repeats", type=int, default=1,
                   help="runs per level; the table gives the median of each figure and the p99 range")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--history-len", type=int, default=20)
    p.add_argument("--batch", type=int, default=1, help="histories per request")
    p.add_argument("--signature", default="recommend", choices=["recommend", "user_embedding"])
    p.add_argument("--modes", nargs="+", default=["off", "on"], choices=["off", "on"],
                   help="batching modes to measure")
    p.add_argument("--output", default=str(REPO / "BENCHMARKS.md"))
    p.add_argument("--xla", choices=["off", "on", "both"], default="both",
                   help="with --run-dir: export without / with `export --xla` / both")
    p.add_argument("--server-args", default="", help="extra flags for every serving.server")
    p.add_argument("--batch-timeouts", type=int, nargs="+", default=[2000],
                   help="--batch_timeout_micros values to measure with batching on")
    p.add_argument("--batching-variants", nargs="+", metavar="FLAGS",
                   help="strings of server flags to measure with batching on, one server each "
                        "(instead of --batch-timeouts); a variant of one flag alone is read as an "
                        "option of this bench unless written with a leading space, e.g. "
                        "\" --adaptive_batching\", or as --batching-variants=--adaptive_batching")
    p.add_argument("--baseline-server", metavar="CHECKOUT",
                   help="another checkout of this repo whose serving.server is measured too")
    p.add_argument("--client-processes", type=int, nargs="+", default=[1], metavar="P",
                   help="client layouts to measure: 1 = all clients are threads of this process "
                        "(they share its GIL); P > 1 = the clients spread over P processes "
                        "(independent clients, as separate front-ends would be)")
    p.add_argument("--server-cpus", nargs="+", default=["all"], metavar="CPUS",
                   help="CPU layouts of the server, one server each: 'all' (free to use every "
                        "CPU) or CPU ids such as 0, 0,1, 0-3 (pinned, as `taskset -c` pins)")
    p.add_argument("--no-append", action="store_true", help="print only")
    args = p.parse_args(argv)
    try:
        layouts_cpu = [(c, parse_cpus(c)) for c in args.server_cpus]
    except ValueError as e:
        p.error(str(e))
    servers = [("this", REPO)]
    if args.baseline_server:
        other = pathlib.Path(args.baseline_server).resolve()
        if not (other / "serving" / "server.py").exists():
            p.error(f"--baseline-server {other}: no serving/server.py there (give a checkout "
                    f"of this repo, e.g. `git worktree add {other} HEAD~1`)")
        servers.append((f"baseline {git_commit(other)}", other))

    tmp = None
    if args.run_dir:
        tmp = tempfile.mkdtemp(prefix="rearec-bench-")
        bases = []
        for flag in {"off": [[]], "on": [["--xla"]], "both": [[], ["--xla"]]}[args.xla]:
            base = pathlib.Path(tmp) / ("rearec-xla" if flag else "rearec")
            subprocess.run([sys.executable, "-m", "rearec_tf.export", "--run-dir", args.run_dir,
                            "--export-dir", str(base)] + flag, check=True, cwd=str(REPO))
            bases.append(base)
    else:
        bases = [pathlib.Path(b) for b in args.export_dir]
    version = latest_version(bases[0])
    vocab = json.loads((version / "assets" / "vocabulary.json").read_text())["ids"]
    info = _export_info(version)
    rng = np.random.default_rng(0)
    histories = [[vocab[i] for i in rng.integers(0, len(vocab), size=args.history_len)]
                 for _ in range(512)]

    results = []
    logdir = pathlib.Path(tempfile.mkdtemp(prefix="rearec-bench-logs-"))
    # batching variants: (label, extra server flags)
    variants = ([(f"`{v.strip()}`", shlex.split(v)) for v in args.batching_variants]
                if args.batching_variants else
                [(f"{t} µs", ["--batch_timeout_micros", str(t)]) for t in args.batch_timeouts])
    configs = [(b, m, t, sv, cpu) for b in bases for m in args.modes
               for t in ([None] if m == "off" else variants) for sv in servers
               for cpu in layouts_cpu]
    kinds = {b: "xla" if _export_info(latest_version(b)).get("xla") else "default" for b in bases}
    # the export's label: its kind, plus its folder when several exports share that kind
    labels = {b: f"{k} ({b.name})" if list(kinds.values()).count(k) > 1 else k
              for b, k in kinds.items()}
    # Every server is started first; then, level by level and repeat by repeat, each server
    # is measured in turn, so the host's changes of speed (large here) fall on all alike.
    running, pool = [], None
    try:
        for i, (base, on_off, variant, (server, repo), (cpu_label, cpus)) in enumerate(configs):
            extra = shlex.split(args.server_args) + (variant[1] if variant else [])
            proc, address, log = start_server(
                base, on_off == "on", logdir / f"server-{i}-{labels[base]}-{on_off}-{server}.log",
                extra, repo, cpus)
            mode = on_off if variant is None else f"on ({variant[0]})"
            running.append((dict(export=labels[base], batching=mode, server=server, cpus=cpu_label),
                            proc, address, log))
        layouts = sorted(set(max(1, n) for n in args.client_processes))
        pool = _client_pool(max(layouts)) if max(layouts) > 1 else None
        clients = [(label, proc, address, n) for label, proc, address, _ in running for n in layouts]
        for c in args.concurrency:
            runs = [[] for _ in clients]
            for _ in range(max(1, args.repeats)):
                for (_, proc, address, n), rs in zip(clients, runs):
                    rs.append(run_level(address, histories, c, args.duration, args.k, args.signature,
                                        args.batch, proc.pid, pool if n > 1 else None, n))
            for (label, _, _, n), rs in zip(clients, runs):
                r = {key: float(np.median([x[key] for x in rs]))
                     for key in ("p50_ms", "p95_ms", "p99_ms", "rps", "server_cpu_ms",
                                 "server_tf_cpu_ms", "client_cpu_ms")}
                r.update(concurrency=c, requests=sum(x["requests"] for x in rs),
                         errors=sum(x["errors"] for x in rs), p99_runs=[x["p99_ms"] for x in rs])
                r["p99_range"] = (min(r["p99_runs"]), max(r["p99_runs"]))
                r.update(label)
                shares = client_shares(c, n)
                r["clients"] = (f"{len(shares)} proc × {'/'.join(map(str, sorted(set(shares))))} thr"
                                if len(shares) > 1 else f"1 proc × {c} thr")
                results.append(r)
                print(f"server={r['server']} cpus={r['cpus']} export={r['export']} "
                      f"batching={r['batching']} "
                      f"clients={r['clients']} "
                      f"concurrency={c:3d}  p50={r['p50_ms']:.2f}ms "
                      f"p95={r['p95_ms']:.2f}ms p99={r['p99_ms']:.2f}ms  {r['rps']:.1f} req/s  "
                      f"errors={r['errors']}  CPU/request: server {r['server_cpu_ms']:.2f}ms "
                      f"client {r['client_cpu_ms']:.2f}ms", flush=True)
    finally:
        if pool is not None:
            pool.shutdown()
        batching_lines = []
        for label, proc, _, log in running:
            code = stop_server(proc, log)
            if code != 0:
                print(f"warning: server exited {code} (log {logdir})", file=sys.stderr)
            summary = batching_summary(log.name)
            if summary:
                batching_lines.append(f"  - {label['server']}, CPUs {label['cpus']}, "
                                      f"{label['export']}, batching "
                                      f"{label['batching']}: {summary}")

    # p99 ratios against the baseline server, else the first CPU layout, else the first export,
    # the other columns equal
    if args.baseline_server:
        dim, ref_value = "server", servers[1][0]
        ref_name = "the baseline server"
    elif len(layouts_cpu) > 1:
        dim, ref_value = "cpus", layouts_cpu[0][0]
        ref_name = f"the server with CPUs `{ref_value}`"
    else:
        dim, ref_value = "export", results[0]["export"] if results else None
        ref_name = "the first export"
    cmd = command(__file__, argv)
    lines = [
        "", f"## Serving latency (gRPC, `serving.server`) — {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}",
        "", f"- command: `{cmd}`",
        f"- machine: {machine()}; Python {platform.python_version()}",
        f"- model: {info.get('method', '?')} d={info.get('hidden_size', '?')} "
        f"max_len={info.get('max_len', '?')} K={info.get('default_steps', '?')} "
        f"items={info.get('num_items', len(vocab))}; export `{version}`"
        + ("".join(f"; `{b.name}` = `{latest_version(b)}` (created "
                   f"{_export_info(latest_version(b)).get('created', '?')})" for b in bases)
           if len(bases) > 1 else ""),
        f"- requests: signature `{args.signature}`, {args.batch} histor{'y' if args.batch == 1 else 'ies'} "
        f"of {args.history_len} ids per request, k={args.k}; {args.duration:g} s per level, "
        f"{max(1, args.repeats)} run(s) per level (median; requests and errors summed); client and "
        "server on the same machine (the clients share the CPU); clients = client processes × "
        "threads each",
        f"- server flags: `{args.server_args or '(defaults)'}`; export `xla` = `rearec_tf.export --xla`; "
        + ("server: `this` = this checkout's serving.server "
           f"({git_commit(REPO)}{', uncommitted changes' if _dirty(REPO) else ''}), `baseline` = "
           f"`{args.baseline_server}`'s; " if args.baseline_server else "")
        + "server CPUs = the CPUs the server is pinned to (`all`: not pinned); "
        + f"p99 ratio = median over the repeats of this row's p99 / the p99 of {ref_name} at the "
          "same values of the other columns; "
        + "all servers run at once and each repeat measures them in turn; "
        +
        "CPU ms/req = CPU time of the server process / of the client process (all threads) during "
        "the level, per successful request; *of which TF* = the server's threads named `tf_*` by "
        "TensorFlow (its op pools, where most of the model's time goes; the rest is Python, gRPC and "
        "any op run on the calling thread)",
    ]
    if batching_lines:
        lines += ["- batcher, whole life of each server (all levels and repeats, plus the clients' "
                  "warm-up calls):"] + batching_lines
    lines += [
        "", "| server | server CPUs | export | batching | clients | concurrency | requests | errors | p50 ms "
        "| p95 ms | p99 ms | p99 range ms | req/s | p99 ratio | server CPU ms/req | of which TF "
        "| client CPU ms/req |",
        "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    keys = [k for k in ("server", "cpus", "export", "batching", "clients", "concurrency") if k != dim]

    def ref_key(r):
        return tuple(r[k] for k in keys)

    def is_ref(r):
        return r[dim] == ref_value

    ref = {ref_key(r): r["p99_runs"] for r in results if is_ref(r)}
    for r in results:
        base_runs = ref.get(ref_key(r))
        # the median of the per-repeat ratios: repeat i of both rows ran back to back
        ratio = (f"{np.median(np.array(r['p99_runs']) / np.array(base_runs)):.2f}"
                 if base_runs else "—")
        lines.append(f"| {r['server']} | {r['cpus']} | {r['export']} | {r['batching']} | {r['clients']} | "
                     f"{r['concurrency']} | {r['requests']} | "
                     f"{r['errors']} | {r['p50_ms']:.2f} | {r['p95_ms']:.2f} | {r['p99_ms']:.2f} | "
                     f"{r['p99_range'][0]:.1f}–{r['p99_range'][1]:.1f} | {r['rps']:.1f} | {ratio} | "
                     f"{r['server_cpu_ms']:.2f} | {r['server_tf_cpu_ms']:.2f} | "
                     f"{r['client_cpu_ms']:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_append:
        out = pathlib.Path(args.output)
        header = "" if out.exists() else "# Benchmarks\n"
        with open(out, "a") as f:  # append only: never rewrite others' sections
            f.write(header + text)
        print(f"appended to {out}")
    if tmp:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
