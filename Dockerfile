# The demo trading session's image (docker-compose.yml, profile `demo`).
FROM python:3.11.9-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir . && useradd --system --no-create-home trader
USER trader
EXPOSE 8000 8001 8002
ENTRYPOINT ["trading-telemetry"]
CMD ["demo"]
