"""HTTP API: thin FastAPI routers that parse, authorise, call one service and shape the answer."""
