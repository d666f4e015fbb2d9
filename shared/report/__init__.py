"""Run reports: what a study team reads after every epoch / round and at the end.

`rundir` reads a centralised or federated run folder, `format` is the one way numbers
are written (JSON: `shared.strict_json`), `curves` and
`set_figures` draw (matplotlib, Agg), `document` renders HTML and Markdown and
`build` puts a report together from `metrics.json` alone (no torch, no data), so the
server and the training loops can rewrite it after every round or epoch.
"""
