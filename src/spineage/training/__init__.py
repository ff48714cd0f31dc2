"""Training the spine-age networks: settings, data, precision, checkpoints, DDP and the train stage."""
