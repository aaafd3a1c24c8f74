"""The artifact: what an export folder holds and how the runtime reads it (the contract every room
shares, the metadata schema, ONNX properties without onnx, and which file runs here)."""
