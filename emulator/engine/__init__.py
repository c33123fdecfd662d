"""Engine layer: configures and controls the compiled fast path (`emulator._engine`)."""
