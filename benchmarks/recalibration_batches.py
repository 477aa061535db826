"""How many retain batches a recalibration of the running statistics needs: the patch scores a calibration check
reads, after recalibrating on 5, 10 and 20 batches, over independent draws of the batches.

    .venv/bin/python benchmarks/recalibration_batches.py --workdir BENCHMARK_WORKDIR --subject 5

Needs a benchmark workdir whose original (replicate 0) has finished (`nnunet-unlearning benchmark`). Builds the
unlearning trainer of ``--strategy`` for forget ``--subject`` in this process as ``nnUNetv2_train`` would (its
start: the original loaded, nnU-Net's dataloaders, the start evaluation), then, for each batch count and each
of ``--draws`` draws, recalibrates every BatchNorm layer of a copy of the original on that many retain batches of
the run's own training stream (`unlearning.running_statistics.recalibrate`, as a check does for the layers a run
changed) and scores the copy with the check's patch hook (`evaluation.patch_hook`, the profile's patches per
case). The original is the stand-in for an unlearned model: the spread comes from the batches drawn, not from
the weights. Prints, per batch count, the recalibration's median seconds and the mean and standard deviation
over draws of the forget, retain and held-out patch Dice, and of each case's. Measures, asserts nothing.
"""

import argparse
import copy
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from nnunet_unlearning.evaluation.calibration import CalibrationSettings
from nnunet_unlearning.nnunet.glue import bare_network
from nnunet_unlearning.nnunet.inprocess import make_trainer, set_schedule
from nnunet_unlearning.nnunet.trainers_dir import find_trainer
from nnunet_unlearning.request import REQUEST_ENV, write_request
from nnunet_unlearning.unlearning.running_statistics import recalibrate, stateful_norms
from nnunet_unlearning.unlearning.strategy import to_batch
from nnunet_unlearning.workflows import benchmark, profiles
from nnunet_unlearning.workflows.original_trainer import original_trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True, help="a benchmark workdir with a finished original")
    parser.add_argument("--subject", default="5", help="the forget subject (default 5)")
    parser.add_argument("--strategy", default="L1Sparse", help="whose trainer builds the stream (default L1Sparse)")
    parser.add_argument("--batches", type=int, nargs="+", default=[5, 10, 20])
    parser.add_argument("--draws", type=int, default=4)
    parser.add_argument("--out", type=Path, default=Path("recalibration_batches"), help="the trainer's folder")
    args = parser.parse_args()
    workdir, out = args.workdir.resolve(), args.out.resolve()
    profile = profiles.PROFILES["cpu"]
    os.environ.update({name: str(workdir / name) for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")})
    os.environ["nnUNet_compile"] = "false"
    os.environ["nnUNet_n_proc_DA"] = str(profiles.CPU.unlearning_augmentation_workers)
    original, _ = original_trainer(profile.scratch_trainer)
    forget = [f"MRBrainS18_{args.subject}"]
    request = write_request(
        benchmark.DATASET_ID, profiles.CONFIGURATION, "0", profiles.MED3D_PLANS, original, forget, out=out / "req.json"
    )
    os.environ[REQUEST_ENV] = str(request)
    os.environ["nnUNet_results"] = str(out)  # the trainer's own folder; the request names the original's
    profiles.use_cpu_threads()
    trainer = make_trainer(find_trainer(f"nnUNetTrainerUnlearn{args.strategy}"), benchmark.DATASET_NAME,
                           profiles.CONFIGURATION, 0, profiles.MED3D_PLANS)  # fmt: skip
    set_schedule(trainer, 1, 1)
    trainer.on_train_start()
    network = bare_network(trainer.network)
    hook = trainer._make_hook(patches_per_case=CalibrationSettings().patches_per_case)
    layers = list(stateful_norms(network))
    sets = {name: list(cases) for name, cases in hook.case_sets.items()}
    print(f"{len(layers)} stateful normalisation layers; forget {sets['forget']}; {torch.get_num_threads()} thread(s)")
    with torch.no_grad():
        for count in args.batches:
            seconds, dice = [], []
            for _ in range(args.draws):
                with trainer._without_deep_supervision():  # as a check copies it: one output, the full-size one
                    candidate = copy.deepcopy(network)
                started = time.perf_counter()
                recalibrate(candidate, layers, (to_batch(b, trainer.device).data for b in trainer.dataloader_train),
                            count)  # fmt: skip
                seconds.append(time.perf_counter() - started)
                scores = hook.evaluate(candidate, "recalibrated", 0)
                dice.append({case: metrics.mean("dice") for case, metrics in scores.cases.items()})
            by_set = {name: [float(np.mean([draw[c] for c in cases])) for draw in dice] for name, cases in sets.items()}
            case_sd = {case: float(np.std([draw[case] for draw in dice], ddof=1)) for case in dice[0]}
            print(
                f"{count} batches: {statistics.median(seconds):.2f} s; "
                + "; ".join(
                    f"{name} {np.mean(values):.4f} ± {np.std(values, ddof=1):.4f}" for name, values in by_set.items()
                )
                + f"; per-case SD median {np.median(list(case_sd.values())):.4f}, largest {max(case_sd.values()):.4f}",
                flush=True,
            )
    trainer.on_train_end()


if __name__ == "__main__":
    main()
