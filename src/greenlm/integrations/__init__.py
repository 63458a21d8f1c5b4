"""Integrations: thin adapters from greenlm's tracker to the tools people train and serve with.

Each module sits behind an optional extra and imports its framework only when used; a
missing extra raises :class:`greenlm.errors.MissingExtraError` naming the
``pip install 'greenlm[...]'`` to run.

* :mod:`greenlm.integrations.tensorboard`: ``EnergyTracker(listeners=[TensorBoardListener(log_dir)])`` scalars
  (extra ``tensorboard``).
* :mod:`greenlm.integrations.hf`: ``GreenlmCallback`` for the Hugging Face ``Trainer``
  (extra ``hf``).
* :mod:`greenlm.integrations.lightning`: ``GreenlmLightningCallback`` (extra ``lightning``).
* :mod:`greenlm.integrations.mlflow`: ``log_run`` and ``MlflowListener`` (extra ``mlflow``).
* :mod:`greenlm.integrations.monitor`: ``monitor(fn)``, ``GreenlmMiddleware`` and the
  Prometheus metrics of deployed inference (extra ``monitor``).
* :mod:`greenlm.integrations.distributed`: ``DistributedTracker``, kept for older code (a plain
  ``EnergyTracker`` is distributed by default).
* :mod:`greenlm.integrations.slurm`: what Slurm's own commands (``sacct``, ``sstat``,
  ``scontrol``) say about a job step, beside greenlm's figures.

Nothing is imported here: importing a submodule is what pulls in its framework.
"""
