"""Data: readers for the authors' layout, preparers for the public releases, synthetic
IQAD datasets, degradations, caching and inspection.

Submodules are imported where used (`shared.data.dataset`, `shared.data.splits`, ...);
this package file stays empty so importing a light helper does not pull in torch.
"""
