"""The lower layer: documents in, indexed chunks out."""
