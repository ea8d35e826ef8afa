"""Job execution for EngineScope: worker, engines, load generator, telemetry, captures, CLI.

Heavy packages (tensorrt, vllm, torch, onnxruntime) are imported lazily inside the engine that needs them.
"""
