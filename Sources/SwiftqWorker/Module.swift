// placeholder for module layout; replaced by real sources
