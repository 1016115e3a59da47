"""The benchmark suite: ce, mixup, mixnn and the cleanlab route, side by side on real data.

    .venv/bin/python bench/suite.py --settings fmnist20k-sym80 fmnist20k-asym40 --epochs 20
    .venv/bin/python bench/suite.py --quick --out /tmp/quick      # a few minutes, what CI runs
    .venv/bin/python bench/report.py                              # results -> BENCHMARKS.md

Every row of a setting uses the same data, model (the setting's: the cpu preset's ``auto`` on
Fashion-MNIST and digits, ``resnet18`` on CIFAR), epoch budget, seed and noisy labels. Each
(setting, method, epochs, seed) is one JSON file under ``--out`` (``bench/results/runs`` by
default); finished ones are skipped, so an interrupted suite resumes: a ce, mixup or mixnn run
after its last finished epoch (from ``--out``/partial/, exactly; its ``segments`` say where each
part ran), a cleanlab run from its start.

Per run: test accuracy after the last epoch and at the best epoch (the best is selected ON THE
TEST SET, so it is a ceiling for reference, never a result), label recovery (suggested label =
true label), detection precision / recall / F1 of the flags and AUROC of ``label_quality``
against the known wrong labels, and wall time per stage. Test accuracy and per-epoch label
recovery are measured outside the timed stages. Torch and faiss use ``OMP_NUM_THREADS`` threads
when it is set (e.g. two suites side by side with 1 each), else every CPU; the run records the
thread count, the process's peak memory so far (``peak_rss_mb``: run one setting per process
to read it as that run's) and the commit of the code with the Python files changed from it
(``code``). With ``--arrays`` a ce, mixup or mixnn row also leaves its final per-sample arrays
(``--out``/arrays/NAME.npz, the ``--samples`` file of ``bench/mixing_diagnostics.py``): a later
change to how labels are flagged or ranked can then be scored on the run without training it again.

The cleanlab route (cleanlab is a benchmark-only dependency, bench/requirements.txt): 2-fold
cross-validated plain training for out-of-fold probabilities, ``find_label_issues``, then plain
training again on the samples it keeps; its suggested label is the argmax of the out-of-fold
probabilities and its label quality cleanlab's ``get_label_quality_scores``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.datasets import Split, cifar10, fashion_mnist, subset  # noqa: E402
from bench.timestamps import utc_now  # noqa: E402
from flows.mixnn_flow import StageClock  # noqa: E402
from mixnn_core.config import TrainConfig, cpu_preset  # noqa: E402
from mixnn_core.evaluation_table import evaluation_table, write_evaluation_table  # noqa: E402
from mixnn_core.files import read_torch_state, replace_atomically, write_json_atomic  # noqa: E402
from mixnn_core.knn import faiss_thread_count  # noqa: E402
from mixnn_core.metrics import label_quality_metrics  # noqa: E402
from mixnn_core.noise import inject_noise  # noqa: E402
from mixnn_core.trainer import Trainer, epoch_neighbors  # noqa: E402

METHODS = ("ce", "mixup", "mixnn", "cleanlab")
CLEANLAB_FOLDS = 2


@dataclass(frozen=True)
class Setting:
    """A dataset, a training subset size and the label noise of one benchmark row group."""

    dataset: str  # "fashion_mnist", "cifar10" or "digits"
    n_train: int | None  # None: the whole training split
    # (mode, rate) injected, mode one of mixnn_core.noise's or "one_way" (ONE_WAY_FLIPS);
    # "human:<label set>"; None: clean
    noise: tuple[str, float] | str | None
    model: str = "auto"
    hflip: bool = False  # horizontal flips: right for photos (CIFAR), wrong for clothes and digits

    def train_options(self) -> dict:
        """The TrainConfig fields this setting fixes for every method."""
        return {"model": self.model, "hflip": self.hflip}


# Class -> class of Fashion-MNIST's asymmetric map (mixnn_core.noise) without its reverse flips:
# T-shirt -> Shirt, Pullover -> Coat, Sandal -> Sneaker. Noise mode "one_way": each sample of a
# mapped class flips to its target with the setting's rate. It tells flips between classes the
# model confuses (asym 40's) from flips that run both ways.
ONE_WAY_FLIPS = {0: 6, 2: 4, 5: 7}

SETTINGS = {
    **{f"fmnist20k-{name}": Setting("fashion_mnist", 20000, noise) for name, noise in {
        "clean": None, "sym20": ("symmetric", 0.2), "sym50": ("symmetric", 0.5),
        "sym80": ("symmetric", 0.8), "asym40": ("asymmetric", 0.4), "pairflip45": ("pairflip", 0.45),
        "oneway40": ("one_way", 0.4),
    }.items()},
    "fmnist60k-clean": Setting("fashion_mnist", None, None),
    "fmnist60k-sym50": Setting("fashion_mnist", None, ("symmetric", 0.5)),
    # torchvision's ResNet-18: 79.8 on clean CIFAR-10 against the small CNN's 76.8, 30-40 minutes
    # a 20-epoch run here (BENCHMARKS.md, eighth and ninth passes)
    **{name: Setting("cifar10", None, noise, model="resnet18", hflip=True) for name, noise in {
        "cifar10-clean": None, "cifar10n-worse": "human:worse_label", "cifar10n-aggre": "human:aggre_label",
    }.items()},
    "digits-sym40": Setting("digits", None, ("symmetric", 0.4)),  # the quick mode's data
}


@dataclass(frozen=True)
class Data:
    train: Split  # clean labels
    test: Split
    noisy_labels: np.ndarray
    noise_report: dict


def digits() -> tuple[Split, Split]:
    """scikit-learn's digits, 8x8 grey scaled to 0..255; the last 297 images are the test set."""
    from sklearn.datasets import load_digits

    loaded = load_digits()
    images = np.rint(loaded.images * (255 / 16)).astype(np.uint8)[:, None]
    labels = loaded.target.astype(np.int64)
    return Split(images[:1500], labels[:1500]), Split(images[1500:], labels[1500:])


