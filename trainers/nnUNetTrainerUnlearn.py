"""``nnUNetTrainerUnlearn<Strategy>`` and its ``_2epochs`` … ``_50epochs`` variants, for every strategy in the
registry (``nnunet_unlearning.unlearning.strategies.STRATEGIES``).

Use with ``nnUNetv2_train ID CONFIG FOLD -p PLANS -tr nnUNetTrainerUnlearnNoisyLabel_50epochs``.
The unsuffixed trainer runs 20 epochs. ``docs/strategies.md`` defines every strategy.
"""

from nnunet_unlearning.unlearning.schedules import trainer_family
from nnunet_unlearning.unlearning.strategies import STRATEGIES

# nnU-Net finds a trainer as an attribute of a module in this folder, so every class is a module global
globals().update({name: cls for strategy in STRATEGIES for name, cls in trainer_family(strategy, __name__).items()})
