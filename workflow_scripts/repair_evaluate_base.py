"""Evaluate the base model: test accuracy, per-class accuracy, confusion matrix, predictions."""
from weightlab.data import dataset_from_arrays
from weightlab.io import read_npz, save_figure, write_json, write_npz
from weightlab.models import load_checkpoint
from weightlab.provenance import provenance
from weightlab.repair import base_evaluation
from weightlab.repair_plots import confusion_figure
from weightlab.runtime import configure, resolve_device
from weightlab.script import logged
from weightlab.training import evaluate

with logged(snakemake.log[0]) as log:
    configure(snakemake.threads)
    device = resolve_device(snakemake.params.device)
    dataset = dataset_from_arrays(read_npz(snakemake.input.images))
    model, payload = load_checkpoint(snakemake.input.checkpoint, device)
    predictions = evaluate(model, dataset.test.images, dataset.test.labels, device).predictions
    summary = base_evaluation(dataset.test.labels, predictions, dataset.classes)
    log.info("base test accuracy %.4f, %d misclassified", summary["test_accuracy"], summary["misclassified_total"])
    write_npz(snakemake.output.predictions, labels=dataset.test.labels, predictions=predictions)
    write_json(snakemake.output.evaluation, {
        **summary, "checkpoint": snakemake.input.checkpoint, "arch": payload["arch"], "arch_kwargs": payload["arch_kwargs"],
        "provenance": provenance({"device": snakemake.params.device}, None),
    })
    save_figure(confusion_figure(summary["confusion_matrix"], dataset.classes, summary["test_accuracy"]), snakemake.output.confusion)
