"""Looking at a dataset before training on it: label and joint distributions, class imbalance,
and image size / brightness / contrast / sharpness statistics, as CSVs and one HTML page."""
