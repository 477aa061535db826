"""nnunet-unlearning: make a trained nnU-Net v2 model forget chosen subjects, and measure how well it forgot."""

__version__ = "0.1.0"
