"""CoMCL: contrastive pretraining on lesion / healthy patches of HQ and LQ images.

patches.py builds a site's four patch subsets, boxes.py finds lesion boxes, infonce.py
is the one InfoNCE, mining.py the self-paced hard-negative schedule, pretrain.py the
loop (and the per-round hook a federated site calls), transfer.py moves the encoder
into a diagnosis backbone. See docs/comcl.md.
"""
