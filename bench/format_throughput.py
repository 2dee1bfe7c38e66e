"""Validation + normalisation throughput of the format gate's reader, and its memory as files grow.

    python bench/format_throughput.py [--records 200000]

Generates two files of the same size: plain chat records (OpenAI messages) and trajectory records
(system/user/assistant with a FunctionGemma call, reward, tiers and structural metadata), and reads
each with factory.records.read: bytes → pydantic validation → normalised example with content id and
prompt key, on one core. Prints records/s, the best of three reads (shared CI machines vary by
tens of percent from run to run), against the target of 50,000, and the ratio against the
alternative this reader replaced (json.loads + a jsonschema validator on the same schema file).
Then reads trajectory files of 1/4, 1/2 and all of the records under tracemalloc: the peak must
stay flat as the file grows, since records stream one at a time.
"""
from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
import tracemalloc
from pathlib import Path

from factory import formats
from factory.records import ReadOptions, Tally, plan, read

CITIES = ["Paris", "Oslo", "Lima", "Tokyo", "Cairo", "Quito", "Perth", "Accra"]
TARGET = 50_000


def chat(rng: random.Random, n: int) -> dict:
    city = rng.choice(CITIES)
    return {"messages": [{"role": "system", "content": "You are a helpful assistant."},
                         {"role": "user", "content": f"What should I pack for {city}, day {n}?"},
                         {"role": "assistant", "content": f"For {city} on day {n}: a coat."}]}


def trajectory(rng: random.Random, n: int) -> dict:
    city = rng.choice(CITIES)
    call = (f"<start_function_call>call:get_weather{{city:<escape>{city}<escape>,"
            f"day:<escape>day {n}<escape>}}<end_function_call>")
    return {"messages": [{"role": "system", "content": "Answer with one function call."},
                         {"role": "user", "content": f"Weather in {city} for day {n}?"},
                         {"role": "assistant", "content": call}],
            "reward": round(rng.random(), 3),
            "tiers": {"static": {"passed": True, "tier": 1}},
            "structural": {"block": "card", "levers": ["button"]}}


def write_file(path: Path, count: int, make=trajectory) -> None:
    rng = random.Random(0)
    with open(path, "w", encoding="utf-8") as fh:
        for n in range(count):
            fh.write(json.dumps(make(rng, n)) + "\n")


def read_all(raw: Path, root: Path) -> int:
    tally, options = Tally(), ReadOptions()
    specs = plan(raw, root, options, lambda p: p.resolve(), tally)
    count = sum(1 for _ in read(specs, root, options, tally))
    assert tally.bad == 0, tally.problems[:3]
    return count


def jsonschema_baseline(path: Path, limit: int) -> float:
    """Records/s of the approach this reader replaced, on the first `limit` records."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(formats.json_schema("trajectory"))
    started, n = time.perf_counter(), 0
    with open(path, "rb") as fh:
        for line in fh:
            obj = json.loads(line)
            assert not list(validator.iter_errors(obj))
            n += 1
            if n == limit:
                break
    return n / (time.perf_counter() - started)


def best_rate(raw: Path, root: Path, count: int, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        assert read_all(raw, root) == count
        best = min(best, time.perf_counter() - started)
    return count / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    count = parser.parse_args().records
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name, make in (("chat", chat), ("trajectory", trajectory)):
            raw = root / name
            raw.mkdir()
            write_file(raw / f"{name}.jsonl", count, make)
            size_mb = (raw / f"{name}.jsonl").stat().st_size / 1e6
            rate = best_rate(raw, root, count)
            verdict = "met" if rate >= TARGET else "MISSED"
            print(f"{name}: {count:,} records ({size_mb:.0f} MB), validate + normalise "
                  f"{rate:,.0f} records/s (target {TARGET:,}: {verdict})")
        baseline = jsonschema_baseline(raw / "trajectory.jsonl", min(count, 20_000))
        print(f"trajectory via json.loads + jsonschema: {baseline:,.0f} records/s; "
              f"ratio {rate / baseline:.1f}x")

        peaks = []
        for share in (4, 2, 1):
            part = root / f"part{share}"
            part.mkdir()
            write_file(part / "t.jsonl", count // share)
            tracemalloc.start()
            read_all(part, root)
            peaks.append((count // share, tracemalloc.get_traced_memory()[1] / 1e6))
            tracemalloc.stop()
        print("peak traced memory while reading: " +
              ", ".join(f"{n:,} records {mb:.2f} MB" for n, mb in peaks) +
              f"; largest/smallest {peaks[-1][1] / peaks[0][1]:.2f}x for 4x the records")


if __name__ == "__main__":
    main()
