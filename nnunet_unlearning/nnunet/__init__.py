"""Adapters to nnU-Net: trainer lookup, in-process runs, dataloaders, the predictor; the only package that knows
nnU-Net's internals."""
