"""Reports: one self-contained HTML file and a Markdown twin (``pip install "noisylab[report]"``).

:class:`Report` builds a report section by section (data-set summary, noise-matrix
heatmaps, issue scores, detection against ground truth, training curves, the most
suspicious examples shown as they are, benchmark tables, free text) and writes it as
ONE HTML file (inline CSS, base64 PNG figures, no network access) plus, optionally,
a Markdown twin whose figures are PNG files in a ``<name>_files/`` folder.
:func:`report_from_find_issues` builds the usual report from the inputs and outputs
of confident learning; ``noisylab report`` is the command line.

Importing this package needs only numpy; matplotlib is imported when the first
figure is drawn and its absence raises an ImportError naming the extra.
"""
from ._markdown import escape_markdown
from .builder import Report, empirical_noise_matrix, load_runs, report_from_find_issues
from .examples import EXAMPLE_KINDS, detect_kind

__all__ = [
           "EXAMPLE_KINDS",
           "Report",
           "detect_kind",
           "escape_markdown",
           "empirical_noise_matrix",
           "load_runs",
           "report_from_find_issues",
]
