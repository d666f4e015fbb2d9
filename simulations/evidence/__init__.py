"""`fediqad bench evidence`: measured evidence, with seeds, on synthetic data.

settings.py holds the scale, common.py data / training / scoring helpers, methods.py
part (a) MKCNet vs its baselines, federated.py part (b) federated vs local vs
centralised through the project's real strategies and aggregation, comcl.py part (c)
CoMCL vs scratch, signal.py the check that LQ images lose lesion signal, and
report.py the mean +- sd tables. See docs/evidence.md.
"""
