"""Developer tools beside the package: the GPU check and the benchmark report."""
