"""The sinks: where records end up (TensorBoard, memory, jsonl, csv, MLflow); no sink imports another."""
