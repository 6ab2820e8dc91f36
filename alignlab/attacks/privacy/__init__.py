"""Privacy attacks on world models: membership inference, canary exposure, training-data extraction, gradient
inversion, and the defences that blunt them (deduplication, DP-SGD). Each module reads top to bottom."""
