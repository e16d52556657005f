"""Policy files: YAML in, Policy values out, every error with file:line:col."""
