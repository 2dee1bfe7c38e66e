"""Streaming readers: one raw data file in, a stream of rows out, in constant memory.

A raw folder can hold files of many gigabytes, so no reader here loads a file whole: memory grows
only with the largest single record. A JSON record is handed on as its exact bytes, not decoded:
the caller validates them with pydantic's compiled `validate_json`, and decoding them into Python
objects first would cost more than the validation itself. CSV and Parquet have no JSON bytes to
hand on, so their rows come as dicts.

Standard library only at import time; pyarrow is optional and imported when a .parquet file is read.
"""
from __future__ import annotations

import codecs
import csv
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from factory.dataset_info import MANIFEST
from factory.errors import FactoryError

SUFFIXES = (".jsonl", ".json", ".parquet", ".csv")
# Bytes read at a time from a .json file; a module constant so tests can force tiny chunks.
CHUNK_SIZE = 1 << 18
PARQUET_BATCH = 4096

_BOM = b"\xef\xbb\xbf"
_Rename = Callable[[dict], dict] | None  # maps a row to its renamed copy
_NOT_AN_ARRAY = "expected a JSON array of records"


@dataclass(slots=True)
class Row:
    """One record of a file, or the reason it could not be read.

    pos: 1-based line where the record starts (.jsonl, .csv; the csv header is line 1), or 0-based
    index (.json arrays, .parquet). raw: the record's exact JSON bytes (.jsonl, .json). obj: the
    record as a dict (.csv, .parquet). error: why the record could not be read; raw and obj are None.
    """

    pos: int
    raw: bytes | None = None
    obj: object | None = None
    error: str | None = None


def unit(path: Path) -> str:
    """What Row.pos counts for this file: "line" or "index"."""
    return "line" if _suffix(path) in (".jsonl", ".csv") else "index"


def raw_files(raw_dir: Path) -> list[Path]:
    """The data files under raw_dir, sorted; hidden paths and the dataset manifest are not data."""
    return sorted(p for p in raw_dir.rglob("*")
                  if p.suffix.lower() in SUFFIXES and p.name != MANIFEST and p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(raw_dir).parts))


def iter_rows(path: Path, columns: dict[str, str] | None = None) -> Iterator[Row]:
    """Stream the rows of one raw file.

    columns maps our field names to the file's column names ({"messages": "chat"}) and renames the
    keys of .csv/.parquet rows. JSON rows are handed on as bytes, so for them the caller applies it.
    """
    suffix = _suffix(path)
    if suffix == ".jsonl":
        return _iter_jsonl(path)
    if suffix == ".json":
        return _iter_json(path)
    if suffix == ".csv":
        return _iter_csv(path, _renamer(columns))
    if suffix == ".parquet":
        # Imported here, before the generator starts, so a missing pyarrow fails at the call.
        return _iter_parquet(_pyarrow(), path, _renamer(columns))
    raise ValueError(f"{path.name}: not a data file (expected one of {', '.join(SUFFIXES)})")


def _suffix(path: Path) -> str:
    return path.suffix.lower()


def _utf8_error(data: bytes) -> str | None:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"invalid UTF-8 (byte {exc.start + 1} of the record)"
    return None


# --- .jsonl -------------------------------------------------------------------------------------

def _iter_jsonl(path: Path) -> Iterator[Row]:
    with open(path, "rb") as fh:
        for lineno, line in enumerate(fh, start=1):
            if lineno == 1 and line.startswith(_BOM):
                line = line[len(_BOM):]
            line = line.strip()
            if not line:
                continue
            # Most lines are ASCII, and that check costs far less than a trial decode.
            error = None if line.isascii() else _utf8_error(line)
            yield Row(lineno, error=error) if error else Row(lineno, raw=line)


# --- .json --------------------------------------------------------------------------------------
# A .json file is read as a window of text that slides over the file. For each element of the
# top-level array only its end is needed: the caller's validator parses the element's bytes itself.
# Valid elements inside the window are measured by the stdlib's C JSON parser, which is about twice
# as fast as any scan in Python; what it cannot vouch for (an element cut by the window's end, an
# invalid one) is measured by a scanner that tracks strings and bracket nesting without parsing.
# Bytes that are not UTF-8 decode to lone surrogates (surrogateescape), so they survive as far as
# the one element that holds them.

