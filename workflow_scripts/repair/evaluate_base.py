"""Evaluate the base model: test accuracy, per-class accuracy, confusion matrix, predictions."""
from weightlab.checkpoints import load_checkpoint
from weightlab.io import read_npz, save_figure, write_json, write_npz
from weightlab.provenance import provenance
from weightlab.repair.base import evaluate_base_model
from weightlab.repair.figures import confusion_figure
from weightlab.repair.models import ARCHITECTURES
from weightlab.script import rule_step
from weightlab.vision.data import dataset_from_arrays

with rule_step(snakemake) as step:
    device = step.device
    dataset = dataset_from_arrays(read_npz(step.input.images))
    model, payload = load_checkpoint(step.input.checkpoint, ARCHITECTURES, device)
    summary, predictions = evaluate_base_model(model, dataset.test, dataset.classes, device)
    step.log.info("base test accuracy %.4f, %d misclassified", summary["test_accuracy"], summary["misclassified_total"])
    write_npz(step.output.predictions, labels=dataset.test.labels, predictions=predictions)
    write_json(step.output.evaluation, {
        **summary, "checkpoint": step.input.checkpoint, "arch": payload["arch"], "arch_kwargs": payload["arch_kwargs"],
        "provenance": provenance({"device": step.params.device}, None),
    })
    save_figure(confusion_figure(summary["confusion_matrix"], dataset.classes, summary["test_accuracy"]), step.output.confusion)
