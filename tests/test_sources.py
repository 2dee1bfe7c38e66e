import csv
import io
import json
import os
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from factory import sources
from factory.errors import FactoryError
from factory.sources import Row, iter_rows, raw_files, unit

ROOT = Path(__file__).resolve().parents[1]
TRICKY = 'a \\" ] , { } [ \\\\'  # JSON text of a string holding brackets, a quote and commas


def rows(path, **kwargs):
    return list(iter_rows(path, **kwargs))


def write(path: Path, data: bytes | str) -> Path:
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def chat(q, a):
    return {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}


@pytest.fixture(params=[1, 2, 7, None], ids=["chunk1", "chunk2", "chunk7", "chunk-default"])
def chunk(request, monkeypatch):
    """Run a .json test with windows so small that elements, strings and escapes are cut."""
    if request.param:
        monkeypatch.setattr(sources, "CHUNK_SIZE", request.param)


def scan_only(monkeypatch):
    """Measure every element with the Python scanner, never the C parser."""
    monkeypatch.setattr(sources._Scanner, "element_end",
                        lambda self, start: self.value_end(start, in_array=True))


# --- the module ---------------------------------------------------------------------------------

def test_import_needs_only_the_standard_library():
    probe = ("import sys, factory.sources; "
             "print([m for m in ('pyarrow', 'torch', 'transformers', 'pydantic') "
             "if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout
    assert out.strip() == "[]"


def test_unit_and_unknown_suffix(tmp_path):
    assert [unit(Path(f"x{s}")) for s in sources.SUFFIXES] == ["line", "index", "index", "line"]
    assert unit(Path("X.JSONL")) == "line"
    with pytest.raises(ValueError, match="not a data file"):
        iter_rows(tmp_path / "notes.txt")


def test_raw_files_sorted_skipping_hidden_paths_and_the_manifest(tmp_path):
    for name in ["b.jsonl", "a.csv", "sub/c.parquet", "sub/deeper/d.json", "E.JSONL",
                 ".hidden.jsonl", ".cache/x.jsonl", "sub/.git/y.json", "dataset_info.json",
                 "sub/dataset_info.json", "notes.txt", "data.jsonl.bak"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    (tmp_path / "dir.jsonl").mkdir()
    found = [p.relative_to(tmp_path).as_posix() for p in raw_files(tmp_path)]
    assert found == ["E.JSONL", "a.csv", "b.jsonl", "sub/c.parquet", "sub/deeper/d.json"]


def test_a_hidden_raw_dir_itself_is_still_read(tmp_path):
    raw = tmp_path / ".data"
    raw.mkdir()
    (raw / "a.jsonl").write_text("")
    assert raw_files(raw) == [raw / "a.jsonl"]


# --- .jsonl -------------------------------------------------------------------------------------

def test_jsonl_positions_blank_lines_and_bad_bytes(tmp_path):
    path = write(tmp_path / "a.jsonl", b'\xef\xbb\xbf{"a": 1}\r\n\r\n   \n{"b": [2]}  \n'
                                       b'{"c": "\xff"}\n{not json}\n{"d": 4}')
    assert rows(path) == [
        Row(1, raw=b'{"a": 1}'),
        Row(4, raw=b'{"b": [2]}'),
        Row(5, error="invalid UTF-8 (byte 8 of the record)"),
        Row(6, raw=b"{not json}"),  # JSON errors are the validator's to report
        Row(7, raw=b'{"d": 4}'),
    ]


def test_jsonl_columns_are_left_to_the_caller(tmp_path):
    path = write(tmp_path / "a.jsonl", '{"chat": []}\n')
    assert rows(path, columns={"messages": "chat"}) == [Row(1, raw=b'{"chat": []}')]


# --- .json --------------------------------------------------------------------------------------

def test_json_elements_are_the_exact_bytes(tmp_path, chunk):
    elements = [f'{{"s": "{TRICKY}", "n": [1, {{"t": "]}}"}}, []]}}', '"x, ] y"', "-1.5e3",
                "null", '{"é": "ü €"}', "{}", "[[], {}]", f'"{TRICKY}"']
    text = "\ufeff[\n  " + " ,\n\t".join(elements) + "\r\n]\n"
    path = write(tmp_path / "a.json", text)
    assert rows(path) == [Row(i, raw=e.encode()) for i, e in enumerate(elements)]


def test_json_empty_array_and_single_object(tmp_path, chunk):
    assert rows(write(tmp_path / "e.json", " [ \n ] \n")) == []
    obj = f'{{"messages": [{{"content": "{TRICKY}"}}]}}'
    assert rows(write(tmp_path / "o.json", f"\n{obj}\n")) == [Row(0, raw=obj.encode())]


@pytest.mark.parametrize("text, expected", [
    ('[{"a": 1}, {"b": "x ] y', [Row(0, raw=b'{"a": 1}'), Row(1, error=(
        "truncated JSON: the value starting at byte 11 is not closed at the end of the file "
        "(byte 23); an unclosed string or bracket"))]),
    ('[{"a": [1, 2}', [Row(0, error="unexpected '}' at byte 12")]),
    ('[{"a": 1}, ', [Row(0, raw=b'{"a": 1}'), Row(1, error=(
        "truncated JSON: the array is not closed at the end of the file (byte 11)"))]),
    ("[", [Row(0, error="truncated JSON: the array is not closed at the end of the file (byte 1)")]),
    ('[{"a": "\\', [Row(0, error=(
        "truncated JSON: the value starting at byte 1 is not closed at the end of the file "
        "(byte 9); an unclosed string or bracket"))]),
    ("[1, 2,]", [Row(0, raw=b"1"), Row(1, raw=b"2"), Row(2, error="trailing comma before ']' at "
                                                                 "byte 6")]),
    ("[1,, 2]", [Row(0, raw=b"1"), Row(1, error="missing value before ',' at byte 3"),
                 Row(2, raw=b"2")]),
    ("[1] [2]", [Row(0, raw=b"1"), Row(1, error="unexpected data after the top-level array at "
                                                "byte 4")]),
    ('[{"a": tru}, {"b": 1} x]', [Row(0, raw=b'{"a": tru}'), Row(1, raw=b'{"b": 1} x')]),
    ('[{"a": 1}}]', [Row(0, error="unexpected '}' at byte 9")]),
    ('{"a": 1}\n{"a": 2}\n', [Row(0, raw=b'{"a": 1}'), Row(1, error=(
        "unexpected data after the top-level object at byte 9; one record per line is JSON "
        "Lines: name the file .jsonl"))]),
    ('{"a": [1}', [Row(0, error="unexpected '}' at byte 8")]),
    ('{"a": 1', [Row(0, error="truncated JSON: the value starting at byte 0 is not closed at the "
                              "end of the file (byte 7); an unclosed string or bracket")]),
    ('"just a string"', [Row(0, error="expected a JSON array of records")]),
    ("42", [Row(0, error="expected a JSON array of records")]),
    (" \n", [Row(0, error="expected a JSON array of records (the file is empty)")]),
])
def test_json_structural_errors(tmp_path, chunk, text, expected):
    assert rows(write(tmp_path / "bad.json", text)) == expected


def test_json_byte_offsets_count_multibyte_characters(tmp_path, chunk):
    path = write(tmp_path / "u.json", '\ufeff["€€", 1,]')  # BOM 3 bytes, each € 3 bytes
    assert rows(path)[-1] == Row(2, error="trailing comma before ']' at byte 16")


def test_json_bad_utf8_is_one_row_not_the_file(tmp_path, chunk):
    path = write(tmp_path / "b.json", b'[{"a": "\xe2\x82"}, {"b": "\xe2\x82\xac"}]')
    assert rows(path) == [Row(0, error="invalid UTF-8 (byte 8 of the record)"),
                          Row(1, raw='{"b": "€"}'.encode())]


def test_json_columns_are_left_to_the_caller(tmp_path):
    path = write(tmp_path / "a.json", '[{"chat": []}]')
    assert rows(path, columns={"messages": "chat"}) == [Row(0, raw=b'{"chat": []}')]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) |
    st.text(alphabet=st.sampled_from('ab"\\[]{},: \n\té€\x00')),
    lambda inner: st.lists(inner, max_size=4) |
    st.dictionaries(st.text(alphabet="k[\"}\\", max_size=3), inner, max_size=4),
    max_leaves=12)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(json_values, max_size=6), chunk_size=st.integers(1, 16),
       spaces=st.sampled_from(["", " ", "\n  ", "\r\n\t"]), ascii_only=st.booleans())
