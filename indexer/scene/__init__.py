"""Room-background recognition: people masks, local features, VLAD, geometric verification."""
