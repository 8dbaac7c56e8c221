"""nnU-Net v2 trained models, run as nnU-Net runs them, chunk by chunk.

- :mod:`.folder`: the results folder, its JSON files and weights-only checkpoints;
- :mod:`.plans`: plans.json and dataset.json checked and turned into a model card;
- :mod:`.checks`: each value of nnU-Net's pipeline checked, for plans and imported cards alike;
- :mod:`.network`: the network from the plans through allow-lists, folds and mirroring;
- :mod:`.preprocess`: axes, crop, normalization and resampling onto the network's grid;
- :mod:`.resample`: nnU-Net's resampling rules, block by block;
- :mod:`.pipeline`: the bundle that runs the engine between them and restores the output.
"""
