"""The evaluation hook's scores for a trained model folder: what an unlearning run records for the model it
trains, for a model that had no hook (an original, or any nnU-Net model).

The benchmark scores its reseeded originals with it, so that their Dice and membership scores come from the
same code, the same grid and the same predictor settings (no mirroring) as every run's own evaluations.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from nnunet_unlearning.artifacts import ModelFolder
from nnunet_unlearning.errors import UserInputError
from nnunet_unlearning.evaluation.clinical_risk import critical_classes
from nnunet_unlearning.evaluation.hook import Evaluation, EvaluationHook
from nnunet_unlearning.nnunet.glue import trained_predictor


def evaluate_model_folder(
    folder: Path, case_sets: Mapping[str, Sequence[str]], device: str = "cpu", tag: str = "model"
) -> Evaluation:
    """Score the final checkpoint in ``folder`` (an nnU-Net fold folder) on named sets of preprocessed cases.

    Args:
        folder: the model's fold folder; its plans name the preprocessed data, read from ``$nnUNet_preprocessed``.
        case_sets: set name → case ids (e.g. forget / retain / heldout).
        device: torch device of the predictor.
        tag: the evaluation's tag.

    Raises:
        UserInputError: ``$nnUNet_preprocessed`` unset, the preprocessed data missing, or a case not in it.
    """
    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class

    model = ModelFolder.parse(folder)
    predictor = trained_predictor(model, torch.device(device))
    root = os.environ.get("nnUNet_preprocessed")
    if not root:
        raise UserInputError("environment variable nnUNet_preprocessed is not set (the evaluation reads it)")
    data = Path(root) / predictor.plans_manager.dataset_name / predictor.configuration_manager.data_identifier
    if not data.is_dir():
        raise UserInputError(f"{data}: preprocessed data of {model.name} not found")
    cases = sorted({c for members in case_sets.values() for c in members})
    dataset_class = infer_dataset_class(str(data))
    missing = sorted(set(cases) - set(dataset_class.get_identifiers(str(data))))
    if missing:
        raise UserInputError(f"case {missing[0]}: not in the preprocessed data {data}")
    hook = EvaluationHook(
        dataset_class(str(data), cases),
        case_sets,
        [int(c) for c in predictor.label_manager.foreground_labels],
        predictor.label_manager.ignore_label,
        predictor.configuration_manager.spacing,
        critical_classes(predictor.dataset_json),
        lambda network: predictor,
    )
    # nnU-Net loaded the fold's weights into the network when it initialised the predictor
    return hook.evaluate(predictor.network.eval(), tag, epoch=0)
