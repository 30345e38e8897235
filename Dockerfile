# The serving image: `slmtune serve` over one model folder (docs/serving.md#running-it-as-a-service).
#   make pull-model REV=v1.2 OUT=serve/int4
#   docker build -t slmtune-serve --build-arg MODEL=serve/int4 .
#   docker run --rm -p 8000:8000 -e SLMTUNE_API_KEY="$KEY" slmtune-serve
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 DVC_NO_ANALYTICS=1

WORKDIR /app
COPY requirements.lock pyproject.toml README.md ./
RUN pip install -r requirements.lock
COPY src ./src
COPY conf ./conf
RUN pip install --no-deps .

ARG MODEL=serve/int4
COPY ${MODEL} /model
RUN useradd --system --uid 10001 slmtune
USER slmtune

EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s --start-period=60s \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"
# The key comes from the environment at run time (SLMTUNE_API_KEY), never from the image.
CMD ["slmtune", "serve", "--model-path", "/model", "--host", "0.0.0.0", "--port", "8000"]
