"""The interactive chat: the prompt-toolkit session, its slash commands and input handling."""
