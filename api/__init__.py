"""The FastAPI application. It imports neither Ray nor TensorFlow, so it starts fast."""
