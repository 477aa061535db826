"""nnU-Net trainer classes of nnunet-unlearning; nnU-Net imports each module here via ``nnUNet_extTrainer``.

Point nnU-Net at this folder with ``export nnUNet_extTrainer=$(nnunet-unlearning trainers-dir)``.
"""
