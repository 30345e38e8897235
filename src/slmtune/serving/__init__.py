"""`slmtune serve`: an OpenAI-compatible HTTP API, Prometheus metrics and a web page over a model folder."""
