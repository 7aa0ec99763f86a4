"""The engine: runners that drain a run's queue through providers, under the policies they are given.

The engine sees the store only through :class:`batchrunner.store.base.EngineStore`; :mod:`batchrunner.api`
wires the concrete parts together.
"""
