"""PyTorch side of lce: model loading, layer hooks, probe sets and the dissection engine.

The dissection engine is tracked in its own issue; this package is the only one that imports torch.
"""
