"""The HTTP edge: the FastAPI app (``app``), its routes (``routes``, ``ask``, ``openai``), the request
and response schemas, the middleware (request ids, body limits, logs), API keys and Server-Sent
Events. Nothing in the answering pipeline imports it; errors become HTTP statuses here only."""
