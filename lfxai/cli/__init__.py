"""The command-line layer: what every lfxai command shares, then one module per command.

:mod:`~lfxai.cli.launch` runs a command's work (stop signals, the store, exit codes, the run
it is placed in) and :mod:`~lfxai.cli.naming` names and describes that run, for every
command alike; :mod:`~lfxai.cli.experiment` (``entrypoints/<dataset>.py``),
:mod:`~lfxai.cli.sweep` (``entrypoints/sweep.py``) and :mod:`~lfxai.cli.report`
(``entrypoints/report.py``) parse their own arguments.
"""
