import logging

import numpy as np
import pandas as pd
import pytest

from rearec_tf.data import (DataError, DataFormatError, DatasetNotFoundError, read_atomic_inter,
                            read_interactions, read_movielens_ratings, read_table,
                            read_user_item_pairs, read_user_sequences, sniff_format)


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def check_format_error(exc, path, line_no, rule_part, line_part):
    msg = str(exc.value)
    assert exc.value.path == path and exc.value.line_no == line_no
    assert f"{path}:{line_no}:" in msg
    assert rule_part in msg
    assert line_part in msg          # the offending line is quoted
    assert "fix:" in msg


# ------------------------------------------------------------------------ formats
def test_pairs(tmp_path):
    p = write(tmp_path, "ml.txt", "1 10\n1 11\n2 10\n1 12\n")
    inter = read_user_item_pairs(p)
    assert len(inter) == 4
    assert inter.user.tolist() == ["1", "1", "2", "1"]
    assert inter.item.tolist() == ["10", "11", "10", "12"]
    assert inter.timestamp is None and inter.source == p


def test_sequences(tmp_path):
    p = write(tmp_path, "Beauty.txt", "1 5 6 7\n2 6\n3 7 7\n")
    inter = read_user_sequences(p)
    assert inter.user.tolist() == ["1", "1", "1", "2", "3", "3"]
    assert inter.item.tolist() == ["5", "6", "7", "6", "7", "7"]
    assert inter.timestamp is None


def test_atomic_inter(tmp_path):
    p = write(tmp_path, "x.inter",
              "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
              "u1\ta\t3\t100\nu2\tb\t1\t50.5\nu1\tb\t5\t90\n")
    inter = read_atomic_inter(p)
    assert inter.user.tolist() == ["u1", "u2", "u1"]
    assert inter.item.tolist() == ["a", "b", "b"]
    assert inter.timestamp.dtype == np.float64
    assert inter.timestamp.tolist() == [100.0, 50.5, 90.0]


def test_atomic_inter_custom_fields_and_no_time(tmp_path):
    p = write(tmp_path, "x.inter", "ts:float\tsession:token\tsong:token\n7\ts1\tx\n3\ts1\ty\n")
    inter = read_atomic_inter(p, user_field="session", item_field="song", time_field="ts")
    assert inter.user.tolist() == ["s1", "s1"] and inter.item.tolist() == ["x", "y"]
    assert inter.timestamp.tolist() == [7.0, 3.0]
    no_time = read_atomic_inter(p, user_field="session", item_field="song")
    assert no_time.timestamp is None


