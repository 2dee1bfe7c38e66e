"""Synthetic tool-calling chats for the demo and the tests.

The task is small enough for a tiny random-init model to learn in seconds, yet it can only be
solved by reading the request: the tool follows from the wording and every argument is copied
from it. `sabotaged` keeps the prompts and shuffles the answers, so a pipeline that still
"improves" on it is measuring something other than learning.

Stdlib only: the CLI imports this without the training extras installed.
"""
from __future__ import annotations

import random

SYSTEM_PROMPT = (
    "You are a tool-calling assistant. Tools: get_weather, set_alarm, "
    "send_message, book_flight. Reply with exactly one function call."
)

CITIES = [
    "Paris", "London", "Tokyo", "Berlin", "Madrid", "Rome", "Oslo", "Lima",
    "Cairo", "Dublin", "Vienna", "Prague", "Lisbon", "Athens", "Seoul",
    "Sydney", "Boston", "Denver", "Chicago", "Toronto",
]
UNITS = ["celsius", "fahrenheit"]
TIMES = [
    "6:00", "6:30", "7:00", "7:15", "7:45", "8:00",
    "9:30", "10:00", "12:00", "14:15", "18:30", "22:00",
]
LABELS = [
    "gym", "work", "meeting", "school", "medicine", "dinner",
    "yoga", "flight", "laundry", "call mom",
]
CONTACTS = [
    "Alice", "Bob", "Carol", "Dave", "Emma", "Frank",
    "Grace", "Henry", "Irene", "Jack", "Kate", "Liam",
]
TEXTS = [
    "running late", "see you soon", "call me back", "on my way",
    "happy birthday", "thanks a lot", "good night", "lunch at noon",
    "meeting moved", "all done",
]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]

# Each tool: (name, {argument: word list}, user phrasings). Every argument value appears
# verbatim in the request, so the answer is always recoverable from the prompt alone.
TOOLS = [
    (
        "get_weather",
        {"city": CITIES, "unit": UNITS},
        [
            "What is the weather in {city} in {unit}?",
            "Tell me the forecast for {city}, in {unit} please.",
            "How warm is it in {city}? Use {unit}.",
            "Weather for {city} in {unit}.",
        ],
    ),
    (
        "set_alarm",
        {"time": TIMES, "label": LABELS},
        [
            "Set an alarm for {time} called {label}.",
            "Wake me at {time} for {label}.",
            "Alarm at {time}, label it {label}.",
            "Please add a {time} alarm named {label}.",
        ],
    ),
    (
        "send_message",
        {"contact": CONTACTS, "text": TEXTS},
        [
            "Text {contact}: {text}",
            "Send {contact} a message saying {text}.",
            "Tell {contact} {text}.",
            "Message {contact} with {text}.",
        ],
    ),
    (
        "book_flight",
        {"origin": CITIES, "destination": CITIES, "day": DAYS},
        [
            "Book a flight from {origin} to {destination} on {day}.",
            "I need to fly {origin} to {destination} this {day}.",
            "Find me a {day} flight from {origin} to {destination}.",
            "Fly me from {origin} to {destination} on {day}.",
        ],
    ),
]


def function_call(name: str, args: dict[str, str]) -> str:
    """One call in FunctionGemma syntax, arguments in the order given."""
    body = ",".join(f"{key}:<escape>{value}<escape>" for key, value in args.items())
    return f"<start_function_call>call:{name}{{{body}}}<end_function_call>"


def _record(user: str, answer: str) -> dict:
    return {
        "messages": [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": user},
            {"role": "assistant", "content": answer},
        ]
    }


def _sample(rng: random.Random) -> tuple[str, str]:
    name, slots, phrasings = rng.choice(TOOLS)
    args: dict[str, str] = {}
    for key, words in slots.items():
        # A flight from a city to itself is not a request anyone makes.
        choices = [w for w in words if w not in args.values()]
        args[key] = rng.choice(choices)
    user = rng.choice(phrasings).format(**args)
    return user, function_call(name, args)


def demo_records(n: int = 600, seed: int = 7) -> list[dict]:
    """`n` distinct chats, the same ones for the same seed on every platform."""
    rng = random.Random(seed)
    seen: set[str] = set()
    records: list[dict] = []
    # The slot space holds tens of thousands of requests; the cap only guards a huge `n`.
    for _ in range(n * 50):
        if len(records) == n:
            return records
        user, answer = _sample(rng)
        if user in seen:
            continue
        seen.add(user)
        records.append(_record(user, answer))
    if len(records) == n:
        return records
    raise ValueError(f"could not draw {n} distinct demo records")


def sabotaged(records: list[dict], seed: int = 11) -> list[dict]:
    """Same prompts, answers moved to other records: nothing left to learn."""
    if len(records) < 2:
        raise ValueError("need at least two records to move answers between")
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    # Rotating the shuffled order is a derangement: no record keeps its own answer.
    donor = {order[i]: order[(i + 1) % len(order)] for i in range(len(order))}
    out = []
    for i, record in enumerate(records):
        messages = [dict(m) for m in record["messages"]]
        messages[-1]["content"] = records[donor[i]]["messages"][-1]["content"]
        out.append({"messages": messages})
    return out


def corpus(records: list[dict]) -> list[str]:
    """Texts to train the tokenizer on: every turn as the chat template lays it out."""
    return [f"{m['role']}\n{m['content']}\n" for r in records for m in r["messages"]]
