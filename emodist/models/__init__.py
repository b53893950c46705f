"""Model builders that need neither TensorFlow nor torch: checkpoint reading, ONNX graphs."""
