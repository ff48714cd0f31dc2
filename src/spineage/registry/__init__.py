"""The MLflow side: tracking, the model registry, promotion and the models served."""