def one_way_transition(flips: dict[int, int], rate: float, num_classes: int) -> np.ndarray:
    """Row-stochastic C x C matrix that keeps every label except those of the classes in
    ``flips``, which go to their target with probability ``rate``."""
    matrix = np.eye(num_classes)
    for source, target in flips.items():
        matrix[source, source] = 1.0 - rate
        matrix[source, target] = rate
    return matrix


def load(setting: Setting, seed: int) -> Data:
    """The setting's training subset, test set and noisy training labels (same for every method)."""
    if setting.dataset == "cifar10":
        label_set = setting.noise.split(":", 1)[1] if isinstance(setting.noise, str) else "clean_label"
        train, test, human = cifar10(label_set)
        noisy = human if isinstance(setting.noise, str) else train.labels
        report = {"mode": setting.noise or "clean", "wrong_fraction": float((noisy != train.labels).mean())}
        return Data(train, test, noisy, report)
    train, test = fashion_mnist() if setting.dataset == "fashion_mnist" else digits()
    train = subset(train, setting.n_train or len(train.labels), seed=0)
    if setting.noise is None:
        return Data(train, test, train.labels, {"mode": "clean", "wrong_fraction": 0.0})
    mode, rate = setting.noise
    if mode == "one_way":
        noisy, report = inject_noise(train.labels, 10, "transition", None, seed,
                                     transition=one_way_transition(ONE_WAY_FLIPS, rate, 10))
        report = {"mode": mode, "rate": rate, "seed": seed, "dataset": setting.dataset}
    else:
        asymmetric_map = setting.dataset if mode == "asymmetric" else None
        noisy, report = inject_noise(train.labels, 10, mode, rate, seed, dataset=asymmetric_map)
        report = {key: report[key] for key in ("mode", "rate", "seed", "dataset")}
    return Data(train, test, noisy, {**report, "wrong_fraction": float((noisy != train.labels).mean())})


def train_timed(trainer: Trainer, clock: StageClock, scratch: Path, log: Callable[[dict], None]) -> list[dict]:
    """Train ``trainer`` to its last epoch, each step of a mixing epoch timed as the pipeline runs
    it (evaluation pass, feature write to Parquet, mixture fit, neighbour search, correction,
    training); the reporting metrics of each epoch are left out of the clock."""
    config = trainer.config
    while trainer.epoch < config.epochs:
        neighbors = None
        if config.fits_mixture(trainer.epoch):
            evaluation = clock.run("evaluation_pass", trainer.evaluation_pass)
            table = evaluation_table(np.arange(len(evaluation.losses)), evaluation)
            clock.run("feature_write", write_evaluation_table, table, scratch / "features.parquet")
            clock.run("mixture_fit", trainer.fit_clean_probability, evaluation.losses, evaluation.probs)
            if config.searches_neighbors(trainer.epoch):
                neighbors = clock.run("neighbor_search", epoch_neighbors, evaluation.features, config,
                                      trainer.epoch)
            clock.run("correction", trainer.correct_labels, evaluation.probs)
        row = trainer.train_epoch(neighbors)
        clock.add("training", row["seconds"])
        log(row)
    return trainer.history


