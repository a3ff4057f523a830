"""Apache Beam data preparation: interaction log -> per-user sequence file + vocabulary.

::

    pip install 'rearec-tf[beam]'
    python -m pipelines.beam_prepare --input 'logs/*.csv' --output-dir data/mine --k-core 5
    python -m rearec_tf.train --dataset file --data-file data/mine/sequences.txt \\
        --data-format sequences --method prl

    # any Beam runner: everything after the known flags goes to Beam's PipelineOptions
    python -m pipelines.beam_prepare --input gs://b/log-*.tsv --output-dir gs://b/out \\
        --runner DataflowRunner --project P --region R --temp_location gs://b/tmp

Input: text files (a glob) of ``user item timestamp`` rows, separated by ``,`` (CSV), a
tab (TSV) or whitespace (``--delimiter auto`` picks per line: tab, else comma, else
whitespace). ``--skip-header`` drops the first line of every file. Extra columns are
ignored; ``--columns 0,1,2`` picks the user, item and timestamp columns. Timestamps must
be numbers (e.g. Unix seconds); rows that cannot be parsed are counted and dropped
(``bad_rows`` in ``stats.json``) unless ``--strict``.

What it does, the same rules as :mod:`rearec_tf.data.preprocess`:

1. **Chronological order per user**: sort by timestamp; ties keep the input order
   (file, then line number — each file is read by a single worker so that its line
   numbers are exact; give several files to read in parallel).
2. **Iterative k-core** (``--k-core K``): each round counts the interactions of every
   user and item *of the current data* and keeps the interactions whose user and item
   both have at least K (repeat interactions count) — exactly
   :func:`rearec_tf.data.k_core`. Beam has no loops, so ``--k-core-rounds R`` rounds are
   unrolled into the pipeline (default 10); ``stats.json`` says whether the result is a
   true k-core (``"k_core_converged"``); if not, raise ``--k-core-rounds`` (or run the
   pipeline again on its own output with ``--format sequences``).
3. Users with fewer than ``--min-seq-len`` items (default 3: one train, one validation
   and one test item for leave-one-out) are dropped after the k-core.
4. **Integer ids in rearec_tf's order**: users are numbered 1.. in order of their first
   row in the input; items 1.. in order of first appearance when walking the users in
   that order and each user's items chronologically. This is the order in which
   :func:`rearec_tf.data.prepare` builds its vocabulary, so item ``"7"`` of the output is
   index 7 of a model trained on it, and ``items.tsv`` maps model indices back to the
   original item ids.

Outputs in ``--output-dir``:

``sequences.txt``  ``user item1 item2 ...`` one user per line, chronological, users in id
                   order (the S3-Rec ``Beauty.txt`` format; ``--data-format sequences``)
``items.tsv``      ``index<TAB>original item id`` (index 1..N)
``users.tsv``      ``index<TAB>original user id``
``stats.json``     counts before/after filtering, k-core rounds and convergence

Scale: reading, parsing, counting, the k-core joins and the per-user grouping/sorting
are distributed. Numbering users and items needs a global order: the user table
(``O(#users)``) and the item table (``O(#items)``) are built on one worker, and the
single ``sequences.txt`` is written in user order by one worker (the output is the
size of the input log; use ``--shards`` > 1 to write unordered shards in parallel — the
integer ids stay the same, rearec_tf re-derives its vocabulary order from the file).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Iterable, List, Optional, Sequence, Tuple

INSTALL_HINT = ("the Beam data-preparation pipeline needs Apache Beam: "
                "pip install 'rearec-tf[beam]'  (or: pip install apache-beam)")


def _import_beam():
    try:
        import apache_beam as beam  # noqa: F401
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(f"{INSTALL_HINT} ({e})") from None
    return beam


# ---------------------------------------------------------------- plain functions
def split_line(line: str, delimiter: str = "auto") -> List[str]:
    """Fields of one input line (``auto``: tab, else comma, else whitespace)."""
    line = line.rstrip("\r\n")
    if delimiter == "auto":
        if "\t" in line:
            return [f.strip() for f in line.split("\t")]
        if "," in line:
            return [f.strip() for f in line.split(",")]
        return line.split()
    if delimiter in ("whitespace", "space", " "):
        return line.split()
    if delimiter in ("tab", "\\t"):
        delimiter = "\t"
    return [f.strip() for f in line.split(delimiter)]


def parse_row(line: str, columns: Tuple[int, int, int] = (0, 1, 2),
              delimiter: str = "auto") -> Optional[Tuple[str, str, float]]:
    """``(user, item, timestamp)`` of a line, or None if it cannot be parsed (a blank
    line, too few fields, an empty id or a non-numeric timestamp)."""
    if not line.strip():
        return None
    parts = split_line(line, delimiter)
    if len(parts) <= max(columns):
        return None
    user, item, ts = parts[columns[0]], parts[columns[1]], parts[columns[2]]
    if not user or not item:
        return None
    try:
        t = float(ts)
    except ValueError:
        return None
    if t != t:  # NaN
        return None
    return user, item, t


# ------------------------------------------------------------------- the pipeline
def build_pipeline(pipeline, input_pattern: str, output_dir: str, k_core: int = 0,
                   k_core_rounds: int = 10, min_seq_len: int = 3,
                   columns: Tuple[int, int, int] = (0, 1, 2), delimiter: str = "auto",
                   skip_header: bool = False, input_format: str = "log",
                   shards: int = 1) -> None:
    """Add the preparation transforms to ``pipeline`` (a ``beam.Pipeline``)."""
    beam = _import_beam()
    from apache_beam.io import fileio
    from apache_beam.io.filesystems import FileSystems

    def read_file(readable):
        """(file path, line number, line) for every line of one file, in order."""
        path = readable.metadata.path
        with readable.open() as f:
            for no, raw in enumerate(f):
                if skip_header and no == 0:
                    continue
                yield path, no, raw.decode("utf-8")

    def to_rows(rec):
        """-> (user, item, timestamp, order key) rows; bad lines to a tagged output."""
        path, no, line = rec
        if not line.strip():
            return
        order = (path, no)
        if input_format == "sequences":
            parts = line.split()
            if len(parts) < 2:
                yield beam.pvalue.TaggedOutput("bad", line)
                return
            for j, item in enumerate(parts[1:]):
                # no timestamps: the position in the line is the time
                yield parts[0], item, float(j), order + (j,)
            return
        row = parse_row(line, columns, delimiter)
        if row is None:
            yield beam.pvalue.TaggedOutput("bad", line)
            return
        yield row[0], row[1], row[2], order + (0,)

    files = (pipeline
             | "Match" >> fileio.MatchFiles(input_pattern)
             | "Open" >> fileio.ReadMatches()
             | "Lines" >> beam.FlatMap(read_file))
    parsed = files | "Parse" >> beam.FlatMap(to_rows).with_outputs("bad", main="rows")
    rows = parsed.rows
    stats = {"bad_rows": parsed.bad | "CountBad" >> beam.combiners.Count.Globally(),
             "raw_interactions": rows | "CountRaw" >> beam.combiners.Count.Globally()}

    # ---- iterative k-core, unrolled
    def keep_if(min_count):
        def fn(kv):
            _, grouped = kv
            n = list(grouped["n"])
            if n and n[0] >= min_count:
                for r in grouped["rows"]:
                    yield r
        return fn

    def one_round(rows, r):
        by_item = rows | f"KeyItem{r}" >> beam.Map(lambda x: (x[1], x))
        by_user = rows | f"KeyUser{r}" >> beam.Map(lambda x: (x[0], x))
        n_item = by_item | f"CountItem{r}" >> beam.combiners.Count.PerKey()
        n_user = by_user | f"CountUser{r}" >> beam.combiners.Count.PerKey()
        # counts of this round decide both filters (as rearec_tf.data.k_core)
        flagged = ({"rows": by_item, "n": n_item}
                   | f"JoinItem{r}" >> beam.CoGroupByKey()
                   | f"KeepItem{r}" >> beam.FlatMap(keep_if(k_core))
                   | f"ReKeyUser{r}" >> beam.Map(lambda x: (x[0], x)))
        return ({"rows": flagged, "n": n_user}
                | f"JoinUser{r}" >> beam.CoGroupByKey()
                | f"KeepUser{r}" >> beam.FlatMap(keep_if(k_core)))

    rounds = k_core_rounds if k_core > 1 else 0
    for r in range(rounds):
        rows = one_round(rows, r)

    if k_core > 1:
        # convergence: does the result satisfy the k-core condition?
        min_item = (rows | "FinalItemKey" >> beam.Map(lambda x: (x[1], 1))
                    | "FinalItemCount" >> beam.CombinePerKey(sum) | "ItemCounts" >> beam.Values()
                    | "MinItem" >> beam.CombineGlobally(lambda c: min(c, default=0)))
        min_user = (rows | "FinalUserKey" >> beam.Map(lambda x: (x[0], 1))
                    | "FinalUserCount" >> beam.CombinePerKey(sum) | "UserCounts" >> beam.Values()
                    | "MinUser" >> beam.CombineGlobally(lambda c: min(c, default=0)))
        stats["k_core_min_item_count"] = min_item
        stats["k_core_min_user_count"] = min_user

    # ---- per-user chronological sequences
    def sort_user(kv):
        user, recs = kv
        recs = sorted(recs, key=lambda x: (x[2], x[3]))
        return user, (min(x[3] for x in recs), [x[1] for x in recs])

    seqs = (rows | "KeyByUser" >> beam.Map(lambda x: (x[0], x))
            | "GroupByUser" >> beam.GroupByKey()
            | "SortUser" >> beam.Map(sort_user)
            | "MinLen" >> beam.Filter(lambda kv: len(kv[1][1]) >= max(min_seq_len, 1)))

    # ---- user numbering: order of the first input row (one worker, O(#users))
    user_index = (seqs | "UserFirst" >> beam.Map(lambda kv: (kv[1][0], kv[0]))
                  | "AllUsers" >> beam.combiners.ToList()
                  | "NumberUsers" >> beam.Map(
                      lambda lst: {u: i for i, (_, u) in enumerate(sorted(lst), 1)}))

    def attach_user(kv, index):
        return index[kv[0]], kv[0], kv[1][1]

    numbered = seqs | "AttachUser" >> beam.Map(attach_user,
                                               index=beam.pvalue.AsSingleton(user_index))

    # ---- item numbering: first appearance in the (user id, position) walk
    def item_first(rec):
        uid, _, items = rec
        first = {}
        for pos, it in enumerate(items):
            if it not in first:
                first[it] = (uid, pos)
        return list(first.items())

    item_index = (numbered | "ItemFirstPerUser" >> beam.FlatMap(item_first)
                  | "ItemFirst" >> beam.CombinePerKey(min)
                  | "AllItems" >> beam.combiners.ToList()
                  | "NumberItems" >> beam.Map(
                      lambda lst: {it: i for i, (it, _) in
                                   enumerate(sorted(lst, key=lambda kv: kv[1]), 1)}))

    def to_line(rec, index):
        uid, _, items = rec
        return uid, f"{uid} " + " ".join(str(index[it]) for it in items)

    lines = numbered | "ToLine" >> beam.Map(to_line, index=beam.pvalue.AsSingleton(item_index))
    out = lambda name: FileSystems.join(output_dir, name)  # noqa: E731
    if shards == 1:
        (lines | "AllLines" >> beam.combiners.ToList()
         | "SortLines" >> beam.FlatMap(lambda lst: [l for _, l in sorted(lst)])
         | "WriteSeq" >> beam.io.WriteToText(out("sequences.txt"), num_shards=1,
                                             shard_name_template=""))
    else:
        (lines | "DropKey" >> beam.Values()
         | "WriteSeq" >> beam.io.WriteToText(out("sequences"), file_name_suffix=".txt",
                                             num_shards=shards))

    def table(index):
        return [f"{i}\t{raw}" for raw, i in sorted(index.items(), key=lambda kv: kv[1])]

    (item_index | "ItemTable" >> beam.FlatMap(table)
     | "WriteItems" >> beam.io.WriteToText(out("items.tsv"), num_shards=1,
                                           shard_name_template=""))
    (user_index | "UserTable" >> beam.FlatMap(table)
     | "WriteUsers" >> beam.io.WriteToText(out("users.tsv"), num_shards=1,
                                           shard_name_template=""))

    # ---- stats.json
    stats["users"] = user_index | "NUsers" >> beam.Map(len)
    stats["items"] = item_index | "NItems" >> beam.Map(len)
    stats["interactions"] = (numbered | "SeqLens" >> beam.Map(lambda r: len(r[2]))
                             | "NInter" >> beam.CombineGlobally(sum))
    names = sorted(stats)
    singletons = {n: beam.pvalue.AsSingleton(stats[n]) for n in names}

    def make_stats(_, **vals):
        doc = {"input": input_pattern, "k_core": k_core, "k_core_rounds": rounds,
               "min_seq_len": min_seq_len, **{k: int(v) for k, v in vals.items()}}
        if k_core > 1:
            doc["k_core_converged"] = bool(
                doc["interactions"] == 0 or
                (doc["k_core_min_item_count"] >= k_core and
                 doc["k_core_min_user_count"] >= k_core))
        return json.dumps(doc, indent=2, sort_keys=True)

    (pipeline | "StatsSeed" >> beam.Create([None])
     | "Stats" >> beam.Map(make_stats, **singletons)
     | "WriteStats" >> beam.io.WriteToText(out("stats.json"), num_shards=1,
                                           shard_name_template=""))


def run(input_pattern: str, output_dir: str, k_core: int = 0, k_core_rounds: int = 10,
        min_seq_len: int = 3, columns: Tuple[int, int, int] = (0, 1, 2),
        delimiter: str = "auto", skip_header: bool = False, input_format: str = "log",
        shards: int = 1, beam_args: Sequence[str] = ()) -> dict:
    """Run the pipeline (DirectRunner unless ``beam_args`` say otherwise); returns the
    parsed ``stats.json`` when the output is local."""
    beam = _import_beam()
    from apache_beam.options.pipeline_options import PipelineOptions

    if "://" not in output_dir:
        os.makedirs(output_dir, exist_ok=True)
    options = PipelineOptions(list(beam_args))
    with beam.Pipeline(options=options) as p:
        build_pipeline(p, input_pattern, output_dir, k_core=k_core,
                       k_core_rounds=k_core_rounds, min_seq_len=min_seq_len, columns=columns,
                       delimiter=delimiter, skip_header=skip_header,
                       input_format=input_format, shards=shards)
    path = os.path.join(output_dir, "stats.json")
    if "://" not in output_dir and os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    return {}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pipelines.beam_prepare",
        description="Apache Beam: interaction log -> per-user sequence file (S3-Rec format) "
                    "+ vocabulary, with iterative k-core. Unknown flags go to Beam.")
    p.add_argument("--input", required=True, help="file or glob of the interaction log(s)")
    p.add_argument("--output-dir", required=True)
    p.add_argument("--format", dest="input_format", choices=("log", "sequences"),
                   default="log", help="log: user item timestamp rows; sequences: "
                   "`user i1 i2 ...` lines (e.g. to re-filter an S3-Rec file)")
    p.add_argument("--k-core", type=int, default=0, help="keep users/items with >= K "
                   "interactions (0/1: no filtering)")
    p.add_argument("--k-core-rounds", type=int, default=10,
                   help="k-core filtering rounds unrolled in the pipeline")
    p.add_argument("--min-seq-len", type=int, default=3,
                   help="drop users with fewer items after filtering (3 = leave-one-out)")
    p.add_argument("--columns", default="0,1,2", help="user,item,timestamp column indices")
    p.add_argument("--delimiter", default="auto", help="auto, tab, comma (','), whitespace "
                   "or any string")
    p.add_argument("--skip-header", action="store_true", help="drop the first line of each file")
    p.add_argument("--shards", type=int, default=1,
                   help="1: one sequences.txt in user order; >1: unordered shards")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args, beam_args = build_parser().parse_known_args(argv)
    try:
        _import_beam()
    except ImportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        columns = tuple(int(c) for c in args.columns.split(","))
        if len(columns) != 3 or min(columns) < 0:
            raise ValueError
    except ValueError:
        print(f"error: --columns {args.columns!r}: three column indices user,item,timestamp",
              file=sys.stderr)
        return 2
    delimiter = {"comma": ",", "tab": "\t"}.get(args.delimiter, args.delimiter)
    stats = run(args.input, args.output_dir, k_core=args.k_core,
                k_core_rounds=args.k_core_rounds, min_seq_len=args.min_seq_len,
                columns=columns, delimiter=delimiter, skip_header=args.skip_header,
                input_format=args.input_format, shards=args.shards, beam_args=beam_args)
    if stats:
        print(json.dumps(stats, indent=2, sort_keys=True))
        if stats.get("k_core_converged") is False:
            print(f"warning: {args.k_core}-core not reached after {args.k_core_rounds} rounds; "
                  "raise --k-core-rounds", file=sys.stderr)
    seq = os.path.join(args.output_dir, "sequences.txt")
    print(f"train with: python -m rearec_tf.train --dataset file --data-file {seq} "
          "--data-format sequences")
    return 0


if __name__ == "__main__":
    sys.exit(main())
