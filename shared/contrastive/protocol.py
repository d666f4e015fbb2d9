"""What server and sites agree on for federated CoMCL rounds (both import only this).

A pretraining round is a Flower `train.comcl` message carrying the global encoder (a
`ContrastiveModel.state_dict()`: backbone.* and head.*) in the ArrayRecord ENCODER and
a ConfigRecord (`shared.records.CONFIG`) with the RunConfig JSON, the local epochs and
where they sit in the whole schedule (for K_t). The reply carries ENCODER and a
MetricRecord whose `num-examples` is the site's patch count (FedAvg weight).
"""

from __future__ import annotations

ENCODER = "encoder"
ACTION = "comcl"  # Flower message type "train.comcl"
MESSAGE_TYPE = f"train.{ACTION}"
CFG_EPOCHS = "comcl-epochs"  # local epochs this round
CFG_EPOCH_OFFSET = "comcl-epoch-offset"  # global epochs already run
CFG_TOTAL_EPOCHS = "comcl-total-epochs"  # T_max = rounds x local epochs