def run_trainer_method(method: str, data: Data, epochs: int, seed: int, scratch: Path,
                       log: Callable[[dict], None], options: dict, partial: Path, code: dict) -> dict:
    """ce, mixup or mixnn through mixnn_core's Trainer; suggestions from its outputs.

    After every epoch the trainer's state, the stage times, the wall time so far and the run's
    segments (epoch, machine and ``code`` each started with) go to ``partial``; a run finding it
    there continues from it (exactly, on one machine: the state holds the random generators) and
    removes it once the result exists (``run_one``)."""
    clock = StageClock()
    config = cpu_preset(epochs, method, seed=seed, **options)
    trainer = Trainer(config, data.train.images, data.noisy_labels, 10, test_images=data.test.images,
                      test_labels=data.test.labels, true_labels=data.train.labels)
    earlier = {"segments": [], "elapsed_seconds": 0.0}
    if partial.exists():
        earlier = read_torch_state(partial, remedy="; delete it to run the row from its start")
        trainer.load_state_dict(earlier["trainer"], origin=partial)
        clock.seconds = dict(earlier["stage_seconds"])
        print(f"{partial}: resumed after epoch {trainer.epoch}", flush=True)
    segments = [*earlier["segments"], {"from_epoch": trainer.epoch, "machine": machine_record(), "code": code}]
    started = time.perf_counter()

    def checkpoint(row: dict) -> None:
        log(row)
        state = {"trainer": trainer.state_dict(), "stage_seconds": clock.seconds, "segments": segments,
                 "elapsed_seconds": earlier["elapsed_seconds"] + time.perf_counter() - started}
        replace_atomically(partial, lambda tmp: torch.save(state, tmp))

    history = train_timed(trainer, clock, scratch, checkpoint)
    # the final evaluation pass a run's export makes: every method's outputs read its predictions
    probs = clock.run("final_outputs", lambda: trainer.evaluation_pass().probs)
    outputs = clock.run("final_outputs", trainer.outputs, probs)
    return {"config": config.to_dict(), "stage_seconds": clock.seconds, "history": history,
            "segments": segments, "earlier_elapsed_seconds": earlier["elapsed_seconds"],
            "outputs": outputs_of(outputs.suggested_label, outputs.label_quality, outputs.is_label_issue),
            "final_arrays": {"suggestion": outputs.soft_label, "p_clean": trainer.p_clean, "probs": probs}}


def write_final_arrays(path: Path, data: Data, suggestion: np.ndarray, p_clean: np.ndarray,
                       probs: np.ndarray) -> None:
    """A run's final per-sample arrays as one .npz: given and true labels, the suggestion soft
    labels (N, C), p_clean and the final model's predictions (N, C), row order of the data."""
    def write(temporary: Path) -> None:
        with open(temporary, "wb") as file:  # a file object: savez appends .npz to a bare name
            np.savez_compressed(file, given=data.noisy_labels, true=data.train.labels,
                                suggestion=suggestion, p_clean=p_clean, probs=probs)

    replace_atomically(path, write)


def outputs_of(suggested: np.ndarray, quality: np.ndarray, is_issue: np.ndarray) -> dict:
    return {"suggested_label": suggested, "label_quality": quality, "is_label_issue": is_issue}


