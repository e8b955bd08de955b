"""Training, evaluation and data preparation for Fader Networks (`python -m train`)."""
