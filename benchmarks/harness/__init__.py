"""The shared parts of the run-engine benchmarks (``benchmarks/bench_run_*.py``), one job a module.

Importing any of them does nothing but define names: the snapshot of the code under test is unpacked
when a benchmark starts (:func:`harness.snapshot.activate`), and batchrunner, openai and py-spy are
imported where they are used (``tests/test_benchmarks_import.py`` keeps it so).

Setting up a run:

- ``paths``: where data and results live; the constants both clients share.
- ``snapshot``: the code under test (``git archive HEAD batchrunner``, first on ``PYTHONPATH``).
- ``pinning``: which CPU the server and the clients get (``taskset``).
- ``machine``: what the machine, the load and the code were, recorded with every result.
- ``manifests``: the OpenAI Batch chat lines both clients send.
- ``server``: the fake provider server in its own process.

Running and measuring one client:

- ``processes``: a child process timed (wall, CPU, peak RSS) and sampled (RSS while it runs).
- ``clients``: ``batchrunner run`` and the bare-SDK loop, each as a subprocess -> a ``RunResult``.
- ``measures``: what the run's database and timestamps say (rates, the tail, the first request).
- ``pyspy``: profiles of a running client (``--profile``).

Comparing and reporting:

- ``rounds``: repetitions in alternating order, medians, one line per run.
- ``compare``: the standard case: one manifest, one server, both clients, ``--what-if`` variants.
- ``report``: the side-by-side table, verdicts, the saved JSON.
- ``options``: the command-line options every ``bench_run_*`` script takes.

Run as child processes (``python -m harness.NAME``, with ``benchmarks/`` on ``PYTHONPATH``):

- ``baseline_client``: the bare-SDK asyncio loop (the baseline).
- ``launcher``: ``batchrunner run`` through :func:`batchrunner.api.run` with one engine behaviour
  changed (``--what-if``), without editing or patching the package; ``storetrace`` times its database
  transactions (``--trace-store``).
"""