def test_json_array_round_trips(tmp_path, monkeypatch, values, chunk_size, spaces, ascii_only):
    monkeypatch.setattr(sources, "CHUNK_SIZE", chunk_size)
    pieces = [json.dumps(v, ensure_ascii=ascii_only) for v in values]
    path = write(tmp_path / "p.json", f"[{spaces}" + f"{spaces},{spaces}".join(pieces) + "]")
    got = rows(path)
    assert [r.raw for r in got] == [p.encode() for p in pieces]
    assert [json.loads(r.raw) for r in got] == values


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(json_values, min_size=1, max_size=5), chunk_size=st.integers(1, 16),
       cut=st.integers(0, 10_000), junk=st.sampled_from(list('"\\[]{},x') + ["", "\xff"]))
def test_json_fast_path_agrees_with_the_scanner(tmp_path, monkeypatch, values, chunk_size, cut,
                                                junk):
    """Valid or broken, the C parser's shortcut never changes what the scanner would say."""
    monkeypatch.setattr(sources, "CHUNK_SIZE", chunk_size)
    data = json.dumps(values, ensure_ascii=False).encode()
    cut %= len(data) + 1
    path = write(tmp_path / "f.json", data[:cut] + junk.encode("latin-1") + data[cut:])
    fast = rows(path)
    with monkeypatch.context() as patched:
        scan_only(patched)
        assert rows(path) == fast


