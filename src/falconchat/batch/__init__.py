"""`falconchat batch`: many prompts from a file or stdin, answered in parallel, one record each."""
