"""Trained model artifacts (ONNX + model cards) and the script that trains them."""
