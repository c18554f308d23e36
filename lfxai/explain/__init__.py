"""The ``explain`` entry point: label-free explanations of any registered encoder.

``mlflow run . -e explain -P model_uri=models:/<name>@<alias> -P dataset=mnist`` loads an
encoder from the MLflow store without running code from it (lfxai's own encoders from their
recipe and tensor state, anyone's ``nn.Module`` from MLflow's pickle-free ``pt2`` graph),
checks that it takes the data set's inputs and gives codes ``(N, d)``, and logs what the
consistency experiments log: label-free feature importance with the data set's baseline,
the representation shift as a sanity check, example importance, a Random baseline, figures
and the claims report, with the model version it consumed as the run's input.

Modules: :mod:`~lfxai.explain.settings` (the settings, ``configs/explain.yaml``),
:mod:`~lfxai.explain.pipeline` (the work), :mod:`lfxai.cli.explain` (the command line).
"""
