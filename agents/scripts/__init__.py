"""Scripts the agents copy into a project and run; each reads top to bottom."""
