"""The web dashboard: static assets (HTML, CSS, ES modules) and the routes that serve them (``routes.setup``)."""
