"""The seed's REST calls under /api/v1, the same paths, methods and JSON keys."""
