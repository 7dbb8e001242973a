"""Vehicle telemetry at the CAN level: decoding frames into signals and CAN log I/O."""
