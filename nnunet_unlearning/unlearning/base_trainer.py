"""The unlearning trainer: nnU-Net's trainer, started from the original model and driven by a strategy.

It owns everything strategies share: the request, the retain and forget streams (nnU-Net's dataloaders
and augmentation), the optimizer over the parameters the strategy lets change, the guard that keeps
masked entries bit-identical, checkpoints and resumption, the evaluation hook and, when the run config
asks for it, calibrated stopping (``evaluation/calibration.py``). nnU-Net's per-epoch validation keeps
running on the held-out cases. Thin classes in ``trainers/`` bind a strategy and a schedule
(``nnUNetTrainerUnlearnNoisyLabel_50epochs``).
"""

from __future__ import annotations

import contextlib
import copy
import os
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from torch import distributed as dist

from nnunet_unlearning.artifacts import BEST_CHECKPOINT, LATEST_CHECKPOINT, RESUME_STATE_FILE
from nnunet_unlearning.errors import UserInputError
from nnunet_unlearning.evaluation.calibration import Calibration
from nnunet_unlearning.evaluation.clinical_risk import critical_classes
from nnunet_unlearning.evaluation.hook import EvaluationHook
from nnunet_unlearning.evaluation.kept_scores import KeptScores, scores_folder
from nnunet_unlearning.med3d.original_recipe import initial_lr_of, recipe_of
from nnunet_unlearning.nnunet.glue import (
    bare_network,
    case_dataset,
    exit_on_user_error,
    train_loader,
    validation_loader,
)
from nnunet_unlearning.nnunet.mirroring import PlannedMirroringMixin
from nnunet_unlearning.nnunet.progress_plot_interval import ProgressPlotIntervalMixin
from nnunet_unlearning.optim import grouped_sgd
from nnunet_unlearning.records import EvaluationRecord
from nnunet_unlearning.unlearning import distributed
from nnunet_unlearning.unlearning.original_model import load_original_weights
from nnunet_unlearning.unlearning.other_subject_labels import OtherSubjectLabels
from nnunet_unlearning.unlearning.request_run import RequestRunMixin
from nnunet_unlearning.unlearning.resume_state import (
    ResumeState,
    load_resume_state,
    remove_resume_state,
    save_resume_state,
)
from nnunet_unlearning.unlearning.run_config import run_settings, seed_global_rngs
from nnunet_unlearning.unlearning.run_record import RunRecord, guard_settings
from nnunet_unlearning.unlearning.running_statistics import (
    average_running_statistics,
    changed_norms,
    recalibrate,
    stateful_norms,
)
from nnunet_unlearning.unlearning.step import ParameterGuard, prepare_strategy, trainable_parameters, unlearning_step
from nnunet_unlearning.unlearning.strategy import Batch, Strategy, StrategyContext, to_batch

#: Evaluate every N epochs as well as at the start and the end (0: start and end only).
EVAL_EVERY_ENV = "nnUNet_unlearning_eval_every"
#: nnU-Net's validation batches per training step (its 50 per epoch of 250): an unlearning run keeps the
#: ratio, so that a short epoch (a calibrated run checked every 5 steps) does not validate 50 batches.
VALIDATION_PER_STEP = 50 / 250


class _CalibratedStopError(Exception):
    """Raised by a check that stops a calibrated run; ``run_training`` ends the run as a finished one."""


def _cpu_state(network: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().cpu().clone() for key, value in network.state_dict().items()}


