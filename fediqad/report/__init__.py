"""Run reports, Grad-CAM figures and embedding maps for `fediqad report/explain/embed`.

`rundir` reads a centralised (`fediqad train`) or federated (`fediqad simulate` /
`server`) run folder, `predictions` gets per-sample probabilities, the figure
modules draw with matplotlib (Agg), `document` renders HTML and Markdown, and
`build` puts a report together. Model-side computations live in `shared.explain`.
"""