_STRING = r'"[^"\\]*(?:\\.[^"\\]*)*"'
# Runs of text that cannot end or nest a value: everything but brackets, plus whole strings (so
# their content is skipped in C). Inside a nested value commas are plain text too.
_SKIP_NESTED = re.compile(r'[^"\[\]{}]*(?:' + _STRING + r'[^"\[\]{}]*)*', re.DOTALL)
_SKIP_TOP = re.compile(r'[^"\[\]{},]*(?:' + _STRING + r'[^"\[\]{},]*)*', re.DOTALL)
# Where an unterminated string stops matching: at the window's end or at a trailing backslash.
_STRING_BODY = re.compile(r'[^"\\]*(?:\\.[^"\\]*)*', re.DOTALL)
_NON_WS = re.compile(r'[^ \t\r\n]')
_SEPARATOR = re.compile(r'[ \t\r\n]*[,\]]')
_JSON_WS = " \t\r\n"
_CLOSER = {"[": "]", "{": "}"}
_scan_value = json.JSONDecoder().scan_once


class _ScanError(Exception):
    """A structural problem that ends the scan of a file."""


class _Scanner:
    """Decoded text of a binary file, read on demand; indices into buf hold until compact()."""

    def __init__(self, fh: IO[bytes], chunk_size: int, base: int):
        self._fh = fh
        self._chunk_size = chunk_size
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="surrogateescape")
        self._eof = False
        self.buf = ""
        self.base = base  # file offset of buf[0]

    def fill(self) -> bool:
        """Append more text to buf; False at the end of the file."""
        size = len(self.buf)
        while len(self.buf) == size and not self._eof:
            # Reading as much again as buf holds keeps the appends for one huge element linear.
            data = self._fh.read(max(self._chunk_size, size))
            self._eof = not data
            self.buf += self._decoder.decode(data, final=self._eof)
        return len(self.buf) > size

    def offset(self, i: int) -> int:
        """The file offset of buf[i], for messages."""
        return self.base + _utf8_len(self.buf[:i])

    def compact(self, i: int) -> int:
        """Forget buf[:i] (already consumed); return i's new index."""
        if i < self._chunk_size:
            return i  # dropping a little at a time would copy the window once per record
        self.base = self.offset(i)
        self.buf = self.buf[i:]
        return 0

    def skip_ws(self, i: int) -> int | None:
        """Index of the first non-whitespace character at or after i; None at the end of the file."""
        while (found := _NON_WS.search(self.buf, i)) is None:
            i = self.compact(len(self.buf))
            if not self.fill():
                return None
        return found.start()

    def element_end(self, start: int) -> int:
        """Index of the ',' or ']' that ends the array element at buf[start]."""
        try:
            end = _scan_value(self.buf, start)[1]
        except (ValueError, StopIteration, RecursionError):
            return self.value_end(start, in_array=True)
        separator = _SEPARATOR.match(self.buf, end)
        return separator.end() - 1 if separator else self.value_end(start, in_array=True)

    def value_end(self, start: int, in_array: bool) -> int:
        """Where the value at buf[start] ends, found without parsing it.

        In an array: the index of the ',' or ']' that follows it. At the top level (in_array
        False, buf[start] is '{'): the index just past its closing bracket.
        """
        stack: list[str] = []
        i = start
        while True:
            skip = _SKIP_TOP if in_array and not stack else _SKIP_NESTED
            i = skip.match(self.buf, i).end()
            if i == len(self.buf):
                if not self.fill():
                    raise self._truncated(start)
                continue
            char = self.buf[i]
            if char == '"':
                i = self._string_end(i + 1, start)  # a string the window holds only part of
            elif char in _CLOSER:
                stack.append(_CLOSER[char])
                i += 1
            elif char == "," or (not stack and in_array and char == "]"):
                return i
            elif not stack or stack.pop() != char:
                raise _ScanError(f"unexpected '{char}' at byte {self.offset(i)}")
            else:
                i += 1
                if not stack and not in_array:
                    return i

    def _string_end(self, i: int, start: int) -> int:
        """Index just past the closing quote of the string whose content starts at buf[i]."""
        while True:
            i = _STRING_BODY.match(self.buf, i).end()
            if i < len(self.buf) and self.buf[i] == '"':
                return i + 1
            if not self.fill():
                raise self._truncated(start)

    def _truncated(self, start: int) -> _ScanError:
        return _ScanError(f"truncated JSON: the value starting at byte {self.offset(start)} is not "
                          f"closed at the end of the file (byte {self.offset(len(self.buf))}); an "
                          "unclosed string or bracket")


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8", "surrogateescape"))


