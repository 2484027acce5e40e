"""The demo: Python FAQ step-1 data, tiny model, simulated labelers and the report.

Nothing outside `loop/demo/` and `loop/commands/` imports from here: the core phases do not know a
demo exists.
"""