# --- .csv ---------------------------------------------------------------------------------------

CSV = (
    "\ufeffmessages,id, note\r\n"                                           # line 1
    '"[{""role"": ""user"", ""content"": ""hi, [you]""}]",7,\r\n'           # line 2
    "\r\n"                                                                  # line 3 (blank)
    '"[{""role"": ""user"", ""content"": ""two\r\nlines""}]",8,"a\nb"\r\n'  # lines 4-6
    '"{not json",9,true\r\n'                                                # line 7
    "x,10,y,z\r\n"                                                          # line 8
    ",11,,,\r\n"                                                            # line 9
    "[1,2],12\r\n"                                                          # line 10
)


def test_csv_rows(tmp_path):
    got = rows(write(tmp_path / "a.csv", CSV))
    assert got == [
        Row(2, obj={"messages": [{"role": "user", "content": "hi, [you]"}], "id": "7"}),
        Row(4, obj={"messages": [{"role": "user", "content": "two\r\nlines"}], "id": "8",
                    "note": "a\nb"}),
        Row(7, obj={"messages": "{not json", "id": "9", "note": "true"}),
        Row(8, error="4 cells but the header has 3 columns"),
        Row(9, obj={"id": "11"}),  # a ragged right edge of empty cells is not an extra value
        Row(10, obj={"messages": "[1", "id": "2]", "note": "12"}),
    ]


def test_csv_bad_bytes_are_one_row(tmp_path):
    path = write(tmp_path / "b.csv", b"text,id\nok,1\nbad \xff,2\nok,3\n")
    assert rows(path) == [Row(2, obj={"text": "ok", "id": "1"}), Row(3, error="invalid UTF-8"),
                          Row(4, obj={"text": "ok", "id": "3"})]


def test_csv_long_json_cells_pass_the_default_field_limit(tmp_path):
    messages = [{"role": "user", "content": "x" * 300_000}]
    cells = io.StringIO()
    csv.writer(cells).writerows([["messages"], [json.dumps(messages)]])
    path = write(tmp_path / "long.csv", cells.getvalue())
    assert rows(path) == [Row(2, obj={"messages": messages})]


def test_csv_columns_rename_and_the_mapped_column_wins(tmp_path):
    path = write(tmp_path / "c.csv", 'chat,messages,extra\n"[]",old,e\n')
    assert rows(path, columns={"messages": "chat"}) == [Row(2, obj={"messages": [], "extra": "e"})]


