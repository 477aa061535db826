"""The trainer classes of one strategy: ``nnUNetTrainerUnlearn<Name>`` and its schedule variants."""

from __future__ import annotations

from nnunet_unlearning.unlearning.base_trainer import nnUNetTrainerUnlearn
from nnunet_unlearning.unlearning.strategy import Strategy

#: The unsuffixed trainer runs this many epochs; the seed study compares 20 and 50.
DEFAULT_EPOCHS = 20
SCHEDULES = (2, 5, 20, 50)


def trainer_family(strategy: type[Strategy], module: str) -> dict[str, type]:
    """``{class name: class}`` for the strategy's trainer and its ``_<N>epochs`` variants.

    ``module`` is the ``__module__`` the classes report (the trainers/ module that exposes them).
    """
    name = f"nnUNetTrainerUnlearn{strategy.name}"
    base = type(
        name,
        (nnUNetTrainerUnlearn,),
        {
            "strategy_class": strategy,
            "unlearning_epochs": DEFAULT_EPOCHS,
            "__module__": module,
            "__doc__": f"Unlearning with the {strategy.name} strategy, {DEFAULT_EPOCHS} epochs.",
        },
    )
    family = {name: base}
    for epochs in SCHEDULES:
        variant = f"{name}_{epochs}epochs"
        family[variant] = type(
            variant,
            (base,),
            {
                "unlearning_epochs": epochs,
                "__module__": module,
                "__doc__": f"Unlearning with the {strategy.name} strategy, {epochs} epochs.",
            },
        )
    return family
