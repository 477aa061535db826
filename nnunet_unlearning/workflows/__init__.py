"""Workflows over the library: the demo and the MRBrainS18 benchmark, with the profiles they run at.

``demo`` runs the whole user path on one machine; ``benchmark`` drives the benchmark (``benchmark_design``
fixes the subjects and forget sets, ``benchmark_runs`` trains in parallel worker processes,
``benchmark_tables`` turns the per-request reports into its tables); ``profiles`` holds the CPU profile and
the benchmark's ``cpu``/``paper`` profiles; ``original_trainer`` chooses the trainer of the original model.
"""
