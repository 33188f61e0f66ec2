"""transferbench: a benchmark harness for transfer learning."""

__version__ = "0.3.1"