# --- .parquet -----------------------------------------------------------------------------------

def write_parquet(path: Path, records: list[dict]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(records), path)
    return path


def test_parquet_rows(tmp_path, monkeypatch):
    pytest.importorskip("pyarrow")
    monkeypatch.setattr(sources, "PARQUET_BATCH", 2)
    records = [{"messages": [{"role": "user", "content": f"q{i}"},
                             {"role": "assistant", "content": f"a{i}", "name": "bot"}],
                "id": i, "unused": None, "tags": ["t"] if i % 2 else None} for i in range(5)]
    got = rows(write_parquet(tmp_path / "a.parquet", records))
    assert [r.pos for r in got] == [0, 1, 2, 3, 4]
    assert got[0] == Row(0, obj={"messages": [{"role": "user", "content": "q0"},
                                              {"role": "assistant", "content": "a0",
                                               "name": "bot"}], "id": 0})
    assert got[1].obj["tags"] == ["t"] and "tags" not in got[2].obj
    assert all(r.raw is None and r.error is None and "unused" not in r.obj for r in got)


def test_parquet_columns_rename(tmp_path):
    pytest.importorskip("pyarrow")
    path = write_parquet(tmp_path / "c.parquet", [{"chat": [{"role": "user", "content": "hi"}]}])
    assert rows(path, columns={"messages": "chat"}) == [
        Row(0, obj={"messages": [{"role": "user", "content": "hi"}]})]


def test_parquet_unreadable_file_is_an_error_row(tmp_path):
    pytest.importorskip("pyarrow")
    (got,) = rows(write(tmp_path / "x.parquet", b"not parquet at all"))
    assert got.pos == 0 and got.error.startswith("unreadable Parquet")


def test_parquet_without_pyarrow_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)  # makes the import fail
    with pytest.raises(FactoryError) as info:
        iter_rows(write(tmp_path / "x.parquet", b""))
    assert info.value.code == "E_DEPENDENCY"
    assert "pyarrow" in info.value.message and "pip install pyarrow" in info.value.hint


# --- every format -------------------------------------------------------------------------------

def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
@pytest.mark.parametrize("name, data", [
    ("a.jsonl", '{"a": 1}\n{"a": 2}\n'), ("a.json", '[{"a": 1}, {"a": 2}]'),
    ("a.csv", "a\n1\n2\n"), ("a.parquet", None)])
def test_stopping_early_closes_the_file(tmp_path, name, data):
    if data is None:
        pytest.importorskip("pyarrow")
        path = write_parquet(tmp_path / name, [{"a": 1}, {"a": 2}])
    else:
        path = write(tmp_path / name, data)
    list(iter_rows(path))  # a first read may start lasting helpers (pyarrow's thread pool)
    before = open_fds()
    stream = iter_rows(path)
    next(stream)
    assert open_fds() > before
    stream.close()
    assert open_fds() == before


RECORD = json.dumps({**chat("What is " + "very " * 200 + "long? \"[quoted]\"\n",
                            "It is {" + "long, " * 300 + "}."), "id": 1}).encode()
TARGET_BYTES = 50_000_000


def test_streaming_keeps_memory_flat(tmp_path):
    count = TARGET_BYTES // (len(RECORD) + 2)
    jsonl, array = tmp_path / "big.jsonl", tmp_path / "big.json"
    jsonl.write_bytes((RECORD + b"\n") * count)
    with open(array, "wb") as fh:
        fh.write(b"[\n")
        fh.write(b",\n".join([RECORD] * count))
        fh.write(b"\n]\n")
    for path in (jsonl, array):
        tracemalloc.start()
        try:
            start = time.perf_counter()
            seen = sum(1 for row in iter_rows(path) if row.raw == RECORD)
            elapsed = time.perf_counter() - start
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert seen == count, path.name
        assert peak < 5_000_000, (path.name, peak)
        print(f"{path.name}: {path.stat().st_size / 1e6:.0f} MB, {count} rows in {elapsed:.2f}s "
              f"under tracemalloc, peak {peak / 1e6:.2f} MB")
