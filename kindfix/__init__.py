"""kindfix: repair kind clusters broken by Docker re-assigning node IP addresses."""

__version__ = "0.1.0"
