"""How good an original model the CPU profile can train: decoder width and schedule vs held-out Dice.

    .venv/bin/python benchmarks/cpu_original.py --workdir /work/bench_run

Needs a folder where ``nnunet-unlearning benchmark`` has converted, planned and split MRBrainS18 (its
``--workdir``). Per variant it writes Med3D ResNet-10 plans over the same preprocessed data (a new plans
file; the benchmark's are untouched), trains ``nnUNetTrainerMed3D_scratch`` on the benchmark's five
training subjects (two trainings side by side, one torch thread each, as the benchmark runs), predicts the
two held-out subjects with ``nnUNetv2_predict`` and scores them with the MRBrainS18 protocol (labels 1–8).
Everything goes under ``<workdir>/cpu_original/``; the table goes to standard output.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

from nnunet_unlearning.artifacts import FINAL_CHECKPOINT
from nnunet_unlearning.evaluation.evaluate_folders import evaluate_folders
from nnunet_unlearning.med3d.network import DEFAULT_DECODER_CHANNELS
from nnunet_unlearning.med3d.plans import plan_med3d
from nnunet_unlearning.nnunet.trainers_dir import trainers_dir
from nnunet_unlearning.workflows import benchmark_design as design
from nnunet_unlearning.workflows import profiles
from nnunet_unlearning.workflows.benchmark import DATASET_ID, DATASET_NAME
from nnunet_unlearning.workflows.benchmark_runs import FOLD, Run, train_runs

TRAINER = "nnUNetTrainerMed3D_scratch"
ITERATIONS = 40
#: (plans name, decoder channels, epochs): the CPU profile's narrow decoder before the tissue recipe (the
#: test suite's today), twice its schedule, the recipe's widths, nnU-Net-like widths
VARIANTS = (
    ("nnUNetMed3DCpuNarrow20Plans", profiles.TESTS.med3d_decoder, 20),
    ("nnUNetMed3DCpuNarrow40Plans", profiles.TESTS.med3d_decoder, 40),
    ("nnUNetMed3DCpuMid20Plans", (16, 32, 64, 64, 64), 20),
    ("nnUNetMed3DCpuDefault20Plans", None, 20),  # the network's default decoder (32 … 320)
)
EPOCH_TIME = re.compile(r"Epoch time: ([\d.]+) s")


def _predict(run: Run, images: Path, out: Path) -> None:
    command = [
        str(Path(sys.executable).with_name("nnUNetv2_predict")),
        "-i",
        str(images),
        "-o",
        str(out),
        "-d",
        str(DATASET_ID),
        "-c",
        run.configuration,
        "-f",
        str(FOLD),
        "-p",
        run.plans,
        "-tr",
        run.trainer,
        "-chk",
        FINAL_CHECKPOINT,
        "-device",
        "cpu",
        "-npp",
        "1",
        "-nps",
        "1",
        "--disable_tta",
    ]
    subprocess.run(command, check=True, capture_output=True, env={**os.environ, "nnUNet_results": str(run.results)})


def _held_out_inputs(raw: Path, folder: Path) -> tuple[Path, Path]:
    """Links to the held-out subjects' images and labels (nnUNetv2_predict reads a whole folder)."""
    images, labels = folder / "images", folder / "labels"
    for path in (images, labels):
        path.mkdir(parents=True, exist_ok=True)
    for subject in design.DEFAULT.heldout:
        case = design.case_id(subject)
        for source in [*(raw / "imagesTr").glob(f"{case}_0*.nii.gz"), raw / "labelsTr" / f"{case}.nii.gz"]:
            link = (images if source.parent.name == "imagesTr" else labels) / source.name
            if not link.exists():
                link.symlink_to(source)
    return images, labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True, help="an earlier benchmark's --workdir")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    workdir = args.workdir.resolve()
    raw = workdir / "nnUNet_raw" / DATASET_NAME
    if not (workdir / "nnUNet_preprocessed" / DATASET_NAME / "splits_final.json").is_file():
        sys.exit(f"{workdir}: no prepared benchmark here; run `nnunet-unlearning benchmark` with this --workdir")
    environment = {
        "nnUNet_raw": str(workdir / "nnUNet_raw"),
        "nnUNet_preprocessed": str(workdir / "nnUNet_preprocessed"),
        "nnUNet_compile": "false",
        "nnUNet_n_proc_DA": "0",
        "nnUNet_extTrainer": str(trainers_dir()),
    }
    os.environ.update(environment)
    runs = []
    for plans, decoder, epochs in VARIANTS:
        plan_med3d(
            DATASET_ID,
            profiles.CONFIGURATION,
            depth=profiles.MED3D_DEPTH,
            name=plans,
            decoder_channels=DEFAULT_DECODER_CHANNELS if decoder is None else decoder,
        )
        # one results folder per variant: each run's console log goes beside it
        results = workdir / "cpu_original" / plans / "nnUNet_results"
        runs.append(Run(TRAINER, DATASET_NAME, profiles.CONFIGURATION, plans, epochs, ITERATIONS, results))
    failures = train_runs(runs, environment, "cpu", args.jobs)
    if failures:
        sys.exit("\n".join(failures))

    images, labels = _held_out_inputs(raw, workdir / "cpu_original" / "held_out")
    print(
        "\n| plans | decoder channels | epochs × iterations | s per epoch (median) | held-out Dice (1–8) | "
        "per class 1–8 |\n|---|---|---|---|---|---|"
    )
    for run, (_, decoder, _) in zip(runs, VARIANTS):
        predictions = workdir / "cpu_original" / "predictions" / run.plans
        _predict(run, images, predictions)
        mean = json.loads(
            evaluate_folders(labels, predictions, "mrbrains18", out=predictions / "metrics.json").read_text()
        )["mean"]
        per_class = " / ".join(f"{c['dice']:.2f}" for c in mean["per_class"].values())
        epoch_s = statistics.median(
            float(t) for t in EPOCH_TIME.findall(next(run.folder.glob("training_log_*")).read_text())
        )
        print(
            f"| {run.plans} | {list(decoder) if decoder else 'default'} | {run.epochs} × {run.iterations} | "
            f"{epoch_s:.1f} | {mean['dice']:.3f} | {per_class} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
