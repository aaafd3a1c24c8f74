"""Export a trained MiniMaxAD to verified ONNX (FP32/FP16/INT8) and TensorRT engines."""
