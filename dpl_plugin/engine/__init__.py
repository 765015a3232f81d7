"""The train stage without Dassl: training and evaluation loops, the recipe's optimizer and
schedule, checkpoints of what was learned, finite checks and progress lines."""
