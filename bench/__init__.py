"""transferbench: a benchmark harness for transfer learning."""

__version__ = "0.2.0"
