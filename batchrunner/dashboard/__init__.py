"""The live dashboard: a local, read-only web page over a run (``batchrunner dashboard``).

``server.py`` is the aiohttp server and ``static/`` the page (plain HTML, CSS and JavaScript, shipped in
the wheel). It sits beside the CLI, over ``api``: only the CLI imports it.
"""
