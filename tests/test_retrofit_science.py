"""Retrofit science on constructed cases with known answers, for the survivors of
`benchmarks/mutation.sh retrofit` (benchmarks/mutation_survivors.md): the smaller-side Gram of a
square matrix, transport of a rank-one matrix, thread and token edges, the data blocks, the
summary and its table, the training loop's bookkeeping and the criteria at their thresholds."""

import math

import numpy as np
import pytest
import torch

from weightlab.errors import InputError
from weightlab.retrofit.data import retrofit_data, token_blocks, validation_blocks
from weightlab.retrofit.gram import (
    ActivationCovariance,
    ffn_modules,
    ffn_weights,
    gram_condition_number,
    gram_penalty,
    gram_penalty_grad,
    single_threaded,
    smaller_gram,
    total_gram_penalty,
    transport_,
    weight_conditioning,
)

# ----------------------------------------------------------------------------- the Gram


def test_a_square_matrix_uses_w_w_transposed():
    w = torch.tensor([[1.0, 2.0], [0.0, 1.0]], dtype=torch.float64)  # W W^T = [[5, 2], [2, 1]], W^T W = [[1, 2], [2, 5]]
    assert smaller_gram(w).tolist() == [[5.0, 2.0], [2.0, 1.0]]
    assert gram_penalty(w).item() == pytest.approx(16 + 4 + 4 + 0)
    leaf = w.clone().requires_grad_(True)
    gram_penalty(leaf).backward()
    torch.testing.assert_close(gram_penalty_grad(w), leaf.grad)  # 4 (G - I) W
    assert gram_penalty_grad(w).tolist() == pytest.approx(4 * (torch.tensor([[4.0, 2.0], [2.0, 0.0]], dtype=torch.float64) @ w))
    tall = torch.tensor([[1.0], [2.0]], dtype=torch.float64)  # W^T W = [[5]]: penalty 16, gradient 4 W (5 - 1)
    assert smaller_gram(tall).tolist() == [[5.0]] and gram_penalty(tall).item() == 16.0
    assert gram_penalty_grad(tall).tolist() == [[16.0], [32.0]]
    wide = tall.T  # W W^T = [[5]]: the same
    assert smaller_gram(wide).tolist() == [[5.0]] and gram_penalty_grad(wide).tolist() == [[16.0, 32.0]]


def test_condition_numbers_of_known_spectra():
    w = torch.diag(torch.tensor([1.0, 3.0], dtype=torch.float64))
    assert gram_condition_number(w) == pytest.approx(9.0)
    assert gram_condition_number(torch.tensor([[1.0, 0.0], [0.0, 0.0]])) == math.inf  # singular
    assert gram_condition_number(torch.tensor([[2.0, 0.0, 0.0]])) == 1.0


def test_single_threaded_restores_the_thread_count_even_after_an_error():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with single_threaded():
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with pytest.raises(RuntimeError), single_threaded():
            raise RuntimeError("inside")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_transport_makes_a_positive_rank_one_matrix_constant():
    """W = a b^T (positive): rows normalised give b / |b|, columns then 1 / sqrt(m) each, rescaled
    to |W| = |a| |b|: every entry |a| |b| / sqrt(m n)."""
    a, b = torch.tensor([1.0, 2.0, 4.0], dtype=torch.float64), torch.tensor([3.0, 1.0], dtype=torch.float64)
    w = torch.outer(a, b)
    out = transport_(w)
    assert out is w
    expected = a.norm() * b.norm() / math.sqrt(6)
    assert w.numpy() == pytest.approx(np.full((3, 2), expected.item()), rel=1e-7)
    zero_row = torch.tensor([[0.0, 0.0], [1.0, 2.0]], dtype=torch.float64)
    transport_(zero_row)  # eps keeps a zero row at zero instead of 0 / 0
    assert torch.isfinite(zero_row).all() and zero_row[0].tolist() == [0.0, 0.0]
    assert zero_row.norm().item() == pytest.approx(math.sqrt(5.0))


class _Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.mlp = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 3))
        self.attn = torch.nn.Linear(3, 3)

    def forward(self, x):
        return self.mlp(self.attn(x))


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(_Block(), _Block())


