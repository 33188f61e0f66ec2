"""transferbench: a benchmark harness for transfer learning."""

__version__ = "0.6.1"