def stratified_folds(noisy: np.ndarray, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(fit rows, held-out rows) of each of ``folds`` folds stratified by the noisy label
    (shuffled with ``seed``): the held-out rows cover every row once; both in row order."""
    from sklearn.model_selection import StratifiedKFold

    return list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(noisy, noisy))


def out_of_fold_probabilities(config: TrainConfig, images: np.ndarray, noisy: np.ndarray, seed: int,
                              clock: StageClock | None = None,
                              train: Callable[[Trainer, int], object] = lambda trainer, fold: trainer.fit()
                              ) -> np.ndarray:
    """Probabilities (N, 10) of every row from a model that did not train on it: CLEANLAB_FOLDS
    folds stratified by the noisy label (``seed``), each model made from ``config`` and trained
    with ``train(trainer, fold)``; predicting is timed on ``clock`` as "cross_validation_predict"."""
    clock = clock or StageClock()
    out_of_fold = np.zeros((len(noisy), 10), dtype=np.float64)
    for fold, (fit_rows, predicted_rows) in enumerate(stratified_folds(noisy, CLEANLAB_FOLDS, seed)):
        trainer = Trainer(config, images[fit_rows], noisy[fit_rows], 10)
        train(trainer, fold)
        rows = torch.as_tensor(images[predicted_rows]).to(trainer.device)
        out_of_fold[predicted_rows] = clock.run("cross_validation_predict", trainer.predict_proba, rows)
    return out_of_fold


def run_cleanlab(data: Data, epochs: int, seed: int, scratch: Path, log: Callable[[dict], None],
                 options: dict) -> dict:
    """The cleanlab route: out-of-fold probabilities, find_label_issues, retrain on the kept samples."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    clock = StageClock()
    config = cpu_preset(epochs, "ce", seed=seed, **options)
    noisy = data.noisy_labels
    out_of_fold = out_of_fold_probabilities(
        config, data.train.images, noisy, seed, clock,
        lambda trainer, fold: train_timed(trainer, clock, scratch, lambda row: log({**row, "fold": fold})))
    clock.seconds["cross_validation"] = clock.seconds.pop("training") + clock.seconds.pop("cross_validation_predict")
    is_issue = clock.run("find_label_issues", find_label_issues, noisy, out_of_fold)
    quality = clock.run("find_label_issues", get_label_quality_scores, noisy, out_of_fold)
    kept = ~is_issue
    retrainer = Trainer(config, data.train.images[kept], noisy[kept], 10, test_images=data.test.images,
                        test_labels=data.test.labels)
    history = train_timed(retrainer, clock, scratch, log)
    clock.seconds["retraining"] = clock.seconds.pop("training")
    return {"config": config.to_dict(), "stage_seconds": clock.seconds, "history": history,
            "n_removed": int(is_issue.sum()),
            "outputs": outputs_of(out_of_fold.argmax(axis=1), quality, is_issue)}


def summarise(result: dict, data: Data) -> dict:
    """Headline numbers of a run: test accuracy (last, best-on-test), label metrics, wall time."""
    outputs = result.pop("outputs")
    accuracy = [row["test_acc"] for row in result["history"] if "test_acc" in row]
    best = int(np.argmax(accuracy))
    metrics = label_quality_metrics(data.noisy_labels, outputs["suggested_label"], outputs["label_quality"],
                                    outputs["is_label_issue"], data.train.labels)
    return {"test_acc_last": accuracy[-1], "test_acc_best_on_test": accuracy[best],
            "best_epoch_on_test": best, **metrics, "wall_seconds": sum(result["stage_seconds"].values()),
            **result}


def code_version(root: Path = ROOT) -> dict:
    """The commit the code at ``root`` was checked out at and which of its tracked Python files
    differed from it (``None`` for both outside a git checkout): a result file then names the code
    that produced it, not only its configuration (one option can change form under one value)."""
    def git(*arguments: str) -> str:
        return subprocess.run(["git", "-C", str(root), *arguments], capture_output=True, text=True,
                              check=True).stdout
    try:
        commit = git("rev-parse", "HEAD").strip()
        changed = git("status", "--porcelain", "--untracked-files=no", "--", "*.py")
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "modified": None}
    return {"commit": commit, "modified": sorted(line[3:] for line in changed.splitlines())}


