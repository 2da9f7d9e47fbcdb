"""The agent: the explicit tool-calling loop, its tools, prompts and model client."""
