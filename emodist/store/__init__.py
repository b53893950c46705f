"""The feature store: layout, writes, and the one lazy reader.

- :mod:`emodist.store.handle`: the store handle a run makes once and passes down;
- :mod:`emodist.store.faults`: storage errors retried within a deadline, then one line;
- :mod:`emodist.store.layout`: names, dimensions and the template of N groups;
- :mod:`emodist.store.zarrio`: create, add groups, region writes, state;
- :mod:`emodist.store.accessor`: :func:`open_store` and ``ds.emodist``;
- :mod:`emodist.store.index`, :mod:`~emodist.store.select`,
  :mod:`~emodist.store.similar`, :mod:`~emodist.store.info`: queries.
"""

from emodist.store.accessor import counting_store, open_store

__all__ = ["counting_store", "open_store"]
