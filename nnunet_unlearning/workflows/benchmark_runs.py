"""Train the benchmark's models: each run in a fresh worker process, several side by side.

A run is one ``nnUNetv2_train``-equivalent training (the trainer found by name as nnU-Net finds it), with
its own ``nnUNet_results`` and, for unlearning and retraining, its own request file. A run whose fold
folder already holds ``checkpoint_final.pth`` is finished and skipped, so an interrupted benchmark
continues where it stopped; an unfinished folder is the benchmark's own partial output and is replaced.

How runs are executed (`executor`): here, ``jobs`` at a time (`train_runs`); as command lines for a scheduler
(`write_commands`: each an ``nnUNetv2_train`` call with its environment, for a SLURM array, say), after which
the benchmark stops until it is called again; or not at all (collect: unfinished runs are reported missing).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

from nnunet_unlearning.artifacts import FINAL_CHECKPOINT
from nnunet_unlearning.files import atomic_write_text
from nnunet_unlearning.request import REQUEST_ENV
from nnunet_unlearning.unlearning.run_config import CONFIG_ENV

FOLD = 0


@dataclass(frozen=True)
class Run:
    """One training of the benchmark. ``results``: its ``nnUNet_results``; ``request``: its request file;
    ``config``: its run config (docs/unlearning.md), ``variant`` what that config changes, in words;
    ``augmentation_workers``: its ``nnUNet_n_proc_DA`` (None: the environment's)."""

    trainer: str
    dataset_name: str
    configuration: str
    plans: str
    epochs: int
    iterations: int
    results: Path
    request: Path | None = None
    config: Path | None = None
    variant: str = ""
    augmentation_workers: int | None = None

    @property
    def folder(self) -> Path:
        """nnU-Net's fold folder of the run."""
        return self.results / self.dataset_name / f"{self.trainer}__{self.plans}__{self.configuration}" / f"fold_{FOLD}"

    @property
    def finished(self) -> bool:
        return (self.folder / FINAL_CHECKPOINT).is_file()


def train_run(run: Run, environment: dict[str, str], device: str, side_by_side: int = 1) -> float:
    """Train ``run`` in this process; return its wall time in seconds. ``environment``: nnU-Net's folders
    and settings, applied before nnU-Net is used; ``side_by_side``: trainings sharing the CPU with this one
    (`profiles.cpu_threads`)."""
    os.environ.update(environment)
    os.environ["nnUNet_results"] = str(run.results)
    if run.request is not None:
        os.environ[REQUEST_ENV] = str(run.request)
    if run.config is not None:
        os.environ[CONFIG_ENV] = str(run.config)
    if run.augmentation_workers is not None:
        os.environ["nnUNet_n_proc_DA"] = str(run.augmentation_workers)
    from nnunet_unlearning.nnunet.inprocess import train
    from nnunet_unlearning.nnunet.trainers_dir import find_trainer
    from nnunet_unlearning.workflows import profiles

    profiles.use_cpu_threads(side_by_side)
    if run.folder.exists():
        shutil.rmtree(run.folder)  # an interrupted run of this benchmark: start it again
    log = run.results.parent / "logs" / f"{run.trainer}.txt"
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    # side-by-side runs would interleave nnU-Net's epoch lines; each run's console goes to its own file
    with log.open("w") as stream, contextlib.redirect_stdout(stream):
        train(
            find_trainer(run.trainer),
            run.dataset_name,
            run.configuration,
            run.plans,
            run.epochs,
            run.iterations,
            fold=FOLD,
            device=device,
        )
    return time.perf_counter() - started


def train_runs(
    runs: Sequence[Run], environment: dict[str, str], device: str, jobs: int, progress: Callable[[str], None] = print
) -> list[str]:
    """Train every unfinished run, ``jobs`` at a time, each in a fresh spawned process (nnU-Net keeps state
    in module globals and torch in its thread pool, so no process trains twice).

    A run that fails does not stop the others: returns one line per failed run (trainer, forget set and the
    error), for the benchmark to report.
    """
    todo = [run for run in runs if not run.finished]
    skipped = len(runs) - len(todo)
    if skipped:
        progress(f"    {skipped} run(s) already finished, skipped")
    failures: list[str] = []
    if not todo:
        return failures
    from nnunet_unlearning.workflows import profiles

    side_by_side = min(jobs, len(todo))
    profiles.cpu_threads(side_by_side)  # a bad thread setting is refused here, not once per run
    with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn"), max_tasks_per_child=1) as pool:
        futures = {pool.submit(train_run, run, environment, device, side_by_side): run for run in todo}
        for done, future in enumerate(as_completed(futures), start=1):
            run = futures[future]
            where = f"{run.trainer} ({run.results.parent.name})"
            try:
                progress(f"    [{done}/{len(todo)}] {where}: {future.result():.0f} s")
            except (Exception, SystemExit) as error:  # one failed training is reported, not fatal
                failures.append(f"{where}: {type(error).__name__}: {error}".splitlines()[0])
                progress(f"    [{done}/{len(todo)}] FAILED {failures[-1]} (log: {run.results.parent / 'logs'})")
    return failures


class RunsPendingError(Exception):
    """The runs the benchmark needs next were written as command lines (``path``, ``count`` of them); it goes on
    when called again after they have run."""

    def __init__(self, path: Path, count: int) -> None:
        super().__init__(f"{count} command(s) written to {path}")
        self.path, self.count = path, count


def command_line(run: Run, environment: Mapping[str, str], device: str) -> str:
    """``run`` as one shell line: ``env`` with nnU-Net's folders, the run's ``nnUNet_results``, request and run
    config and our trainers' folder, then ``nnUNetv2_train``; the schedule is the trainer's own."""
    from nnunet_unlearning.nnunet.trainers_dir import trainers_dir

    variables = {**environment, "nnUNet_results": str(run.results), "nnUNet_extTrainer": str(trainers_dir())}
    if run.request is not None:
        variables[REQUEST_ENV] = str(run.request)
    if run.config is not None:
        variables[CONFIG_ENV] = str(run.config)
    if run.augmentation_workers is not None:
        variables["nnUNet_n_proc_DA"] = str(run.augmentation_workers)
    train = ["nnUNetv2_train", run.dataset_name, run.configuration, str(FOLD), "-tr", run.trainer, "-p", run.plans]
    words = ["env", *(f"{k}={v}" for k, v in sorted(variables.items())), *train, "-device", device]
    return " ".join(shlex.quote(word) for word in words)


def write_commands(runs: Sequence[Run], environment: Mapping[str, str], device: str, path: Path) -> list[str]:
    """Write the unfinished runs' command lines to ``path``, one per line, and raise `RunsPendingError`; return
    no failure when every run has finished."""
    todo = [run for run in runs if not run.finished]
    if not todo:
        return []
    lines = [command_line(run, environment, device) for run in todo]
    atomic_write_text(path, "\n".join(lines) + "\n")
    raise RunsPendingError(path, len(lines))


def missing_runs(runs: Sequence[Run]) -> list[str]:
    """Collect: train nothing; one line per unfinished run, reported like a failed one."""
    return [f"{run.trainer} ({run.results.parent.name}): not finished" for run in runs if not run.finished]


def executor(
    environment: Mapping[str, str], device: str, jobs: int, commands: Path | None = None, collect: bool = False
) -> Callable[[Sequence[Run]], list[str]]:
    """How the benchmark executes a batch of runs (module doc): returns one line per run that failed or is
    missing."""
    if collect:
        return missing_runs
    if commands is not None:
        return lambda runs: write_commands(runs, environment, device, commands)
    return lambda runs: train_runs(runs, dict(environment), device, jobs)
