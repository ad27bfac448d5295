"""The roof: the composition root, the Device, its supervisor and watchdog, and the CLI.

Nothing below imports from here. :mod:`.root` opens the resources and builds
every service with typed constructor arguments; :mod:`.device` runs them;
:mod:`.cli` is the ``facegate`` command line.
"""
