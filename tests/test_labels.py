"""The labels module: the CSV, label fields and the split rule, the missing-value test, codes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from artenc import labels
from artenc.errors import ParameterError, UsageError
from artenc.store import ModelSignature, Store

# ---- the missing-value rule ------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "missing"),
    [
        (None, True),
        (float("nan"), True),
        (np.float32("nan"), True),
        (pd.NA, True),
        ("", True),
        ("   ", True),
        ("\t\n", True),
        ("a", False),
        (" a ", False),
        ("nan", False),  # the CSV is read as text: a label spelled "nan" / "NA" / "None" is a label
        ("NA", False),
        ("None", False),
        (0, False),
        (0.0, False),
        (False, False),
    ],
)
def test_is_missing(value, missing) -> None:
    assert labels.is_missing([value]).tolist() == [missing]
    assert labels.is_missing(pd.Series(["x", value], index=[7, 3], dtype=object)).tolist() == [False, missing]


def test_is_missing_returns_a_bool_array_of_the_input_length() -> None:
    out = labels.is_missing(np.array(["a", "", None, "b"], dtype=object))
    assert out.dtype == bool and out.tolist() == [False, True, True, False]
    assert labels.is_missing([]).shape == (0,)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), (float("nan"), None), (pd.NA, None), ("", ""), ("a", "a"), (np.int64(3), 3), (np.float64(0.5), 0.5)],
)
def test_plain_is_json_ready(value, expected) -> None:
    out = labels.plain(value)
    assert out == expected and type(out) is type(expected)


# ---- label fields and the split rule --------------------------------------------------


@pytest.mark.parametrize(
    ("columns", "split", "split_found", "fields"),
    [
        (["style", "split"], "split", "split", ["style"]),
        (["split", "school", "style"], "split", "split", ["school", "style"]),
        (["style", "Split", "fold"], "split", None, ["style", "Split", "fold"]),  # exact name only
        (["style", "fold"], "fold", "fold", ["style"]),  # another split column, named by the caller
        (["split"], "split", "split", []),
        ([], "split", None, []),
    ],
)
def test_split_column_and_label_fields(columns, split, split_found, fields) -> None:
    assert labels.split_column(columns, split) == split_found
    assert labels.label_fields(columns, split) == fields


def test_choose_fields() -> None:
    cols = ["style", "school", "split"]
    assert labels.choose_fields(cols) == ["style", "school"]
    assert labels.choose_fields(cols, ["school"]) == ["school"]
    assert labels.choose_fields(cols, ["split"]) == ["split"]  # asked for explicitly: allowed
    with pytest.raises(ParameterError) as err:
        labels.choose_fields(cols, ["style", "genre"], where="store s")
    assert err.value.param == "fields" and "genre" in str(err.value) and "store s" in str(err.value)
    with pytest.raises(UsageError, match="no label columns"):
        labels.choose_fields(["split"])


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        ("train", [True, False, False, False, False, False]),
        (["train", "test"], [True, True, False, False, False, False]),
        (["nan", ""], [False, False, False, False, False, False]),  # missing values are in no split
        ("train ", [False, False, False, False, True, False]),  # compared as text, exactly
        ("1", [False, False, False, False, False, True]),
    ],
)
def test_in_split(names, expected) -> None:
    values = pd.Series(["train", "test", None, "", "train ", 1], dtype=object)
    assert labels.in_split(values, names).tolist() == expected


# ---- the labels CSV -------------------------------------------------------------------


def test_read_labels_resolves_paths(tmp_path: Path) -> None:
    root, other = tmp_path / "images", tmp_path / "meta"
    (root / "a").mkdir(parents=True)
    other.mkdir()
    (root / "a" / "x.jpg").write_bytes(b"x")
    (other / "y.jpg").write_bytes(b"y")
    csv = other / "labels.csv"
    csv.write_text(f"path,style,note\na/x.jpg,baroque,\ny.jpg,,NA\n{tmp_path / 'abs.jpg'},cubism,x\nnew.jpg,a,b\n")
    df = labels.read_labels(csv, [root])
    assert df["path"].tolist() == [
        str(root / "a" / "x.jpg"),  # relative to the image root
        str(other / "y.jpg"),  # not under the root: relative to the CSV's folder
        str(tmp_path / "abs.jpg"),  # absolute
        str(root / "new.jpg"),  # nowhere yet: under the first root
    ]
    assert df["style"].tolist() == ["baroque", "", "cubism", "a"]  # text, empty cells ""
    assert df["note"].tolist() == ["", "NA", "x", "b"]  # no NA guessing
    assert labels.is_missing(df["style"]).tolist() == [False, True, False, False]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "not found"),
        ("file,style\nx.jpg,a\n", "no 'path' column"),
        ("", "not readable CSV"),
        ('path,style\n"x.jpg,a\n', "not readable CSV"),
    ],
)
def test_read_labels_errors_name_the_file_and_the_problem(tmp_path: Path, content, problem) -> None:
    csv = tmp_path / "l.csv"
    if content is not None:
        csv.write_text(content)
    with pytest.raises(ParameterError) as err:
        labels.read_labels(csv, [tmp_path])
    assert err.value.param == "labels"
    assert str(csv) in str(err.value) and problem in str(err.value)


def test_encode_labels() -> None:
    df = pd.DataFrame({"style": ["b", " a", None, "a ", "  ", "c"], "school": ["x", "x", "x", "y", "", float("nan")]})
    codes, classes = labels.encode_labels(df, ["style", "school"])
    assert classes == {"style": ["a", "b", "c"], "school": ["x", "y"]}
    assert codes.dtype == np.int64 and codes.shape == (6, 2)
    assert codes[:, 0].tolist() == [1, 0, -1, 0, -1, 2]
    assert codes[:, 1].tolist() == [0, 0, 0, 1, -1, -1]


# ---- every caller follows the same rules ----------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store.create(tmp_path / "s", ModelSignature("toy", "fp", {"size": 1}, 2))
    paths = [f"/x/{i}.jpg" for i in range(4)]
    rows = pd.DataFrame({"path": paths, "relpath": [p[3:] for p in paths], "sha256": paths, "size": 1,
                         "mtime_ns": 1, "width": 1, "height": 1, "error": None, "row": np.arange(4)})
    s.append_segment(rows, np.tile(np.float32([[1, 0]]), (4, 1)))
    s.set_labels(pd.DataFrame({"path": paths[:3], "style": ["a", " ", "b"], "split": ["train", "test", "train"],
                               "fold": ["1", "2", "1"]}))
    return s.reload()


def test_callers_agree_on_fields_and_missing_values(store: Store) -> None:
    from artenc.evaluate import _has_label
    from artenc.predict import field_vote, label_fields
    from artenc.report.sections import label_fields as report_fields
    from artenc.report.sections import split_column
    from artenc.serve.state import predicted_fields

    expected = ["style", "fold"]
    assert label_fields(store, None) == report_fields(store) == predicted_fields(store) == expected
    assert split_column(store) == "split"
    style = store.items["style"]  # "a", blank, "b", and NaN for the unlabelled row
    assert _has_label(style).tolist() == (~labels.is_missing(style)).tolist() == [True, False, True, False]
    vote = field_vote(style.tolist(), [0.9, 0.8, 0.7, 0.6])
    assert vote["votes"] == {"a": 1, "b": 1} and vote["label"] == "a"
