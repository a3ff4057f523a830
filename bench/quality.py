"""Quality table of finished training runs (metrics.json + history.json), appended to
BENCHMARKS.md with each run's exact command, training time and throughput.

    python bench/quality.py runs/beauty-small-base runs/beauty-small-erl runs/beauty-small-prl \
        --reference beauty-release

Runs are read, never re-trained: the training command of each row is reconstructed from
its config.json (every field that differs from the defaults).
"""
import argparse
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Test metrics N@10 / N@20 / R@10 / R@20, history masked, full ranking, leave-one-out.
REFERENCES = {
    "beauty-release": ("authors' PyTorch release on this Beauty split (d=256), masked",
                       {"base": (.0472, .0541, .0783, .1060), "erl": (.0505, .0581, .0830, .1134),
                        "prl": (.0502, .0582, .0838, .1158)}),
}
KEYS = ("ndcg@10", "ndcg@20", "recall@10", "recall@20")


def command(cfg: dict) -> str:
    from rearec_tf.config import Config

    default = Config().to_dict()
    flags = [f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
             for k, v in sorted(cfg.items())
             if (v != default.get(k) or k in ("dataset", "method")) and k != "data_dir"]
    return "python -m rearec_tf.train " + " ".join(flags)


def _disambiguate(rows) -> None:
    """Rows sharing a "dataset method" label get the config fields that tell them apart
    (e.g. ``seed 1``, ``hidden_dropout 0.2``) appended to their label."""
    ignore = {"epochs", "data_dir"}
    groups = {}
    for row in rows:
        groups.setdefault(row[0], []).append(row)
    for same in (g for g in groups.values() if len(g) > 1):
        keys = sorted({k for r in same for k in r[1]
                       if k not in ignore and len({json.dumps(x[1].get(k)) for x in same}) > 1})
        if keys:
            for r in same:
                r[0] += " (" + ", ".join(
                    f"{k} {'default' if r[1].get(k) is None else r[1].get(k)}" for k in keys) + ")"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dirs", nargs="+")
    p.add_argument("--reference", choices=sorted(REFERENCES))
    p.add_argument("--title", default=None)
    p.add_argument("--no-write", action="store_true")
    a = p.parse_args(argv)

    from rearec_tf.config import Config

    defaults = Config().to_dict()
    rows, cmds, base = [], [], {}
    for run in a.run_dirs:
        with open(os.path.join(run, "config.json")) as f:
            cfg = {**defaults, **json.load(f)}  # runs older than a field get its default
        with open(os.path.join(run, "metrics.json")) as f:
            met = json.load(f)
        with open(os.path.join(run, "history.json")) as f:
            hist = json.load(f)
        secs = statistics.median(h["train_seconds"] for h in hist)
        sps = statistics.median(h["samples_per_sec"] for h in hist)
        val_s = statistics.median(h.get("val_seconds", float("nan")) for h in hist)
        t = {m: [met["test"][m][k] for k in KEYS] for m in ("masked", "unmasked")}
        if cfg["method"] == "base":
            base.setdefault(cfg["dataset"], t)  # the first base run listed for the dataset
        rows.append([f"{cfg['dataset']} {cfg['method']}", cfg, met, len(hist), secs, sps,
                     val_s, t, run])
    _disambiguate(rows)
    for label, cfg, *_, run in rows:
        cmds.append(f"- {label}: `{command(cfg)} --run-dir {run}`")

    def gain(ds, method, mode, vals):
        b = base.get(ds)
        if not b or method == "base":
            return ""
        return " (" + "/".join(f"{100 * (v / bv - 1):+.1f}%" for v, bv in zip(vals, b[mode])) + ")"

    lines = ["Test N@10 / N@20 / R@10 / R@20, full ranking, leave-one-out; relative change vs "
             "the (first listed) base row of the same dataset in brackets. Training seconds/epoch and "
             "samples/s are medians over the run's epochs (2 cores, CPU).", "",
             "| run | d | batch | epochs (best) | masked | unmasked | s/epoch | samples/s | "
             "validation s |", "|---|---|---|---|---|---|---|---|---|"]
    for label, cfg, met, n_ep, secs, sps, val_s, t, _ in rows:
        cells = {m: "/".join(f"{v:.4f}" for v in t[m]) + gain(cfg["dataset"], cfg["method"], m, t[m])
                 for m in t}
        lines.append(f"| {label} | {cfg['hidden_size']} | {cfg['batch_size']} | {n_ep} "
                     f"({met['epoch']}) | {cells['masked']} | {cells['unmasked']} | {secs:.0f} | "
                     f"{sps:.0f} | {val_s:.1f} |")
    if a.reference:
        name, ref = REFERENCES[a.reference]
        lines += ["", f"Reference — {name}:", ""]
        for m, v in ref.items():
            lines.append(f"- {m}: " + "/".join(f"{x:.4f}" for x in v))
    lines += ["", "Commands:", ""] + cmds
    body = "\n".join(lines)
    if a.no_write:
        print(body)
        return
    from bench._common import append_section
    append_section(a.title or "Quality of trained runs", body)


if __name__ == "__main__":
    main()
