"""Optuna sweeps over a VAE's beta, latent size and loss (the ``sweep`` entry point).

Each trial trains one VAE and measures its saliency maps with the ``disvae`` experiment's
:func:`~lfxai.experiments.disvae.train_and_measure`, in a nested MLflow run under one parent
run per invocation. The study lives in an Optuna RDB storage (SQLite beside the MLflow store
by default, any SQLAlchemy URL to share it), so an invocation resumes the study and several
workers (processes or machines) cooperate on it.

Modules: :mod:`~lfxai.sweep.settings` (what a user sets, validated, resolved once),
:mod:`~lfxai.sweep.backend` (what a trial trains), :mod:`~lfxai.sweep.study` (storage,
sampler, pruner, resuming, retries), :mod:`~lfxai.sweep.objective` (one trial),
:mod:`~lfxai.sweep.optimize` (Optuna's loop, in this process and its worker processes) and
:mod:`~lfxai.sweep.report` (tables, figures, claims of the parent run); the command line is
:mod:`lfxai.cli.sweep`.
"""
