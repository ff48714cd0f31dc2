"""The radiograph and DXA VFA branch (VERTE-X): preprocessing, the EfficientNet spine-age model, its outcomes."""
