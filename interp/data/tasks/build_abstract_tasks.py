"""Builds the abstract pattern tasks (repetition, recursion, centre embedding, word categories), written here.

After Crosbie & Shutova (NAACL Findings 2025): each item is a short sequence whose *pattern*
decides an arbitrary label (``foo``/``bar``, or ``foo``/``bar``/``zip``/``vex`` for the 4-way
task), so the label can only be learnt from the demonstrations and zero-shot accuracy sits at
chance.  Classes are balanced (equal counts) and shuffled; inputs are unique within a task.

- ``repetition``: ``X Y X Y`` -> foo, four distinct letters -> bar
- ``recursion``: ``X Y Y Y`` -> foo, four distinct letters -> bar
- ``centre_embedding``: ``X Y Z Y X`` -> foo, five distinct letters -> bar
- ``word_categories``: fruit + animal -> foo, furniture + profession -> bar
- ``word_categories_4way``: the two pairs above plus vehicle + colour -> zip, clothing + country -> vex

Letters are the 26 capitals.  Every label word is one token (after a space) for the SmolLM2 and
Gemma 3 tokenizers (checked in ``tests/test_abstract_tasks.py``); most category words are one token
too, a few (sofa, wardrobe, ...) are several, so word-level knockout has multi-token words to act on.

Run: python interp/data/tasks/build_abstract_tasks.py  (deterministic: fixed seeds, sorted pools).
"""

from __future__ import annotations

import itertools
import json
import random
import string
from pathlib import Path

OUT = Path(__file__).resolve().parent
LETTERS = tuple(string.ascii_uppercase)
ITEMS_PER_TASK = 400  # several hundred, divisible by 2 and 4 so classes are exactly balanced
BINARY_LABELS = ("foo", "bar")  # arbitrary: no prior ties them to a pattern or a category
FOUR_WAY_LABELS = ("foo", "bar", "zip", "vex")

CATEGORIES = {
    "fruit": "apple banana cherry grape lemon mango orange peach pear plum lime kiwi coconut papaya berry".split(),
    "animal": "dog cat horse cow sheep goat lion tiger bear wolf fox rabbit mouse deer monkey zebra camel".split(),
    "furniture": "chair table bed desk shelf stool bench cabinet couch lamp mirror sofa wardrobe dresser "
                 "cupboard".split(),
    "profession": "doctor teacher lawyer nurse farmer pilot baker chef dentist engineer judge soldier writer actor "
                  "banker plumber".split(),
    "vehicle": "car bus truck train bike boat ship plane taxi tram van canoe".split(),
    "colour": "red blue green yellow purple pink brown black white grey violet silver gold".split(),
    "clothing": "shirt jacket coat dress skirt hat sock glove boot shoe belt vest".split(),
    "country": "France Spain Italy Germany Japan China India Brazil Mexico Canada Egypt Kenya Peru Chile "
               "Norway".split(),
}


def distinct_letters(rng: random.Random, count: int) -> list[str]:
    return rng.sample(LETTERS, count)


def repetition(rng: random.Random) -> str:
    first, second = distinct_letters(rng, 2)
    return f"{first} {second} {first} {second}"


def recursion(rng: random.Random) -> str:
    first, second = distinct_letters(rng, 2)
    return f"{first} {second} {second} {second}"


def centre_embedding(rng: random.Random) -> str:
    outer, middle, centre = distinct_letters(rng, 3)
    return f"{outer} {middle} {centre} {middle} {outer}"


def unique_draws(draw, rng: random.Random, count: int, taken: set[str]) -> list[str]:
    """``count`` inputs from ``draw`` that are not in ``taken`` (which they join)."""
    drawn = []
    while len(drawn) < count:
        text = draw(rng)
        if text not in taken:
            taken.add(text)
            drawn.append(text)
    return drawn


def letter_task(pattern, length: int, seed: int) -> list[tuple[str, str]]:
    """Half the items follow ``pattern`` (label foo), half are ``length`` distinct letters (bar)."""
    rng = random.Random(seed)
    taken: set[str] = set()
    half = ITEMS_PER_TASK // 2
    rows = [(text, BINARY_LABELS[0]) for text in unique_draws(pattern, rng, half, taken)]
    distinct = lambda generator: " ".join(distinct_letters(generator, length))  # noqa: E731
    rows += [(text, BINARY_LABELS[1]) for text in unique_draws(distinct, rng, half, taken)]
    rng.shuffle(rows)
    return rows


def category_task(pairs: list[tuple[str, str]], labels: tuple[str, ...], seed: int) -> list[tuple[str, str]]:
    """For each (category, category) pair, ITEMS_PER_TASK / len(pairs) distinct word pairs with that pair's label."""
    rng = random.Random(seed)
    per_class = ITEMS_PER_TASK // len(pairs)
    rows = []
    for (first, second), label in zip(pairs, labels, strict=True):
        combinations = sorted(itertools.product(CATEGORIES[first], CATEGORIES[second]))
        rows += [(f"{left} {right}", label) for left, right in rng.sample(combinations, per_class)]
    rng.shuffle(rows)
    return rows


def write(name: str, rows: list[tuple[str, str]], choices: tuple[str, ...]) -> None:
    inputs = [text for text, _ in rows]
    assert len(set(inputs)) == len(inputs), f"{name}: duplicate inputs"
    with open(OUT / f"{name}.jsonl", "w", encoding="utf-8") as handle:
        for text, label in rows:
            handle.write(json.dumps({"input": text, "choices": list(choices), "answer": label}) + "\n")
    counts = {label: sum(answer == label for _, answer in rows) for label in choices}
    print(name, len(rows), counts)


def main() -> None:
    all_words = [word for words in CATEGORIES.values() for word in words]
    assert len(set(all_words)) == len(all_words), "a word sits in two categories"
    write("repetition", letter_task(repetition, 4, seed=1), BINARY_LABELS)
    write("recursion", letter_task(recursion, 4, seed=2), BINARY_LABELS)
    write("centre_embedding", letter_task(centre_embedding, 5, seed=3), BINARY_LABELS)
    binary_pairs = [("fruit", "animal"), ("furniture", "profession")]
    write("word_categories", category_task(binary_pairs, BINARY_LABELS, seed=4), BINARY_LABELS)
    four_pairs = binary_pairs + [("vehicle", "colour"), ("clothing", "country")]
    write("word_categories_4way", category_task(four_pairs, FOUR_WAY_LABELS, seed=5), FOUR_WAY_LABELS)


if __name__ == "__main__":
    main()
