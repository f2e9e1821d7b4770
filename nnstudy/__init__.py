"""nnstudy: the study pipeline's tested functions (data, search, grid, tracking, tables, figures, report).

The Snakemake scripts under ``workflow/scripts`` are thin wrappers around this package.
"""

import os

# MLflow's usage telemetry: no network here, and its background thread sets and unsets an environment variable
# while a request iterates os.environ ("KeyError: '_MLFLOW_TELEMETRY_SESSION_ID'" failed a training that
# logged to a tracking server on SLURM). Off unless the user decides otherwise.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
