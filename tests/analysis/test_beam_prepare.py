"""The Apache Beam preparation pipeline against rearec_tf's own reader + k-core + split
order (runs only where apache-beam is importable; it is an optional extra)."""
import json
import random

import pytest

beam = pytest.importorskip("apache_beam")

from pipelines import beam_prepare  # noqa: E402
from rearec_tf.data import build_sequences, k_core, read_interactions, read_user_sequences  # noqa: E402


def _log(path, n_rows=600, seed=0):
    rng = random.Random(seed)
    with open(path, "w") as f:
        f.write("user_id,item_id,timestamp\n")
        for _ in range(n_rows):
            u = f"u{int(rng.paretovariate(1.2)) % 60}"
            i = f"item-{int(rng.paretovariate(1.0)) % 80}"
            f.write(f"{u},{i},{rng.randint(0, 30)}\n")  # many timestamp ties


def _table(path):
    with open(path) as f:
        return dict(line.rstrip("\n").split("\t")[::-1] for line in f)


@pytest.mark.parametrize("k", [0, 3])
def test_matches_rearec_tf_preprocessing(tmp_path, k):
    log = tmp_path / "log.csv"
    _log(log)
    out = tmp_path / "out"
    stats = beam_prepare.run(str(log), str(out), k_core=k, k_core_rounds=15, min_seq_len=1,
                             skip_header=True)
    # rearec_tf: same reader rules, iterative k-core, chronological with file-order ties
    inter = k_core(read_interactions(str(log), fmt="csv", user_col="user_id",
                                     item_col="item_id", time_col="timestamp"), k)
    expected = {u: list(s) for u, s in build_sequences(inter).items()}

    items = {int(v): raw for raw, v in _table(out / "items.tsv").items()}
    users = {int(v): raw for raw, v in _table(out / "users.tsv").items()}
    got = {}
    with open(out / "sequences.txt") as f:
        lines = f.read().split("\n")[:-1]
    for no, line in enumerate(lines, 1):
        parts = line.split()
        assert int(parts[0]) == no  # users numbered 1.. in file order
        got[users[no]] = [items[int(t)] for t in parts[1:]]
    assert got == expected
    assert list(got) == list(expected)  # user order = first occurrence in the log
    # item ids follow rearec_tf's vocabulary order: identity once read back
    seqs = build_sequences(read_user_sequences(str(out / "sequences.txt")))
    walk = [int(t) for s in seqs.values() for t in s]
    firsts = list(dict.fromkeys(walk))
    assert firsts == list(range(1, len(firsts) + 1))
    assert stats["interactions"] == len(inter) and stats["users"] == len(expected)
    assert stats["raw_interactions"] == 600 and stats["bad_rows"] == 0
    if k:
        assert stats["k_core_converged"] is True
        assert stats["k_core_min_item_count"] >= k and stats["k_core_min_user_count"] >= k
    assert json.loads((out / "stats.json").read_text()) == stats


def test_one_round_is_not_a_k_core_and_says_so(tmp_path):
    # a chain where dropping item c makes user 2 too short, which makes item b too rare
    log = tmp_path / "log.tsv"
    rows = ["1\ta\t1", "1\tb\t2", "2\tb\t1", "2\tc\t2", "3\ta\t1", "3\ta\t2", "4\ta\t3",
            "4\tb\t4", "bad line", "5\tx\tnot-a-time"]
    log.write_text("\n".join(rows) + "\n")
    stats = beam_prepare.run(str(log), str(tmp_path / "o1"), k_core=2, k_core_rounds=1,
                             min_seq_len=1)
    assert stats["bad_rows"] == 2 and stats["k_core_converged"] is False
    stats = beam_prepare.run(str(log), str(tmp_path / "o2"), k_core=2, k_core_rounds=5,
                             min_seq_len=1)
    assert stats["k_core_converged"] is True
    assert (tmp_path / "o2" / "sequences.txt").read_text() == "1 1 2\n2 1 1\n3 1 2\n"


def test_cli_message_without_beam(monkeypatch, capsys):
    def missing():
        raise ImportError(beam_prepare.INSTALL_HINT)
    monkeypatch.setattr(beam_prepare, "_import_beam", missing)
    assert beam_prepare.main(["--input", "x", "--output-dir", "y"]) == 2
    assert "pip install 'rearec-tf[beam]'" in capsys.readouterr().err
