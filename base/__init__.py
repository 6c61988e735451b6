"""The ground layer: what every other package may import and which imports none of them.

- ``errors``: the one user-facing exception type;
- ``download``: resumable, checksummed downloads and the user's cache folder;
- ``faults``: the test suite's kill and pause points (no-ops unless an LCE_TEST_* variable is set).

Layers, each importing only the ones below it: ``app.py``/``app_pages`` -> ``lce`` ->
``warehouse``/``extract`` -> ``base``.
"""

__version__ = "0.2.0"
