"""The ``conveyor`` command: a thin shell over the library (typer + rich)."""
