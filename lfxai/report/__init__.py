"""``lfxai report``: the paper regenerated from the store, beside the published numbers.

:mod:`~lfxai.report.collect` picks the runs, :mod:`~lfxai.report.results` reads them back
and recomputes their claims, :mod:`~lfxai.report.sections` draws each experiment's numbers and
figures beside :mod:`~lfxai.report.reference`'s, :mod:`~lfxai.report.costs` measures what is
missing, :mod:`~lfxai.report.build` assembles a :mod:`~lfxai.report.document` written as
Markdown and HTML. Run it with ``python -m entrypoints.report`` or ``mlflow run . -e report``.
"""
