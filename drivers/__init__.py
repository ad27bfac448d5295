"""facegate.drivers: hardware and model drivers (camera, GPIO, ONNX models)."""