def _iter_json(path: Path) -> Iterator[Row]:
    with open(path, "rb") as fh:
        if fh.read(len(_BOM)) != _BOM:
            fh.seek(0)
        yield from _json_rows(_Scanner(fh, CHUNK_SIZE, base=fh.tell()))


def _json_rows(scanner: _Scanner) -> Iterator[Row]:
    i = scanner.skip_ws(0)
    if i is None:
        yield Row(0, error=f"{_NOT_AN_ARRAY} (the file is empty)")
    elif scanner.buf[i] == "[":
        yield from _array_rows(scanner, i + 1)
    elif scanner.buf[i] == "{":
        yield from _object_row(scanner, i)
    else:
        yield Row(0, error=_NOT_AN_ARRAY)


def _array_rows(scanner: _Scanner, i: int) -> Iterator[Row]:
    index = 0
    try:
        start = end = _next_element(scanner, i)
        if scanner.buf[start] != "]":  # else an empty array
            while True:
                end = scanner.element_end(start)
                yield _element_row(index, scanner, start, end)
                index += 1
                if scanner.buf[end] == "]":
                    break
                start = _next_element(scanner, scanner.compact(end + 1))
        error = _trailing_data(scanner, end + 1, "array")
    except _ScanError as exc:
        error = str(exc)
    if error:
        yield Row(index, error=error)


def _next_element(scanner: _Scanner, i: int) -> int:
    start = scanner.skip_ws(i)
    if start is None:
        raise _ScanError("truncated JSON: the array is not closed at the end of the file (byte "
                         f"{scanner.offset(len(scanner.buf))})")
    return start


def _element_row(index: int, scanner: _Scanner, start: int, end: int) -> Row:
    text = scanner.buf[start:end].rstrip(_JSON_WS)
    if not text:
        what = "trailing comma before ']'" if scanner.buf[end] == "]" else \
            "missing value before ','"
        return Row(index, error=f"{what} at byte {scanner.offset(end)}")
    try:
        return Row(index, raw=text.encode("utf-8"))
    except UnicodeEncodeError as exc:  # a lone surrogate: bytes that were not UTF-8
        return Row(index, error=f"invalid UTF-8 (byte {_utf8_len(text[:exc.start]) + 1} of the "
                                "record)")


def _object_row(scanner: _Scanner, start: int) -> Iterator[Row]:
    """A file that holds a single record rather than an array of them."""
    try:
        end = scanner.value_end(start, in_array=False)
    except _ScanError as exc:
        yield Row(0, error=str(exc))
        return
    yield _element_row(0, scanner, start, end)
    if (error := _trailing_data(scanner, end, "object")) is not None:
        yield Row(1, error=error)


def _trailing_data(scanner: _Scanner, i: int, what: str) -> str | None:
    """Only whitespace may follow the top-level value."""
    i = scanner.skip_ws(i)
    if i is None:
        return None
    error = f"unexpected data after the top-level {what} at byte {scanner.offset(i)}"
    if what == "object" and scanner.buf[i] == "{":
        error += "; one record per line is JSON Lines: name the file .jsonl"
    return error


# --- .csv ---------------------------------------------------------------------------------------

