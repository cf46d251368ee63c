"""The HTTP service: app factory, routers, dependencies, errors, middleware, metrics, static page."""
