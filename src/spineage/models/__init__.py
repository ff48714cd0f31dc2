"""Networks and losses: the spine-age CNNs and the spine segmentation network."""
