"""The MRBrainS18 unlearning benchmark: the seed study's experiment on real data, made reproducible.

``design`` fixes the subjects and forget sets, ``profiles`` the schedules and network, ``runs`` trains
(in parallel worker processes), ``tables`` turns the per-request reports into the benchmark's tables, and
``mrbrains18`` drives the whole experiment (``nnunet-unlearning benchmark``, ``benchmarks/mrbrains18.py``).
"""
