"""The gateway-facing HTTP API: models, middlewares, handlers, OpenAPI description."""
