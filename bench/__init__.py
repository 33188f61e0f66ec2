"""transferbench: a benchmark harness for transfer learning."""

__version__ = "0.4.0"
