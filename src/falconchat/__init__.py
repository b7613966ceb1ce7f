"""falconchat: a terminal chatbot for open-source LLMs."""

__version__ = "0.1.0"
