"""klp-harness: a real-kernel test harness for Linux livepatch.

Data flow, one subpackage per stage:
scenario (TOML -> types) -> modules (Jinja templates -> .ko) -> guest (image, QEMU,
console/SSH) -> runner (steps -> observations) -> model (predictions) -> report.
"""

__version__ = "0.1.0"
