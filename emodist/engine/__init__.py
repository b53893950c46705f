"""Running the pipeline: plans, and the tasks that fill the store.

- :mod:`emodist.engine.plan`: the extraction plan, pure, from the segment
  plan, the store's state and the spec;
- :mod:`emodist.engine.planning`: segment planning on the workers (header
  probes as Dask tasks, the plan written into the store template);
- :mod:`emodist.engine.extract`: the extraction driver (catalog -> plan ->
  chunk tasks -> consolidated store);
- :mod:`emodist.engine.worker`: one chunk task on a worker (decode once,
  every group, one region write);
- :mod:`emodist.engine.pipeline`: the whole job, extraction then
  cross-validation.
"""

__all__: list[str] = []
