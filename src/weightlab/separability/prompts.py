"""Experiment B's prompts: indirect object identification (IOI) sentences for the model in use.

Templates and name lists in the style of Wang et al. (2022), half ABBA ("When Mary and John ...,
John gave a drink to") and half BABA ("When John and Mary ..., John gave a drink to"); answer =
the indirect object (IO), distractor = the subject (S). Names, places and objects are single
tokens for the tokenizer in use and every prompt has one token length (no padding: the
TransformerLens 4 bridge gives wrong logits under left padding). The ABC set keeps each prompt's
template, place and object and puts three distinct random names in the three name slots; its
activations are the reference for `mean` and `resample` ablation (`weightlab.separability.ablation`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch

from weightlab.errors import InputError

# Templates in the style of Wang et al. (2022): {first} and {second} are the two names of the
# first clause, {subject} the name that repeats; the prompt ends where the answer (IO) would come.
TEMPLATES: tuple[str, ...] = (
    "Then, {first} and {second} went to the {place}. {subject} gave a {object} to",
    "Then, {first} and {second} had a lot of fun at the {place}. {subject} gave a {object} to",
    "Then, {first} and {second} were working at the {place}. {subject} decided to give a {object} to",
    "Then, {first} and {second} were thinking about going to the {place}. {subject} wanted to give a {object} to",
    "Then, {first} and {second} had a long argument, and afterwards {subject} said to",
    "After {first} and {second} went to the {place}, {subject} gave a {object} to",
    "When {first} and {second} got a {object} at the {place}, {subject} decided to give it to",
    "When {first} and {second} got a {object} at the {place}, {subject} decided to give the {object} to",
    "While {first} and {second} were working at the {place}, {subject} gave a {object} to",
    "While {first} and {second} were commuting to the {place}, {subject} gave a {object} to",
    "After the lunch, {first} and {second} went to the {place}. {subject} gave a {object} to",
    "Afterwards, {first} and {second} went to the {place}. {subject} gave a {object} to",
    "Then, {first} and {second} had a long argument. Afterwards {subject} said to",
    "The {place} {first} and {second} went to had a {object}. {subject} gave it to",
    "Friends {first} and {second} found a {object} at the {place}. {subject} gave it to",
    "When {first} and {second} went to the {place}, {subject} gave a {object} to",
    "Yesterday, {first} and {second} went to the {place}. {subject} handed a {object} to",
    "When {first} and {second} arrived at the {place}, {subject} passed the {object} to",
)
NAMES: tuple[str, ...] = tuple(
    "Aaron Adam Alan Alex Alice Amy Anderson Andre Andrew Andy Anna Anthony Arthur Austin Blake Brian Carl "
    "Charles Charlie Christian Christopher Clark Cole Dan Daniel David Dean Elizabeth Emily Eric Frank Georgia "
    "Graham Grant Henry Ian Jack Jacob Jake James Jane Jay Jennifer Jeremy Jessica John Jonathan Jordan Joseph "
    "Joshua Justin Kate Kelly Kevin Laura Leon Lewis Lisa Louis Luke Madison Marco Marcus Maria Mark Martin Mary "
    "Matthew Max Michael Michelle Morgan Patrick Paul Peter Rachel Richard Robert Roman Rose Ruby Russell Ryan "
    "Sarah Scott Sean Simon Stephen Steven Sullivan Taylor Thomas Tyler Victoria Warren William".split()
)
PLACES: tuple[str, ...] = tuple("store garden restaurant school hospital office house station park library museum beach market".split())
OBJECTS: tuple[str, ...] = tuple("ring kiss bone basketball computer necklace drink snack apple book bottle letter ball cake".split())


@dataclass(frozen=True)
class IOIPrompt:
    """One prompt: its text and the names in its three slots (first, second, subject)."""

    text: str
    template: int
    order: str  # "ABBA", "BABA" (clean) or "ABC" (corrupted)
    first: str
    second: str
    subject: str
    place: str
    object: str

    @property
    def io(self) -> str:
        """The indirect object: the first-clause name that is not the subject (clean prompts)."""
        return self.second if self.first == self.subject else self.first


@dataclass
class IOIDataset:
    """Clean prompts, their ABC-corrupted twins, token ids (all one length) and answer ids."""

    clean: list[IOIPrompt]
    corrupted: list[IOIPrompt]
    tokens: torch.Tensor  # [n, seq] clean prompts
    corrupted_tokens: torch.Tensor  # [n, seq]
    io_ids: torch.Tensor  # [n] token of " IO"
    s_ids: torch.Tensor  # [n] token of " S"
    description: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.clean)

    @property
    def templates(self) -> torch.Tensor:
        """The template index of each prompt ([n]; a clean prompt and its ABC twin share it)."""
        return torch.tensor([p.template for p in self.clean])

    def to_json(self) -> dict[str, Any]:
        """The prompts as data (texts, names, token ids) so another step uses exactly these."""
        return {
            "description": self.description,
            "clean": [vars(p) for p in self.clean],
            "corrupted": [vars(p) for p in self.corrupted],
            "tokens": self.tokens.tolist(),
            "corrupted_tokens": self.corrupted_tokens.tolist(),
            "io_ids": self.io_ids.tolist(),
            "s_ids": self.s_ids.tolist(),
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any], tokenizer: Any) -> IOIDataset:
        """Rebuild the dataset written by `to_json`, checking that `tokenizer` gives the same ids."""
        data = cls(
            [IOIPrompt(**p) for p in doc["clean"]], [IOIPrompt(**p) for p in doc["corrupted"]],
            torch.tensor(doc["tokens"]), torch.tensor(doc["corrupted_tokens"]),
            torch.tensor(doc["io_ids"]), torch.tensor(doc["s_ids"]), dict(doc["description"]),
        )
        bos = data.description.get("bos_token_id")
        again = _encode_all(tokenizer, [p.text for p in data.clean], bos)
        if not torch.equal(again, data.tokens):
            raise InputError("the IOI prompts in the heads file tokenize differently with this backbone; "
                             "re-run rule separability_ioi_heads with the same backbone.")
        return data


def single_token_words(tokenizer: Any, words: Iterable[str]) -> list[str]:
    """The words that are one token when they follow a space (as names, places, objects do here)."""
    return [w for w in words if len(tokenizer(" " + w, add_special_tokens=False).input_ids) == 1]


def _token(tokenizer: Any, word: str) -> int:
    return int(tokenizer(" " + word, add_special_tokens=False).input_ids[0])


def _encode_all(tokenizer: Any, texts: Sequence[str], bos: int | None) -> torch.Tensor:
    rows = [([bos] if bos is not None else []) + tokenizer(t, add_special_tokens=False).input_ids for t in texts]
    lengths = {len(r) for r in rows}
    if len(lengths) != 1:
        raise InputError(f"IOI prompts have token lengths {sorted(lengths)}; they must all have one length (no padding).")
    return torch.tensor(rows, dtype=torch.long)


def _render(template: int, first: str, second: str, subject: str, place: str, obj: str, order: str) -> IOIPrompt:
    text = TEMPLATES[template].format(first=first, second=second, subject=subject, place=place, object=obj)
    return IOIPrompt(text, template, order, first, second, subject, place, obj)


def usable_templates(tokenizer: Any, names: Sequence[str], places: Sequence[str], objects: Sequence[str]) -> tuple[list[int], int]:
    """The templates of the most common token length (ties: the shorter) and that length.

    With single-token names, places and objects each template has one length; IOI needs all
    prompts of one length, so only the largest group of equal-length templates is used."""
    lengths: dict[int, list[int]] = {}
    for index in range(len(TEMPLATES)):
        probe = _render(index, names[0], names[1], names[0], places[0], objects[0], "ABBA").text
        lengths.setdefault(len(tokenizer(probe, add_special_tokens=False).input_ids), []).append(index)
    length = max(lengths, key=lambda n: (len(lengths[n]), -n))
    return lengths[length], length


def make_ioi_dataset(
    tokenizer: Any, n_examples: int, seed: int, prepend_bos: bool = False, min_names: int = 10, min_templates: int = 2,
) -> IOIDataset:
    """`n_examples` IOI prompts (half ABBA, half BABA, interleaved) and their ABC twins, seeded.

    Raises InputError when the tokenizer leaves fewer than `min_names` single-token names or fewer
    than `min_templates` templates of one token length, or when `n_examples` is odd."""
    if n_examples < 2 or n_examples % 2:
        raise InputError(f"n_examples is {n_examples}; use an even number >= 2 so ABBA and BABA are balanced.")
    names = single_token_words(tokenizer, NAMES)
    places = single_token_words(tokenizer, PLACES)
    objects = single_token_words(tokenizer, OBJECTS)
    if len(names) < max(3, min_names) or not places or not objects:
        raise InputError(f"only {len(names)} names, {len(places)} places and {len(objects)} objects are single tokens for this "
                         f"tokenizer (need >= {max(3, min_names)} names and one of each other); extend the lists in weightlab.separability.prompts.")
    templates, length = usable_templates(tokenizer, names, places, objects)
    if len(templates) < min_templates:
        raise InputError(f"only {len(templates)} IOI templates share one token length for this tokenizer (need {min_templates}); "
                         "add templates of equal length or lower min_templates.")
    bos = None
    if prepend_bos:
        if tokenizer.bos_token_id is None:
            raise InputError("prepend_bos is true but the tokenizer has no BOS token; set prepend_bos: false.")
        bos = int(tokenizer.bos_token_id)
    rng = np.random.default_rng(seed)
    clean, corrupted = [], []
    for i in range(n_examples):
        template = int(rng.choice(templates))
        place, obj = str(rng.choice(places)), str(rng.choice(objects))
        io, s = (str(n) for n in rng.choice(names, size=2, replace=False))
        order = "ABBA" if i % 2 == 0 else "BABA"
        first, second = (io, s) if order == "ABBA" else (s, io)
        clean.append(_render(template, first, second, s, place, obj, order))
        x, y, z = (str(n) for n in rng.choice(names, size=3, replace=False))
        corrupted.append(_render(template, x, y, z, place, obj, "ABC"))
    tokens = _encode_all(tokenizer, [p.text for p in clean], bos)
    corrupted_tokens = _encode_all(tokenizer, [p.text for p in corrupted], bos)
    if tokens.shape != corrupted_tokens.shape:
        raise InputError("the ABC prompts differ in length from the clean ones; check the name lists.")
    description = {
        "n_examples": n_examples, "seed": seed, "seq_len": int(tokens.shape[1]), "prepend_bos": prepend_bos, "bos_token_id": bos,
        "templates": [TEMPLATES[t] for t in templates], "template_tokens": length, "n_names": len(names),
        "n_places": len(places), "n_objects": len(objects), "orders": {"ABBA": n_examples // 2, "BABA": n_examples // 2},
        "answer": "logit(IO) - logit(S) at the final position",
        "corrupted": "ABC: same template, place and object; three distinct random names in the three name slots",
    }
    io_ids = torch.tensor([_token(tokenizer, p.io) for p in clean])
    s_ids = torch.tensor([_token(tokenizer, p.subject) for p in clean])
    return IOIDataset(clean, corrupted, tokens, corrupted_tokens, io_ids, s_ids, description)