class nnUNetTrainerUnlearn(RequestRunMixin, PlannedMirroringMixin, ProgressPlotIntervalMixin, nnUNetTrainer):
    """Base class of every unlearning trainer; subclasses set ``strategy_class`` (and the schedule). Its
    batches are augmented as the original's were: mirrored along the plans' ``mirror_axes`` where they name them."""

    strategy_class: ClassVar[type[Strategy]]
    unlearning_epochs: ClassVar[int] = 20
    #: Retain batches the running statistics of changed normalisation layers are recomputed from (at every
    #: calibration check and at the end; drawn once per run). On the CPU benchmark's original, 10 and 20 batches
    #: gave the check's patch Dice the same spread over draws (0.001–0.003 per set, 8 draws each; 5 batches up
    #: to 0.004), at half the cost (2.0 against 3.8 s a check): `benchmarks/recalibration_batches.py`.
    recalibration_batches: ClassVar[int] = 10

    def _set_up_run(self) -> RunRecord:
        # a checkpoint_latest every epoch: nnU-Net's default (every 50) leaves short runs nothing to resume
        self.save_every = 1
        self._saved_resume_state: ResumeState | None = None
        with exit_on_user_error(self.__class__.__name__):
            self.settings = run_settings(self.request, self.strategy_class)
            if self.continue_training:
                guard_settings(self.output_folder, self.settings)
            self.calibration = self._make_calibration(self.continue_training)
        self.strategy = self.settings.make_strategy(self.strategy_class)
        self._apply_settings()
        self.dataloader_forget: Any = None  # nnU-Net's augmenter, built in get_dataloaders
        #: the retain image batches of every recalibration of this run, drawn at the first (`_recalibration_images`)
        self._recalibration_drawn: list[torch.Tensor] | None = None
        self._calibration_stopped = False  # set by a calibration check that stops the run
        # set by on_train_start, before any step, checkpoint or evaluation reads them
        self.context: StrategyContext
        self.guard: ParameterGuard | None = None
        self.hook: EvaluationHook
        return RunRecord(self.request, self.__class__.__name__, self.strategy, self.settings)

    def _make_calibration(self, continue_training: bool) -> Calibration | None:
        """The calibration's memory when the run config enables it; refuses what it cannot serve."""
        if not self.settings.calibration.enabled or self.request.untouched:
            return None
        if continue_training:
            raise UserInputError(
                f"{self.output_folder}: a calibrated run cannot be resumed with --c (the states it may return "
                "to are held in memory only); start it afresh without --c"
            )
        if not self.request.heldout:
            raise UserInputError(
                f"{self.settings.source}: calibration.enabled: the request has no held-out cases to compare "
                "the forget cases with"
            )
        # retain: the memorisation reference measures the original's retain-over-held-out advantage
        sets = {"forget": self.request.forget, "retain": self.request.retain, "heldout": self.request.heldout}
        return Calibration(self.settings.acceptance, self.settings.calibration, sets)

    def _apply_settings(self) -> None:
        """The run config's schedule, learning rate and seed; an explicit schedule wins over the class name's."""
        trainer = self.settings.trainer
        # an untouched fold never trained on the forget cases: its model is certified as it is
        trains = self.strategy.trains and not self.request.untouched
        self.num_epochs = (trainer.epochs or self.unlearning_epochs) if trains else 0
        if trainer.iterations_per_epoch is not None:
            self.num_iterations_per_epoch = trainer.iterations_per_epoch
        self.num_val_iterations_per_epoch = max(1, round(self.num_iterations_per_epoch * VALIDATION_PER_STEP))
        # the scale is relative to the rate the original trained at
        self.initial_lr = initial_lr_of(self.request.original, self.initial_lr) * self.settings.lr_scale
        seed_global_rngs(trainer.seed + self.local_rank)

    # --- set-up -------------------------------------------------------------------------------------
    def configure_optimizers(self):
        """nnU-Net's optimizer and schedule over the parameters the strategy lets change, in the original's
        parameter groups (a Med3D original's pretrained encoder keeps its slower rate)."""
        network = bare_network(self.network)
        trainable = {id(p) for p in trainable_parameters(network, self.strategy)}
        named = [(name, p) for name, p in network.named_parameters() if id(p) in trainable]
        return grouped_sgd(
            named,
            recipe_of(self.request.original)["parameter_groups"],
            self.initial_lr,
            self.weight_decay,
            self.num_epochs,
        )

    def get_dataloaders(self):
        """(primary stream, held-out validation stream); the forget stream goes to ``dataloader_forget``.

        The primary stream is the retain stream, or the forget stream for strategies that read only
        forget batches; a stream the strategy does not read is never built. A calibrated run that stopped at
        check 0 builds none: (None, None), which nnU-Net's ``on_train_end`` accepts.
        """
        if self._calibration_stopped:
            return None, None
        retain = case_dataset(self, self.request.retain)
        forget = case_dataset(self, self.request.forget)
        if self.strategy.forget_labels == "other_subject":
            # per run seed and rank, and per epoch the run starts at, so a resumed run does not replay the
            # other-subject draws of its first epochs
            seed = np.random.SeedSequence([self.settings.trainer.seed, self.local_rank, self.current_epoch])
            forget = OtherSubjectLabels(forget, retain, seed=int(seed.generate_state(1)[0]))
        streams = {
            name: train_loader(self, dataset)
            for name, dataset, used in (
                ("retain", retain, self.strategy.uses_retain),
                ("forget", forget, self.strategy.uses_forget),
            )
            if used
        }
        self.dataloader_forget = streams.get("forget") if "retain" in streams else None
        primary = streams["retain"] if "retain" in streams else streams["forget"]
        _, heldout = self.do_split()
        return primary, validation_loader(self, case_dataset(self, heldout))

    def on_train_start(self):
        """Load the original, evaluate it and, in a calibrated run, check it before any data is loaded.

        Check 0 runs before nnU-Net's ``on_train_start`` builds the dataloaders and starts their augmentation
        workers (most of a short run's wall time on the CPU profile): a run whose original already meets the
        test stops without them, and nnU-Net's start then only writes the model folder's plans and dataset.
        """
        resumed = self.current_epoch > 0
        if not self.was_initialized:
            self.initialize()
        with exit_on_user_error(self.__class__.__name__):
            original_weights = load_original_weights(
                self.request, self.plans_manager.plans, self.configuration_name, self.fold, bare_network(self.network)
            )
        if not resumed:
            bare_network(self.network).load_state_dict(original_weights)
        self._original_weights = original_weights
        self._open_record()
        self.hook = self._make_hook()
        # a check's scores: the hook's own, or its patch form (`patch_hook`) under calibration.scores "patches"
        self.check_hook = self.hook
        if self.calibration is not None and self.calibration.settings.scores == "patches":
            self.check_hook = self._make_hook(self.calibration.settings.patches_per_case)
        self._steps_taken = self.current_epoch * self.num_iterations_per_epoch
        if not resumed:
            # the original's weights: their scores from an earlier request against this checkpoint are reused
            start = self._evaluate("start", kept=self._kept_scores())
            if self.calibration is not None:
                # check 0 is the original: its weights, and its running statistics as they are (none changed);
                # it stops the run when the original meets the test, or scores the forget cases below it
                network = bare_network(self.network)
                check = start  # None on ranks other than 0, which only follow rank 0's decision
                if self.check_hook is not self.hook and self.local_rank == 0:
                    # the original's patch scores too are kept from an earlier request against this checkpoint
                    check = self._check_scores(network, "start", kept=self._kept_scores())
                original = (_cpu_state(network), self._recalibrated(network, False), start)
                self._decide(check, original, last=False)
        super().on_train_start()  # the dataloaders, unless check 0 stopped the run (``get_dataloaders``)
        if self._calibration_stopped:
            raise _CalibratedStopError
        if self.request.untouched:
            self.num_epochs = 0  # also when a schedule was set after construction (nnU-Net's loop reads it now)
            self.print_to_log_file(
                f"fold {self.fold} never trained on {', '.join(self.request.forget)} (its validation split): "
                "nothing to unlearn, the model is kept as it is"
            )
            self.record.save(self.output_folder)
            return
        self.context = self._make_context(original_weights)
        with exit_on_user_error(self.__class__.__name__):
            self._prepare_strategy(original_weights, resumed)
            if resumed:
                self._restore_resume_state()
        self.record.save(self.output_folder)  # an interruption from here on keeps the preparation's time

    def _make_context(self, original_weights: dict) -> StrategyContext:
        original = None
        if self.strategy.needs_original:
            original = copy.deepcopy(bare_network(self.network))
            original.load_state_dict(original_weights)
            original.eval().requires_grad_(False)
        generator = torch.Generator(device=self.device).manual_seed(self.settings.trainer.seed + self.local_rank)
        return StrategyContext(
            num_classes=self.label_manager.num_segmentation_heads,
            ignore_label=self.label_manager.ignore_label,
            task_loss=self.loss,
            forget_batches=lambda: self._stream("forget"),
            retain_batches=lambda: self._stream("retain"),
            original=original,
            critical_classes=critical_classes(self.dataset_json),
            all_reduce_sum=distributed.all_reduce_sum,
            world_size=distributed.world_size(),
            generator=generator,
        )

    def _stream(self, name: str):
        """Endless batches of the forget or retain stream, for statistics a strategy computes in prepare."""
        declared = self.strategy.uses_forget if name == "forget" else self.strategy.uses_retain
        if not declared:
            raise RuntimeError(
                f"strategy {self.strategy.name} asked for {name} batches it does not declare "
                f"(uses_{name} is False), so no {name} stream was built"
            )
        primary_is_forget = not self.strategy.uses_retain
        loader = self.dataloader_train if (name == "forget") == primary_is_forget else self.dataloader_forget
        while True:
            yield to_batch(next(loader), self.device)

    def _prepare_strategy(self, original_weights: dict, resumed: bool) -> None:
        """Run the strategy's preparation; on resumption, on a throwaway copy of the original model.

        A resumed run must not re-apply weight edits (a re-initialised encoder, dampened weights), but it
        needs the same teachers and masks; the update mask of the first run is restored from its record.
        """
        start = time.perf_counter()
        network = bare_network(self.network)
        target = network
        if resumed:
            target = copy.deepcopy(network)
            target.load_state_dict(original_weights)
        prepare_strategy(self.strategy, target, self.context)
        if self.is_ddp and not resumed:
            for tensor in network.state_dict().values():
                dist.broadcast(tensor, src=0)
        masks = self.record.saved_update_mask(self.output_folder) if resumed else self.strategy.update_mask()
        self.guard = ParameterGuard(network, masks)
        if not resumed:  # a resumed run redoes the preparation for its teachers only: its time was counted
            self.record.save_update_mask(self.output_folder, masks)
            self.record.prepare_seconds += time.perf_counter() - start

    # --- checkpoints and resumption ------------------------------------------------------------------
    def save_checkpoint(self, filename: str) -> None:
        """nnU-Net's checkpoints, except the best-pseudo-Dice one; the latest comes with the run's state.

        nnU-Net's ``checkpoint_best.pth`` is the epoch with the best held-out pseudo-Dice, in an unlearning
        run typically an early, barely unlearned state: it is never written, so the folder holds no model
        but the certified ``checkpoint_final.pth`` (and, while the run is unfinished, the resumable latest;
        a calibrated run, which cannot be resumed, writes none).
        """
        name = Path(filename).name
        if name == BEST_CHECKPOINT or (name == LATEST_CHECKPOINT and self.calibration is not None):
            return  # a calibrated run cannot be resumed: its latest would cost a write every check for nothing
        if name == LATEST_CHECKPOINT and self.local_rank == 0 and not self.disable_checkpointing:
            save_resume_state(self.output_folder, self._resume_state())
        super().save_checkpoint(filename)

    def load_checkpoint(self, filename_or_checkpoint) -> None:
        super().load_checkpoint(filename_or_checkpoint)
        if isinstance(filename_or_checkpoint, str) and Path(filename_or_checkpoint).name == LATEST_CHECKPOINT:
            with exit_on_user_error(self.__class__.__name__):
                self._saved_resume_state = load_resume_state(self.output_folder, self.current_epoch)

    def _resume_state(self) -> ResumeState:
        """What an uninterrupted run carries from one epoch into the next, besides nnU-Net's checkpoint."""
        generator = self.context.generator
        return ResumeState(
            epoch=self.current_epoch + 1,
            steps_taken=self._steps_taken,
            generator=generator.get_state() if generator is not None else None,
            strategy=self.strategy.resumable_state_dict(),
        )

    def _restore_resume_state(self) -> None:
        state = self._saved_resume_state
        if state is None:
            raise UserInputError(
                f"{self.output_folder}: resuming needs {LATEST_CHECKPOINT} and its "
                f"{RESUME_STATE_FILE}; restart the run without --c"
            )
        self._steps_taken = state.steps_taken
        if state.generator is not None and self.context.generator is not None:
            self.context.generator.set_state(state.generator)
        self.strategy.load_resumable_state_dict(state.strategy)

    # --- training ------------------------------------------------------------------------------------
    def on_train_epoch_start(self):
        super().on_train_epoch_start()
        self._epoch_started = time.perf_counter()

    def train_step(self, batch: dict) -> dict:
        primary = to_batch(batch, self.device)
        if self.strategy.uses_retain:
            retain, forget = primary, self._forget_batch() if self.strategy.uses_forget else None
        else:  # the primary stream is the forget stream
            retain, forget = None, primary
        steps = self.num_epochs * self.num_iterations_per_epoch
        self.context.progress = min(1.0, self._steps_taken / max(steps - 1, 1))
        loss = unlearning_step(
            self.network, self.strategy, self.optimizer, retain, forget, self.context, self.guard, self.grad_scaler
        )
        self._steps_taken += 1
        return {"loss": np.array(loss)}

    def _forget_batch(self) -> Batch:
        """The step's forget batch: ``forget_batches_per_step`` batches of the forget stream, concatenated.

        One larger batch rather than several steps' worth keeps every strategy's loss as it is: a mean over
        the forget patches, from more of them.
        """
        batches = [
            to_batch(next(self.dataloader_forget), self.device)
            for _ in range(self.settings.trainer.forget_batches_per_step)
        ]
        if len(batches) == 1:
            return batches[0]
        return Batch(
            data=torch.cat([b.data for b in batches]),
            target=[torch.cat(scale) for scale in zip(*(b.target for b in batches), strict=True)],
            keys=[key for b in batches for key in b.keys],
        )

    def on_epoch_end(self):
        self.record.train_seconds += time.perf_counter() - self._epoch_started
        every = int(os.environ.get(EVAL_EVERY_ENV, "0") or 0)
        finished_epoch = self.current_epoch + 1
        super().on_epoch_end()
        if finished_epoch == self.num_epochs:
            return  # the last state is evaluated (and, in a calibrated run, checked) in on_train_end
        if self.calibration is not None:
            if finished_epoch % self.calibration.settings.check_every == 0 and self._calibration_check(last=False):
                raise _CalibratedStopError
        elif every > 0 and finished_epoch % every == 0:
            self._evaluate(f"epoch_{finished_epoch}")

    def run_training(self):
        """nnU-Net's loop; a calibrated run that stops early leaves it and ends as a finished run does."""
        try:
            super().run_training()
        except _CalibratedStopError:
            self.on_train_end()

    def on_train_end(self):
        self.record.steps_taken = self._steps_taken
        self.record.strategy_state = self.strategy.resumable_state_dict()
        if self.calibration is None:
            self.record.running_statistics = self._recalibrated(bare_network(self.network), across_ranks=True)
            self._evaluate("end")
        else:
            if not self._calibration_stopped:
                self._calibration_check(last=True)
            kept, kept_epoch = self._restore_kept_state()
            if kept is None and kept_epoch is not None:
                # the check scored patches: the certified model's whole-volume scores, at its check's epoch (rank
                # 0 only, as every kept value: the other ranks meet it at the barrier below)
                self._score(bare_network(self.network), "end", kept_epoch)
            elif kept is not None:
                # the certified model was scored at its check (recorded at that check's epoch): the same
                # network, the same deterministic sliding window, so that evaluation is the end's
                end = kept.copy()
                end["tag"] = "end"
                end["seconds"] = 0.0  # reused: counting its cost twice would put the evaluations above the wall time
                self.record.add(end, self.output_folder)
                self.print_to_log_file("unlearning evaluation 'end': the kept check's, " + self.record.brief(end))
            if self.is_ddp:
                dist.barrier()
        if hasattr(self.dataloader_forget, "_finish"):
            self.dataloader_forget._finish()  # its augmentation workers, as nnU-Net's on_train_end ends its own
        super().on_train_end()
        remove_resume_state(self.output_folder)
        self._close_record()

    def _recalibrated(self, network: torch.nn.Module, across_ranks: bool) -> dict:
        """Recompute the running statistics of the layers of ``network`` the run changed from retain batches
        only; return what was done, for the record. ``across_ranks``: average them over DDP ranks.

        See ``running_statistics.py``: no step let any batch into them, so they still hold the original's.
        """
        start = time.perf_counter()
        layers = changed_norms(network, self._original_weights)
        used = 0
        if layers:
            images = self._recalibration_images()
            used = recalibrate(network, layers, (i.to(self.device, non_blocking=True) for i in images), len(images))
            if across_ranks and self.is_ddp:
                average_running_statistics(network, layers)
        return {
            "policy": "unchanged by every step; layers whose parameters changed recalibrated on retain batches",
            "recalibrated_layers": len(layers),
            "kept_layers": len(stateful_norms(network)) - len(layers),
            "batches": used,
            "seconds": round(time.perf_counter() - start, 3),
        }

    def _recalibration_images(self) -> list[torch.Tensor]:
        """The ``recalibration_batches`` retain image batches ``(B, C, *patch)`` (on the CPU) that every
        recalibration of this run reads: drawn from the run's retain stream at the first recalibration and kept,
        so that each calibration check's copy and the end are recalibrated on the same batches (two checks then
        differ by their weights only, and no later check augments or loads anything: 0.6 s a check on the CPU
        profile). A strategy that reads no retain batches (GradientAscent) gets a retain stream for this draw
        alone, finished at once. A resumed run draws its batches again."""
        if self._recalibration_drawn is None:
            loader = self.dataloader_train
            if not self.strategy.uses_retain:
                loader = train_loader(self, case_dataset(self, self.request.retain))
            self._recalibration_drawn = [next(loader)["data"].cpu() for _ in range(self.recalibration_batches)]
            if loader is not self.dataloader_train and hasattr(loader, "_finish"):
                loader._finish()  # its augmentation workers
        return self._recalibration_drawn

    # --- calibrated stopping ------------------------------------------------------------------------
    def _calibration_check(self, last: bool) -> bool:
        """Check the model as the run would certify it now (a copy, its changed running statistics
        recalibrated) and return whether the run stops; evaluated on rank 0, the answer sent to every rank."""
        evaluation, state = None, None
        if self.local_rank == 0:
            started = time.perf_counter()
            with self._without_deep_supervision():
                candidate = copy.deepcopy(bare_network(self.network))
            statistics = self._recalibrated(candidate, across_ranks=False)
            tag = f"epoch_{self.current_epoch}"
            volumes = self.check_hook is self.hook
            evaluation = self._score(candidate, tag) if volumes else self._check_scores(candidate, tag)
            # what the run records as its end if it keeps this state: the whole-volume evaluation, or None
            # when the check scored patches (the end then evaluates the kept state afresh)
            state = (_cpu_state(candidate), statistics, evaluation if volumes else None)
            del candidate
            # the check's copy, recalibration and kept state cost evaluation time too (its scoring is counted)
            self.record.check_seconds += time.perf_counter() - started - evaluation["seconds"]
        return self._decide(evaluation, state, last)

    def _decide(self, evaluation: EvaluationRecord | None, state: object, last: bool) -> bool:
        """Add rank 0's check (``state``: what the run returns to if it keeps this check) and decide."""
        stop = [False]
        if self.local_rank == 0 and evaluation is not None and self.calibration is not None:
            decision = self.calibration.add(evaluation, self._steps_taken, lambda: state, last)
            self.record.calibration = self.calibration.to_json()
            self.record.save(self.output_folder)
            newest = self.calibration.checks[-1]
            self.print_to_log_file(
                f"calibration check after {newest.steps} steps: forget {newest.test.score} "
                f"{newest.test.forget_mean:.4f}, {newest.test.band_name} {newest.test.target:.4f} ± "
                f"{newest.test.half_width:.4f} ({newest.test.state.replace('_', ' ')}); retain "
                f"{100 * newest.utility.retain_ratio:.1f} %, held-out {100 * newest.utility.heldout_ratio:.1f} % "
                f"of the original's Dice; " + ("stop: " + str(decision.reason) if decision.stop else "go on")
            )
            stop = [decision.stop]
        if self.is_ddp:
            dist.broadcast_object_list(stop, src=0)
        self._calibration_stopped = bool(stop[0])
        return self._calibration_stopped

    def _restore_kept_state(self) -> tuple[EvaluationRecord | None, int | None]:
        """Load the state the calibration keeps (already recalibrated when it was checked) into the network;
        return its whole-volume evaluation at that check (None when the check scored patches) and the check's
        epoch (rank 0; ``(None, None)`` elsewhere)."""
        network = bare_network(self.network)
        evaluation, epoch = None, None
        if self.local_rank == 0 and self.calibration is not None:
            weights, statistics, evaluation = self.calibration.kept_state()
            kept = self.calibration.kept_check()
            epoch = kept.epoch if kept is not None else None
            network.load_state_dict(weights)
            self.record.running_statistics = statistics
            self.record.calibration = self.calibration.to_json()
        if self.is_ddp:
            for tensor in network.state_dict().values():
                dist.broadcast(tensor, src=0)
        return evaluation, epoch

    def _kept_scores(self) -> KeptScores:
        """The per-case scores kept for the checkpoint this run starts from (`evaluation.kept_scores`)."""
        return KeptScores(
            scores_folder(Path(self.output_folder_base).parent),
            self.request.original.checkpoint_sha256,
            Path(self.preprocessed_dataset_folder),
        )

    def _score(
        self, network: torch.nn.Module, tag: str, epoch: int | None = None, kept: KeptScores | None = None
    ) -> EvaluationRecord:
        """Evaluate ``network`` with the hook (rank 0 only), record it at ``epoch`` (default: the current one)
        and return its JSON. ``kept``: scores kept for exactly these weights (the start evaluation's)."""
        with self._without_deep_supervision():
            evaluation = self.hook.evaluate(network, tag, self.current_epoch if epoch is None else epoch, kept)
        record = evaluation.to_json()
        self.record.add(record, self.output_folder)
        self.print_to_log_file(f"unlearning evaluation '{tag}': " + self.record.brief(record))
        return record

    @contextlib.contextmanager
    def _without_deep_supervision(self):
        """The network outputs only its full-resolution logits inside (a hook's prediction, a copy to check)."""
        self.set_deep_supervision_enabled(False)
        try:
            yield
        finally:
            self.set_deep_supervision_enabled(self.enable_deep_supervision)

    def _check_scores(self, network: torch.nn.Module, tag: str, kept: KeptScores | None = None) -> EvaluationRecord:
        """A check's patch scores of ``network`` (rank 0): read by the calibration (its checks record the
        trajectory), not added to the run's whole-volume evaluations. ``kept``: as for `_score`."""
        with self._without_deep_supervision():
            evaluation = self.check_hook.evaluate(network, tag, self.current_epoch, kept).to_json()
        self.record.check_seconds += evaluation["seconds"]
        return evaluation

    def _evaluate(self, tag: str, epoch: int | None = None, kept: KeptScores | None = None) -> EvaluationRecord | None:
        """Evaluate the network as it is (rank 0); return the evaluation's JSON there, None elsewhere."""
        evaluation = self._score(bare_network(self.network), tag, epoch, kept) if self.local_rank == 0 else None
        if self.is_ddp:
            dist.barrier()
        return evaluation
