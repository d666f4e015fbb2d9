"""Grad-CAM figures, embedding maps and the checkpoint part of `fediqad report`.

`rundir` reads a centralised (`fediqad train`) or federated (`fediqad simulate` /
`server`) run folder, `predictions` gets per-sample probabilities, the figure
modules draw with matplotlib (Agg), `document` renders HTML and Markdown, and
`build` puts a report together. Model-side computations live in `shared.explain`.
"""
