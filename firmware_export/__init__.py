"""Ready-to-build deployment bundles: TFLite Micro (microcontrollers) and ONNX Runtime (Linux boards)."""
