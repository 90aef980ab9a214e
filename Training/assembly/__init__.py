"""Dataset folders assembled from the shared real data (``../shared/data``) for the bundled
models, one module per model, each runnable with ``python -m Training.assembly.<module>``.
The folders are written outside the repository (e.g. under ``runs/``, git-ignored): the shared
images are linked or converted, never copied into the project."""
