"""A synthetic site's data as a few parameters: built where it is used, the same everywhere.

`fediqad simulate` builds its synthetic hospitals on this machine; on a Ray cluster each
node builds the sites it runs from the same recipe (same seed: the same images), so no
data travels from the driver to the nodes.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

NODE_DATA_ENV = "FEDIQAD_NODE_DATA"  # where a node keeps the synthetic sites it built


@dataclass(frozen=True)
class SynthRecipe:
    like: str  # the dataset the images imitate (its classes, splits, layout)
    n: int
    image_size: int
    seed: int
    lq_ratio: float

    @property
    def key(self) -> str:
        """A folder name that differs whenever the data would."""
        return f"{self.like}-n{self.n}-{self.image_size}px-seed{self.seed}-lq{self.lq_ratio:g}"

    def build(self, root: Path) -> Path:
        """ROOT/LIKE synthesized once (again only if ROOT holds other parameters); ROOT."""
        from shared.data.synth import synthesize

        meta = root / self.like / "synth.json"
        if meta.is_file():
            got = json.loads(meta.read_text())
            stored = (got.get("n"), got.get("image_size"), got.get("seed"), got.get("lq_ratio"))
            if stored == (self.n, self.image_size, self.seed, self.lq_ratio):
                return root
        synthesize(
            self.like, self.n, self.image_size, root, seed=self.seed, lq_ratio=self.lq_ratio,
            force=True,
        )  # fmt: skip
        return root


def node_data_dir() -> Path:
    """This node's folder of built synthetic sites: $FEDIQAD_NODE_DATA, else a folder
    of this user's in the node's temporary directory."""
    given = os.environ.get(NODE_DATA_ENV)
    if given:
        return Path(given).expanduser()
    return Path(tempfile.gettempdir()) / f"fediqad-node-data-{os.getuid()}"