def test_ffn_weights_and_modules_are_the_mlp_matrices_only():
    model = _model()
    assert sorted(ffn_weights(model)) == ["0.mlp.0.weight", "0.mlp.1.weight", "1.mlp.0.weight", "1.mlp.1.weight"]
    assert sorted(ffn_modules(model)) == ["0.mlp", "1.mlp"]
    conditioning = weight_conditioning(model)
    assert sorted(conditioning) == sorted(ffn_weights(model))
    assert conditioning["0.mlp.1.weight"] == pytest.approx(gram_condition_number(model[0].mlp[1].weight))
    assert total_gram_penalty(model) == pytest.approx(sum(gram_penalty(w).item() for w in ffn_weights(model).values()), rel=1e-6)
    with pytest.raises(InputError, match="no 2-D parameters under '.mlp.'"):
        ffn_weights(torch.nn.Sequential(torch.nn.Linear(2, 2)))


def test_activation_covariance_needs_more_tokens_than_dimensions():
    model = torch.nn.Sequential(_Block())
    x = torch.randn(1, 4, 3, generator=torch.Generator().manual_seed(0))
    exactly = ActivationCovariance(ffn_modules(model))
    model(x[:, :3])  # 3 tokens, 3 dimensions
    assert exactly.condition_numbers() == {"0.mlp": None}
    one_more = ActivationCovariance(ffn_modules(model))
    model(x)
    one_more.remove()
    model(x)  # removed: not counted
    assert one_more.count == {"0.mlp": 4}
    inputs = model[0].attn(x).detach().reshape(-1, 3).double().numpy()
    assert one_more.condition_numbers()["0.mlp"] == pytest.approx(np.linalg.cond(np.cov(inputs, rowvar=False)), rel=1e-6)


# ----------------------------------------------------------------------------- data


class _Tokenizer:
    def __init__(self, eos=0):
        self.eos_token_id = eos

    def __call__(self, text, add_special_tokens=False):
        assert add_special_tokens is False
        return type("Encoded", (), {"input_ids": [len(word) for word in text.split()]})()


CORPUS = {"sources": {"wiki": {}, "news": {}},
          "train": [{"text": "a bb", "source": "wiki"}, {"text": "ccc", "source": "news"}, {"text": "dddd e ff", "source": "wiki"},
                    {"text": "g", "source": "wiki"}],
          "validation": [{"text": "hh iii", "source": "wiki"}, {"text": "jjjj", "source": "news"}, {"text": "k ll", "source": "wiki"}]}


def test_token_blocks_without_eos_and_the_early_stop():
    assert token_blocks(_Tokenizer(eos=None), ["a bb ccc", "dddd"], seq_len=2).tolist() == [[1, 2], [3, 4]]
    blocks = token_blocks(_Tokenizer(), ["a bb", "ccc", "dddd"], seq_len=3, max_blocks=1)  # stops once 3 tokens are in
    assert blocks.tolist() == [[1, 2, 0]] and blocks.dtype == torch.long
    assert token_blocks(_Tokenizer(), ["a bb ccc dddd e"], seq_len=2, max_blocks=5).tolist() == [[1, 2], [3, 4], [1, 0]]


def test_retrofit_data_takes_one_source_and_describes_it():
    train, validation, info = retrofit_data(_Tokenizer(), CORPUS, "wiki", seq_len=2, eval_sequences=2, max_docs=2)
    assert train.tolist() == [[1, 2], [0, 4], [1, 2]]  # "a bb" EOS "dddd e ff" EOS: 1 2 0 4 1 2 0 -> 3 blocks of 2
    assert validation.tolist() == [[2, 3], [0, 1]]
    assert info == {"corpus": "wiki", "train_documents": 2, "seq_len": 2, "train_blocks": 3, "validation_blocks": 2,
                    "validation_tokens": 4}
    all_docs = retrofit_data(_Tokenizer(), CORPUS, "wiki", seq_len=2, eval_sequences=1)
    assert all_docs[2]["train_documents"] == 3 and all_docs[1].tolist() == [[2, 3]]
    assert validation_blocks(_Tokenizer(), CORPUS, "news", 2, 5).tolist() == [[4, 0]]
