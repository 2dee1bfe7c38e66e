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

Last, the whole format gate as a user runs it (`factory run format` on a demo project whose raw
data is the trajectory file; its own script process): dedup, prompt-hash splits, SFT rows, every
row rendered through the chat template and tokenized, the split files and the report. Its
records/s and the script's peak RSS, for 1/4 and all of the records. The tokenizer bounds that
figure, not the reader above.
"""
from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
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


FACTORY = str(Path(sys.executable).with_name("factory"))


def gate(root: Path, count: int) -> tuple[float, float]:
    """(records/s of `factory run format`, the script's peak RSS in MB) on `count` records."""
    project = root / f"gate{count}"
    quiet = {"check": True, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    subprocess.run([FACTORY, "demo", str(project), "-q", "--json"], **quiet)
    for old in (project / "data" / "raw").glob("*.jsonl"):
        old.unlink()
    write_file(project / "data" / "raw" / "t.jsonl", count)
    path = project / "training-config.json"
    cfg = json.loads(path.read_text())
    # A small frozen eval split keeps the baseline (which generates answers) short.
    cfg["data"]["split"]["eval"] = max(0.0001, 200 / count)
    path.write_text(json.dumps(cfg))
    subprocess.run([FACTORY, "-C", str(project), "run", "baseline", "-q", "--json"], **quiet)
    # A fresh process runs the gate and reports the peak RSS of its descendants alone (the
    # factory CLI and the format script), which this process's own children figure would mix
    # with the baseline's.
    started = time.perf_counter()
    measured = subprocess.run(
        [sys.executable, "-c", MEASURE, FACTORY, "-C", str(project), "run", "format", "-q",
         "--json"], check=True, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    return count / seconds, int(measured.stdout.strip().splitlines()[-1]) / 1024


MEASURE = """\
import resource, subprocess, sys
subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def main_gate(count: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        runs = [(n, *gate(Path(tmp), n)) for n in (count // 4, count)]
    print("format gate end to end (factory run format, tokenizing every row): " +
          ", ".join(f"{n:,} records {rate:,.0f} records/s, peak RSS {mb:.0f} MB"
                    for n, rate, mb in runs) +
          f"; RSS largest/smallest {runs[-1][2] / runs[0][2]:.2f}x for 4x the records")


if __name__ == "__main__":
    main()
    main_gate(int(sys.argv[sys.argv.index("--records") + 1]) if "--records" in sys.argv
              else 200_000)
