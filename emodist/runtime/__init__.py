"""The run machinery shared by extraction and evaluation.

- :mod:`emodist.runtime.cluster`: the Dask cluster a run uses (connect to a
  scheduler or start a LocalCluster), device routing checks, and a lost
  scheduler turned into one line;
- :mod:`emodist.runtime.executor`: independent tasks run bounded on a Dask
  client, or in local processes.
"""

__all__: list[str] = []
