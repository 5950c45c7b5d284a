"""The application layer: run configuration, presets, the training loop, evaluation,
pictures, progress and the command line. Nothing below it imports it."""
