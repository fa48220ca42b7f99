"""Pure decisions of the agent (cleanup plans, container specs). No I/O imports."""
