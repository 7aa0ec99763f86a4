"""``python -m batchrunner.fakeserver --port 0 ...``: the ``fake-server`` command without the main CLI."""

from batchrunner.fakeserver.command import fake_server

fake_server(prog_name="python -m batchrunner.fakeserver")
