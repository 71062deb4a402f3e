"""The AutoCTV browser app (``autoctv web``): an HTTP API for cases, and the page.

A separate package so that the core library (``AutoCTVLib``) never imports aiohttp, trame, VTK
or Slicer: the ``web`` command imports this package only when it runs, and only with the
``web`` extra installed. Long work reuses the Slicer module's child-process code
(``AutoCTVLib.cli.child``: ``autoctv predict --progress json`` in its own process
group, cancellable), so the module and the browser share one way of running a job.

Modules:

* ``store``: cases and their history in SQLite under the data folder; the case folders.
* ``uploads``: size-limited upload, safe zip unpacking, validation with the CLI's CT reader.
* ``worker``: the queue that contours one case at a time in a child process.
* ``auth``: bind-address rules and the bearer token.
* ``api``: the HTTP routes (aiohttp).
* ``server``: puts them together and runs the server.
"""
