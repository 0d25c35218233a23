"""maild: email-driven IT-support ticketing for Italian municipalities."""

__version__ = "0.1.0"