def machine_record() -> dict:
    """The machine a result was measured on. ``cpu_capability`` is the vector instruction set
    torch's CPU kernels use (AVX2, AVX512, ...): runs of one seed agree to the bit on one machine,
    but two hosts of this cloud (platform 6.18.44-fc-v657 and -v857) trained different warm-ups
    from the same seed and code, so rows compare exactly only within one platform and capability."""
    return {"cpus": os.cpu_count(), "threads": torch.get_num_threads(), "platform": platform.platform(),
            "torch": str(torch.__version__), "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def run_name(setting_name: str, method: str, epochs: int, seed: int, tag: str = "") -> str:
    """The stem of a suite row's result file (and of its final arrays): NAME in NAME.json."""
    return f"{setting_name}-{method}-e{epochs}-s{seed}" + (f"-{tag}" if tag else "")


def run_one(setting_name: str, method: str, epochs: int, seed: int, out: Path, overrides: dict,
            tag: str, code: dict, keep_arrays: bool = False) -> Path:
    """Run one (setting, method, epochs, seed) unless its result file exists; returns the file.
    ``code`` (``code_version``) is recorded in it; with ``keep_arrays`` a trainer method's final
    arrays go to ``out``/arrays/NAME.npz (``write_final_arrays``), named in the row."""
    name = run_name(setting_name, method, epochs, seed, tag)
    path = out / f"{name}.json"
    partial = out / "partial" / f"{name}.pt"
    if path.exists():
        partial.unlink(missing_ok=True)  # left by a crash between writing the result and this
        print(f"{name}: done before, skipped", flush=True)
        return path
    setting = SETTINGS[setting_name]
    data = load(setting, seed)
    torch.set_num_threads(faiss_thread_count())  # OMP_NUM_THREADS when set, else every CPU
    started = time.perf_counter()

    def log(row: dict) -> None:
        shown = {key: round(value, 4) if isinstance(value, float) else value for key, value in row.items()}
        print(f"{name} {json.dumps(shown)}", flush=True)

    options = {**setting.train_options(), **overrides}
    with tempfile.TemporaryDirectory() as scratch:
        if method == "cleanlab":
            result = run_cleanlab(data, epochs, seed, Path(scratch), log, options)
        else:
            result = run_trainer_method(method, data, epochs, seed, Path(scratch), log, options, partial, code)
    elapsed = result.pop("earlier_elapsed_seconds", 0.0) + time.perf_counter() - started
    final_arrays = result.pop("final_arrays", None)
    if keep_arrays and final_arrays is not None:
        arrays_path = out / "arrays" / f"{name}.npz"
        write_final_arrays(arrays_path, data, **final_arrays)
        result["final_arrays"] = str(arrays_path.relative_to(out))
    row = {"setting": setting_name, "method": method, "epochs": epochs, "seed": seed, "tag": tag,
           "overrides": overrides, "n_train": len(data.noisy_labels), "noise": data.noise_report,
           **summarise(result, data), "elapsed_seconds": elapsed,
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "machine": {**machine_record(), "load_average_after": os.getloadavg()},
           "code": code, "finished_at": utc_now()}
    write_json_atomic(row, path)
    partial.unlink(missing_ok=True)
    print(f"{name}: test acc {row['test_acc_last']:.4f}, recovery {row['label_recovery']:.4f}, "
          f"F1 {row['f1']:.3f}, AUROC {row['auroc']:.4f}, {row['wall_seconds']:.0f} s", flush=True)
    return path


def config_assignments(parser: argparse.ArgumentParser, items: list[str]) -> dict:
    """``FIELD=VALUE`` arguments (JSON values) as a dict; a malformed one stops with its text."""
    values = {}
    for item in items:
        field, separator, text = item.partition("=")
        try:
            if not separator or not field:
                raise ValueError("expected FIELD=VALUE")
            values[field] = json.loads(text)
        except ValueError as error:
            parser.error(f"{item!r}: {error}")
    return values


def main(argv: list[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", nargs="+", choices=sorted(SETTINGS), default=[])
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--epochs", type=int, nargs="+", default=[20])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "runs")
    parser.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE",
                        help="TrainConfig overrides (JSON values), e.g. num_neighbors=2 alpha=0.9")
    parser.add_argument("--tag", default="", help="suffix of the result names, for ablations")
    parser.add_argument("--arrays", action="store_true",
                        help="keep each ce / mixup / mixnn row's final per-sample arrays (--out/arrays/)")
    parser.add_argument("--quick", action="store_true",
                        help="digits with 40%% symmetric noise, 6 epochs, every method: the CI check")
    args = parser.parse_args(argv)
    overrides = config_assignments(parser, args.set)
    if args.quick:
        args.settings, args.epochs = ["digits-sym40"], [6]
    if not args.settings:
        parser.error("name at least one setting (or --quick)")
    code = code_version()  # once, before any row: the checkout may move while they run
    return [run_one(setting, method, epochs, args.seed, args.out, overrides, args.tag, code, args.arrays)
            for setting in args.settings for epochs in args.epochs for method in args.methods]


if __name__ == "__main__":
    main()
