"""The paper's tables regenerated and diffed against the published numbers.

``collect`` gathers the result files into one flat metrics document, ``judge`` pairs every paper
cell with its regenerated value and decides whether the two can be compared, ``render`` writes the
tables, ``diff`` the cell-by-cell verdicts and ``figure`` the mIoU-vs-GFLOPs plot. All of them only
need pandas, tabulate, matplotlib and PyYAML, never the torch/mmseg stack.
"""
