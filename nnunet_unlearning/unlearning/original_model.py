"""Load the original model named by a request, refusing one that does not fit the unlearning run.

An unlearning run must start from the WHOLE original model, segmentation heads included (nnU-Net's
``-pretrained_weights`` skips the heads, so it is not used). The checkpoint must be the very file the
request pinned (SHA-256), trained with the same configuration, fold and architecture as the run.
"""

from __future__ import annotations

import json

import torch
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
from torch import nn

from nnunet_unlearning.errors import UserInputError
from nnunet_unlearning.files import sha256_file
from nnunet_unlearning.request import UnlearningRequest

#: Configuration entries that must agree between the original model and the run (batch size may differ).
MUST_MATCH = ("architecture", "patch_size", "spacing", "data_identifier", "normalization_schemes", "use_mask_for_norm")


def _configuration(plans: dict, name: str) -> dict:
    return PlansManager(plans).get_configuration(name).configuration


class OriginalWeights(dict):
    """The original's state dict (parameter and buffer name → CPU tensor), whose ``repr`` names its size instead of
    printing every tensor: nnU-Net's ``debug.json`` holds ``str()`` of every trainer attribute, and the tensor
    dump was 0.6 MB and 0.5 s of every unlearning run."""

    def __repr__(self) -> str:
        return f"<the original model's weights: {len(self)} tensors>"


def load_original_weights(
    request: UnlearningRequest, run_plans: dict, configuration: str, fold, network: nn.Module
) -> OriginalWeights:
    """The original's ``network_weights`` state dict, checked against the run; CPU tensors.

    Raises :class:`UserInputError` when the file changed since the request, or the configuration,
    fold, plans or parameter shapes differ from the run's.
    """
    original = request.original
    path = original.checkpoint
    if str(fold) != original.fold:
        raise UserInputError(f"{path}: the request forgets from fold {original.fold}, this run is fold {fold}")
    if configuration != original.configuration:
        raise UserInputError(
            f"{path}: original model is configuration {original.configuration}, this run is {configuration}"
        )
    try:
        if sha256_file(path) != original.checkpoint_sha256:
            raise UserInputError(f"{path}: checkpoint changed since the request was written (SHA-256 differs)")
        # nnU-Net's own checkpoints hold numpy objects in their logs; nnU-Net loads them the same way.
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except OSError as error:
        raise UserInputError(f"{path}: unreadable ({error.strerror})") from None

    original_plans = checkpoint["init_args"]["plans"]
    theirs, ours = _configuration(original_plans, configuration), _configuration(run_plans, configuration)
    for key in MUST_MATCH:
        if json.dumps(theirs.get(key), sort_keys=True) != json.dumps(ours.get(key), sort_keys=True):
            raise UserInputError(
                f"{path}: original model's plans differ from this run's in '{key}' "
                f"(original plans {original_plans.get('plans_name')}, configuration "
                f"{configuration}); unlearn with the original's plans (-p {original.plans})"
            )

    weights = OriginalWeights((k.removeprefix("module."), v) for k, v in checkpoint["network_weights"].items())
    expected = network.state_dict()
    for key, value in expected.items():
        if key not in weights:
            raise UserInputError(f"{path}: original model has no tensor {key}; architectures differ")
        if tuple(weights[key].shape) != tuple(value.shape):
            raise UserInputError(
                f"{path}: tensor {key} has shape {tuple(weights[key].shape)}, this run's "
                f"network needs {tuple(value.shape)}"
            )
    extra = sorted(set(weights) - set(expected))
    if extra:
        raise UserInputError(f"{path}: original model has tensor {extra[0]} that this run's network lacks")
    return weights
