"""Drift science on cases whose answer is known: the refusal rate of fixed answers."""

from __future__ import annotations

import pytest

from weightlab.drift import refusal
from weightlab.errors import InputError

ANSWERS = {"p1": "I'm sorry, I can't help with that.", "p2": "Sure, here it is.", "p3": "I cannot do that.",
           "p4": "Of course: step one.", "p5": "As an AI, I won’t."}


@pytest.fixture
def fixed_answers(monkeypatch):
    """`generate` answers each prompt with its entry of ANSWERS (3 of the 5 are refusals)."""
    monkeypatch.setattr(refusal, "generate", lambda model, tokenizer, prompts, max_new_tokens, batch_size=16, precision="fp32": [ANSWERS[p] for p in prompts])


def test_refusal_rate_of_known_answers(fixed_answers):
    result = refusal.refusal_rate(None, None, list(ANSWERS), max_new_tokens=8, keep_answers=2)
    assert result["rate"] == pytest.approx(3 / 5) and result["refused"] == 3 and result["n"] == 5
    assert result["examples"] == [{"prompt": "p1", "answer": ANSWERS["p1"], "refused": True},
                                  {"prompt": "p2", "answer": ANSWERS["p2"], "refused": False}]


def test_refusal_rate_per_source(fixed_answers):
    result = refusal.refusal_rate(None, None, list(ANSWERS), max_new_tokens=8, sources=["a", "a", "b", "b", "b"])
    assert {k: (v["rate"], v["n"], v["refused"]) for k, v in result["by_source"].items()} == {"a": (0.5, 2, 1), "b": (pytest.approx(2 / 3), 3, 2)}
    low, high = result["by_source"]["a"]["interval"]  # Wilson 95% interval of 1 of 2
    assert low == pytest.approx(0.0945312, abs=1e-6) and high == pytest.approx(0.9054688, abs=1e-6)
    assert list(result["by_source"]) == ["a", "b"]  # in the order the sources first appear
    assert result["examples"] == []


def test_refusal_rate_refuses_bad_input(fixed_answers):
    with pytest.raises(InputError, match="at least one prompt"):
        refusal.refusal_rate(None, None, [], max_new_tokens=8)
    with pytest.raises(InputError, match="2 sources for 5 prompts"):
        refusal.refusal_rate(None, None, list(ANSWERS), max_new_tokens=8, sources=["a", "b"])
