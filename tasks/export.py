"""Stage 4: the corrected-label manifest, the trained model and the run's metrics."""

from __future__ import annotations

from prefect import task

from mixnn_core.evaluation_table import evaluation_table, write_evaluation_table
from mixnn_core.export import build_manifest, export_model, write_manifest
from mixnn_core.files import write_json_atomic
from mixnn_core.metrics import test_accuracy_summary
from mixnn_core.outputs import outputs_metrics
from tasks.index import save_index
from tasks.retries import IO_RETRIES, transient_io_error
from tasks.run_files import RunFiles, checkin_trainer, checkout_trainer, dataset_arrays, training_labels


@task(name="export", retry_condition_fn=transient_io_error, **IO_RETRIES)
def export_results(run_dir: str) -> dict:
    """Write ``manifest.parquet``/``.csv``, ``model/`` and ``history.json``; return the metrics.

    A final evaluation pass gives the trained model's features (kept as
    ``features/final.parquet`` for scoring new data) and predictions.
    """
    run = RunFiles(run_dir)
    _, table, class_names = dataset_arrays(run.root)
    given, true = training_labels(run)
    trainer = checkout_trainer(run, run.completed_epochs())
    evaluation = trainer.evaluation_pass()
    write_evaluation_table(evaluation_table(table["sample_id"].to_numpy(), evaluation), run.final_features)
    save_index(evaluation.features, run.final_index, trainer.config.to_dict())
    outputs = trainer.outputs(evaluation.probs)
    manifest = build_manifest(table, class_names, outputs, true_labels=true)
    write_manifest(manifest, outputs.soft_label, run.root, outputs.label_issue_rule, outputs.label_quality_rule,
                   outputs.suggestion_rule)

    metrics = {"n_samples": int(len(manifest)),
               "n_label_issues": int(outputs.is_label_issue.sum()),
               "n_suggested_changes": int((outputs.suggested_label != given).sum())}
    if trainer.noise_strength is not None:  # mixnn: set by the first mixture fit
        metrics["noise_strength"] = trainer.noise_strength
        metrics["noise_estimate"] = trainer.config.noise_estimate
    if trainer.noise_concentration is not None:
        metrics["noise_concentration"] = trainer.noise_concentration
    test_curve = [row["test_acc"] for row in trainer.history if "test_acc" in row]
    if test_curve:
        metrics.update(test_accuracy_summary(test_curve))
    if true is not None:
        metrics.update(outputs_metrics(outputs, true))
    write_json_atomic(trainer.history, run.root / "history.json")
    export_model(trainer.model, run.root / "model", architecture=trainer.model_name,
                 class_names=class_names, input_shape=trainer.input_shape,
                 normalization=trainer.normalization, configuration=trainer.config.to_dict(),
                 metrics=metrics, suggestion_temperature=outputs.suggestion_temperature,
                 flag_cut=outputs.flag_cut)
    checkin_trainer(run, trainer)
    return metrics
