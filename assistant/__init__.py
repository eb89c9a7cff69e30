"""The upper layer: questions in, cited answers out."""