_JSON_CELL = re.compile(r"\s*[\[{]")
# Bytes that are not UTF-8 come back from the decoder as these lone surrogates (surrogateescape),
# so a bad row is reported by itself instead of the decoder aborting the whole file.
_UNDECODABLE = re.compile("[\udc80-\udcff]")
# A JSON `messages` cell easily passes csv's 128 KiB default field limit.
_CSV_FIELD_LIMIT = 1 << 30


def _iter_csv(path: Path, rename: _Rename) -> Iterator[Row]:
    if csv.field_size_limit() < _CSV_FIELD_LIMIT:
        csv.field_size_limit(_CSV_FIELD_LIMIT)
    with open(path, newline="", encoding="utf-8-sig", errors="surrogateescape") as fh:
        reader = csv.reader(fh)
        try:
            yield from _csv_rows(reader, rename)
        except csv.Error as exc:
            # The reader cannot resynchronise after a malformed record; stop at it.
            yield Row(reader.line_num, error=f"unreadable CSV ({exc})")


def _csv_rows(reader: Any, rename: _Rename) -> Iterator[Row]:
    header: list[str] | None = None
    line_before = 0
    for cells in reader:
        # line_num counts physical lines, so a quoted cell with newlines spans several.
        pos, line_before = line_before + 1, reader.line_num
        if not any(cell.strip() for cell in cells):
            continue
        if any(_UNDECODABLE.search(cell) for cell in cells):
            yield Row(pos, error="invalid UTF-8")
            if header is None:
                return  # without a header no later row can be read
            continue
        if header is None:
            header = [name.strip() for name in cells]
            continue
        yield _csv_row(pos, header, cells, rename)


def _csv_row(pos: int, header: list[str], cells: list[str], rename: _Rename) -> Row:
    # Trailing empty cells come from spreadsheet exports with a ragged right edge; only real extra
    # values mean the row and the header disagree.
    if len(cells) > len(header) and any(cells[len(header):]):
        return Row(pos, error=f"{len(cells)} cells but the header has {len(header)} columns")
    obj = {name: _csv_cell(cell) for name, cell in zip(header, cells) if cell != ""}
    return Row(pos, obj=rename(obj) if rename else obj)


def _csv_cell(text: str) -> object:
    """A cell holding JSON (a `messages` column) becomes that value; anything else stays text.

    Numbers and booleans stay strings too: the validator coerces them where a field wants them,
    and text that only looks like a number (an id "007") keeps its exact form.
    """
    if _JSON_CELL.match(text):
        try:
            # strict=False: a line break typed inside a cell's JSON string is meant as one.
            return json.loads(text, strict=False)
        except (ValueError, RecursionError):
            pass  # the validator names the field whose value has the wrong type
    return text


# --- .parquet -----------------------------------------------------------------------------------

def _pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError as exc:
        raise FactoryError("E_DEPENDENCY", f"reading .parquet files needs pyarrow ({exc})",
                           hint="Install it (`pip install pyarrow`), or convert the file to "
                                ".jsonl.") from exc
    return pyarrow


def _iter_parquet(pa: Any, path: Path, rename: _Rename) -> Iterator[Row]:
    index = 0
    try:
        with pa.parquet.ParquetFile(path) as pf:
            for batch in pf.iter_batches(batch_size=PARQUET_BATCH):
                for record in batch.to_pylist():
                    obj = _drop_nulls(record)
                    yield Row(index, obj=rename(obj) if rename else obj)
                    index += 1
    except (pa.ArrowException, OSError) as exc:
        yield Row(index, error=f"unreadable Parquet ({exc})")


def _drop_nulls(value: Any) -> Any:
    """Parquet cannot leave a field out, only set it null; a null field means an absent one.

    Nested too: a struct column holds every field any message had, null where a message had none.
    """
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


# --- column names -------------------------------------------------------------------------------

def _renamer(columns: dict[str, str] | None) -> _Rename:
    """Rename file columns to our field names; a mapped column wins over a same-named one."""
    if not columns:
        return None
    field_of = {column: field for field, column in columns.items()}

    def rename(obj: dict) -> dict:
        out = {k: v for k, v in obj.items() if k not in field_of and k not in columns}
        out.update((field_of[k], v) for k, v in obj.items() if k in field_of)
        return out

    return rename