def test_movielens_ratings_dat_and_u_data(tmp_path):
    dat = write(tmp_path, "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n")
    inter = read_movielens_ratings(dat)
    assert inter.user.tolist() == ["1", "1"] and inter.item.tolist() == ["1193", "661"]
    assert inter.timestamp.tolist() == [978300760.0, 978302109.0]
    udata = write(tmp_path, "u.data", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n")
    inter = read_movielens_ratings(udata)
    assert inter.user.tolist() == ["196", "186"] and inter.item.tolist() == ["242", "302"]
    assert inter.timestamp.tolist() == [881250949.0, 891717742.0]


def test_csv_tsv_parquet(tmp_path):
    p = write(tmp_path, "log.csv", "uid,iid,when,extra\nA,x,10,q\nB,y,5,r\n")
    inter = read_table(p, "uid", "iid", "when")
    assert inter.user.tolist() == ["A", "B"] and inter.item.tolist() == ["x", "y"]
    assert inter.timestamp.tolist() == [10.0, 5.0]
    assert read_table(p, "uid", "iid").timestamp is None
    assert read_interactions(p, "csv", user_col="uid", item_col="iid",
                             time_col="none").timestamp is None

    t = write(tmp_path, "log.tsv", "uid\tiid\nA\t007\n")
    inter = read_interactions(t, user_col="uid", item_col="iid")
    assert inter.item.tolist() == ["007"]  # ids are strings, leading zeros kept

    df = pd.DataFrame({"u": [1, 2], "i": ["p", "q"],
                       "t": pd.to_datetime(["1970-01-01 00:00:10", "1970-01-02 00:00:00"])})
    pq = str(tmp_path / "log.parquet")
    df.to_parquet(pq)
    inter = read_table(pq, "u", "i", "t")
    assert inter.user.tolist() == ["1", "2"] and inter.item.tolist() == ["p", "q"]
    assert inter.timestamp.tolist() == [10.0, 86400.0]


def test_csv_datetime_strings(tmp_path):
    p = write(tmp_path, "log.csv", "u,i,t\nA,x,1970-01-01T00:01:00Z\nA,y,1970-01-01 00:00:30\n")
    assert read_table(p, "u", "i", "t").timestamp.tolist() == [60.0, 30.0]


def test_dispatcher_infers_format(tmp_path):
    files = {
        "a.txt": ("1 2\n1 3\n", "pairs"),
        "b.txt": ("1 2 3 4\n2 5\n", "sequences"),
        "c.inter": ("user_id:token\titem_id:token\n1\t2\n", "inter"),
        "ratings.dat": ("1::2::5::10\n", "movielens"),
        "u.data": ("1\t2\t5\t10\n", "movielens"),
        "d.txt": ("1::2::5::10\n", "movielens"),
        "e.csv": ("user_id,item_id\n1,2\n", "csv"),
    }
    for name, (text, fmt) in files.items():
        p = write(tmp_path, name, text)
        assert sniff_format(p) == fmt, name
        inter = read_interactions(p)
        assert inter.user[0] == "1" and inter.item[0] == "2", name
    with pytest.raises(DataError, match="unknown data format 'xml'"):
        read_interactions(write(tmp_path, "f.txt", "1 2\n"), fmt="xml")


# ----------------------------------------------------------------- bad-input rules
def test_pairs_wrong_field_count(tmp_path):
    p = write(tmp_path, "ml.txt", "1 10\n1 11 12\n")
    with pytest.raises(DataFormatError) as e:
        read_user_item_pairs(p)
    check_format_error(e, p, 2, "expected 2 fields (user item), got 3", "'1 11 12'")


def test_pairs_non_integer_id(tmp_path):
    p = write(tmp_path, "ml.txt", "1 10\n\n1 abc\n")
    with pytest.raises(DataFormatError) as e:
        read_user_item_pairs(p)
    check_format_error(e, p, 3, "item must be a non-negative integer id, got 'abc'", "'1 abc'")


def test_sequences_bad_rules(tmp_path):
    p = write(tmp_path, "s.txt", "1 5 6\n2 7 x8 9\n")
    with pytest.raises(DataFormatError) as e:
        read_user_sequences(p)
    check_format_error(e, p, 2, "item (field 3) must be a non-negative integer id, got 'x8'",
                       "'2 7 x8 9'")
    p = write(tmp_path, "s2.txt", "1 5 6\n2\n")
    with pytest.raises(DataFormatError) as e:
        read_user_sequences(p)
    check_format_error(e, p, 2, "expected at least 2 fields", "'2'")
    p = write(tmp_path, "s3.txt", "1 5 6\n2 3\n1 7\n")
    with pytest.raises(DataFormatError) as e:
        read_user_sequences(p)
    check_format_error(e, p, 3, "user 1 already has a sequence on line 1", "'1 7'")


def test_non_numeric_timestamp(tmp_path):
    p = write(tmp_path, "x.inter", "user_id:token\titem_id:token\ttimestamp:float\n"
                                   "1\t2\t10\n1\t3\tyesterday\n")
    with pytest.raises(DataFormatError) as e:
        read_atomic_inter(p)
    check_format_error(e, p, 3, "timestamp must be a finite number, got 'yesterday'",
                       "'1\\t3\\tyesterday'")
    p = write(tmp_path, "ratings.dat", "1::2::5::10\n1::3::4::nan\n")
    with pytest.raises(DataFormatError) as e:
        read_movielens_ratings(p)
    check_format_error(e, p, 2, "timestamp must be a finite number, got 'nan'", "1::3::4::nan")
    p = write(tmp_path, "t.csv", "u,i,t\nA,x,1\n\nB,y,soon\n")
    with pytest.raises(DataFormatError) as e:
        read_table(p, "u", "i", "t")
    check_format_error(e, p, 4, "timestamp must be a finite number or a date-time", "'B,y,soon'")


def test_inter_field_count_and_header(tmp_path):
    p = write(tmp_path, "x.inter", "user_id:token\titem_id:token\n1\t2\n1\t2\t3\n")
    with pytest.raises(DataFormatError) as e:
        read_atomic_inter(p)
    check_format_error(e, p, 3, "expected 2 tab-separated fields", "'1\\t2\\t3'")
    p = write(tmp_path, "y.inter", "uid:token\titem_id:token\n1\t2\n")
    with pytest.raises(DataFormatError) as e:
        read_atomic_inter(p)
    check_format_error(e, p, 1, "header lacks field(s) ['user_id']; available fields: "
                                "['uid', 'item_id']", "uid:token")


def test_movielens_wrong_field_count(tmp_path):
    p = write(tmp_path, "ratings.dat", "1::2::5::10\n1::2::5\n")
    with pytest.raises(DataFormatError) as e:
        read_movielens_ratings(p)
    check_format_error(e, p, 2, "expected 4 fields separated by '::'", "'1::2::5'")


def test_csv_missing_column_and_empty_cell(tmp_path):
    p = write(tmp_path, "log.csv", "uid,iid\nA,x\n")
    with pytest.raises(DataError) as e:
        read_table(p, "user_id", "iid")
    msg = str(e.value)
    assert p in msg and "['user_id'] not found" in msg and "available columns: ['uid', 'iid']" in msg
    p = write(tmp_path, "log2.csv", "uid,iid\nA,x\nB,\n")
    with pytest.raises(DataFormatError) as e:
        read_table(p, "uid", "iid")
    check_format_error(e, p, 3, "column 'iid' is empty", "'B,'")


def test_empty_files(tmp_path):
    for name, reader in [("a.txt", read_user_item_pairs), ("b.txt", read_user_sequences),
                         ("c.inter", read_atomic_inter), ("d.dat", read_movielens_ratings)]:
        p = write(tmp_path, name, "")
        with pytest.raises(DataError, match="holds no") as e:
            reader(p)
        assert p in str(e.value)
        p = write(tmp_path, "blank_" + name, "\n  \n")
        with pytest.raises(DataError, match="holds no"):
            reader(p)
    p = write(tmp_path, "e.csv", "")
    with pytest.raises(DataError, match="holds no"):
        read_table(p, "u", "i")
    p = write(tmp_path, "f.csv", "u,i\n")
    with pytest.raises(DataError, match="holds no"):
        read_table(p, "u", "i")
    p = write(tmp_path, "g.inter", "user_id:token\titem_id:token\n")
    with pytest.raises(DataError, match="holds no interactions"):
        read_atomic_inter(p)


def test_blank_lines_counted_and_logged(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="rearec_tf.data")
    p = write(tmp_path, "s.txt", "1 5 6\n\n2 7\n   \n\n")
    inter = read_user_sequences(p)
    assert len(inter) == 3
    recs = [r for r in caplog.records if r.name == "rearec_tf.data"]
    assert len(recs) == 1 and recs[0].getMessage() == f"{p}: skipped 3 blank line(s)"
    caplog.clear()
    p = write(tmp_path, "t.csv", "u,i\nA,x\n\nB,y\n")
    assert read_table(p, "u", "i").user.tolist() == ["A", "B"]
    assert [r.getMessage() for r in caplog.records] == [f"{p}: skipped 1 blank line(s)"]


def test_missing_file_and_long_line(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="nope.txt"):
        read_interactions(str(tmp_path / "nope.txt"))
    p = write(tmp_path, "ml.txt", "1 " + "9" * 300 + " 3\n")
    with pytest.raises(DataFormatError) as e:
        read_user_item_pairs(p)
    assert "..." in str(e.value) and len(str(e.value)) < 600


# ---------------------------------------------------------------------- real data
def test_real_slice_of_beauty(tmp_path, data_dir):
    with open(data_dir / "beauty" / "Beauty.txt") as f:
        head = [next(f) for _ in range(200)]
    p = write(tmp_path, "Beauty200.txt", "".join(head))
    inter = read_interactions(p)  # sniffed as sequences
    assert len(inter) == 2798
    assert inter.num_users == 200 and inter.num_items == 2022
    assert inter.user[:5].tolist() == ["1"] * 5 and inter.item[:6].tolist() == ["1", "2", "3", "4", "5", "6"]


def test_real_ml100k_inter(data_dir):
    inter = read_interactions(str(data_dir / "ml-100k" / "ml-100k.inter"))
    assert len(inter) == 100000 and inter.num_users == 943 and inter.num_items == 1682
    assert (inter.user[0], inter.item[0], inter.timestamp[0]) == ("196", "242", 881250949.0)
