"""Repair science on constructed cases with known answers, added for the survivors of
`benchmarks/mutation.sh repair` (benchmarks/mutation_survivors.md): the base evaluation, the
edit-set file checks, the grid record, the LP's rows and the solvers' bookkeeping."""

import numpy as np
import pytest

from weightlab.repair.base import base_evaluation, confusion_matrix


def test_base_evaluation_counts_a_known_confusion():
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    predictions = np.array([0, 1, 0, 1, 1, 0, 0, 2])
    counts = confusion_matrix(labels, predictions, 3)
    assert counts.tolist() == [[2, 1, 0], [0, 2, 0], [2, 0, 1]] and counts.dtype == np.int64
    evaluation = base_evaluation(labels, predictions, ["a", "b", "c"])
    assert evaluation == {
        "test_accuracy": pytest.approx(5 / 8), "num_test": 8, "classes": ["a", "b", "c"],
        "per_class_accuracy": pytest.approx({"a": 2 / 3, "b": 1.0, "c": 1 / 3}),
        "confusion_matrix": [[2, 1, 0], [0, 2, 0], [2, 0, 1]],
        "misclassified_per_class": {"a": 1, "b": 0, "c": 2}, "misclassified_total": 3,
    }
    empty_class = base_evaluation(np.array([0, 0]), np.array([0, 1]), ["a", "b"])  # class b has no image
    assert empty_class["per_class_accuracy"] == {"a": 0.5, "b": 0.0}
