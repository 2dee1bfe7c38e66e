import os

from factory.hashing import HashCache, hash_json, hash_path


def test_json_hash_ignores_key_order_and_whitespace():
    assert hash_json({"a": 1, "b": [1, 2]}) == hash_json({"b": [1, 2], "a": 1})
    assert hash_json({"a": 1}) != hash_json({"a": 2})


def test_directory_hash_follows_content_not_time(tmp_path):
    (tmp_path / "d").mkdir()
    f = tmp_path / "d" / "x.jsonl"
    f.write_text("one\n")
    first = hash_path(tmp_path / "d")
    os.utime(f, (1, 1))
    assert hash_path(tmp_path / "d") == first
    (tmp_path / "d" / ".DS_Store").write_text("litter")
    assert hash_path(tmp_path / "d") == first
    f.write_text("two\n")
    assert hash_path(tmp_path / "d") != first
    (tmp_path / "d" / "y.json").write_text("[]")
    assert hash_path(tmp_path / "d") not in (first,)


def test_missing_path_hashes_to_none(tmp_path):
    assert hash_path(tmp_path / "nope") is None


def test_cache_skips_unchanged_files_but_sees_changes(tmp_path):
    f = tmp_path / "big.bin"
    f.write_bytes(b"a" * 1000)
    cache = HashCache(tmp_path / "cache.json")
    first = cache.file(f)
    cache.save()
    reloaded = HashCache(tmp_path / "cache.json")
    assert reloaded.file(f) == first and not reloaded._dirty
    f.write_bytes(b"b" * 1000)
    assert reloaded.file(f) != first
