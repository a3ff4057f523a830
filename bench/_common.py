"""Shared helpers of the benchmark scripts: machine description, BENCHMARKS.md appends."""
import datetime
import os
import platform
import resource
import shlex
import subprocess
import sys
from typing import Optional, Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHMARKS = os.path.join(ROOT, "BENCHMARKS.md")


def git_commit(repo) -> str:
    """Short hash of the checkout ``repo``'s HEAD ("?" outside git)."""
    out = subprocess.run(["git", "-C", str(repo), "log", "-1", "--format=%h"], capture_output=True,
                         text=True)
    return out.stdout.strip() or "?"


def machine() -> str:
    cpu = platform.processor() or ""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                cpu = line.split(":", 1)[1].strip()
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    import tensorflow as tf
    return (f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, no GPU; "
            f"Python {platform.python_version()}, TensorFlow {tf.__version__}")


def today() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def status_gib(field: str = "VmRSS") -> float:
    """A memory field of ``/proc/self/status`` in GiB: ``VmRSS`` (resident now) or
    ``VmHWM`` (peak resident)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 2**20
    return float("nan")


def publish(title: str, body: str, no_write: bool) -> None:
    """Print ``body`` (``--no-write``) or append it to BENCHMARKS.md as a section."""
    if no_write:
        print(body)
    else:
        append_section(title, body)


def command(script: Optional[str] = None, argv: Optional[Sequence[str]] = None) -> str:
    """The bench command line (``script``, default ``sys.argv[0]``; ``argv``, default
    ``sys.argv[1:]``), quoted so that it can be pasted back."""
    script = sys.argv[0] if script is None else script
    argv = sys.argv[1:] if argv is None else argv
    return "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(script, ROOT), *argv])


def append_section(title: str, body: str) -> None:
    """Append a section (title, command, machine, date, body) to BENCHMARKS.md."""
    text = (f"\n## {title}\n\n- command: `{command()}`\n- machine: {machine()}\n"
            f"- date: {today()}\n\n{body.strip()}\n")
    if not os.path.exists(BENCHMARKS):
        text = ("# Benchmarks\n\nEvery figure below is measured on the machine named in its "
                "section, with the command given; comparisons are ratios measured in the "
                "same run. CPU figures (no GPU on these machines).\n") + text
    with open(BENCHMARKS, "a") as f:
        f.write(text)
    print(text)


RESULT = "RESULT "


def emit_result(result: dict) -> None:
    """Child side of :func:`run_child`: print the result as one marked JSON line."""
    import json

    print(RESULT + json.dumps(result), flush=True)


def run_child(cmd, what: str, env=None, cwd=None) -> dict:
    """Run a benchmark child process (its own peak memory) and return the dict it
    printed with :func:`emit_result`; exits with its stderr tail if it failed."""
    import json

    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT)]
    if proc.returncode or not line:
        sys.stderr.write(proc.stderr[-3000:])
        raise SystemExit(f"benchmark {what} failed (exit {proc.returncode})")
    return json.loads(line[-1][len(RESULT):])
